//! Dashboards as code: `examples/data-pipeline`'s `[[dashboard.panel]]`s drawn from its
//! `sales` table, at `/_updraft/apps/<app>/dashboard` and on its public `/reports` route,
//! over HTTP and in headless Chromium.

use std::time::Duration;

use updraft_test_support::{AppDir, Server, guests};

use crate::{bin, copy_example, eventually, get};

/// The `<section>` of panel `i` in `page`.
fn panel(page: &str, i: usize) -> &str {
    let start = page
        .find(&format!(r#"id="panel-{i}""#))
        .unwrap_or_else(|| panic!("no panel {i} in\n{page}"));
    let end = page[start..]
        .find("</section>")
        .map_or(page.len(), |e| start + e);
    &page[start..end]
}

/// Copies the data-pipeline sample export into `incoming/` (the folder the trigger makes)
/// and waits until its five rows are loaded.
pub(crate) async fn drop_sample_and_wait(server: &Server, app: &std::path::Path) {
    let sample = std::fs::read(app.join("sample/sales-2026-11.csv")).unwrap();
    drop_and_wait(server, app, "sales-2026-11.csv", &sample, 5).await;
}

/// Drops `csv` into `incoming/` as `name` (written beside it and moved in, so the trigger
/// sees it whole) and waits until the `sales` table has `rows` rows.
async fn drop_and_wait(server: &Server, app: &std::path::Path, name: &str, csv: &[u8], rows: u32) {
    let incoming = app.join(".updraft/buckets/drop/incoming");
    assert!(eventually(Duration::from_secs(30), async || incoming.is_dir()).await);
    std::fs::write(app.join(name), csv).unwrap();
    std::fs::rename(app.join(name), incoming.join(name)).unwrap();
    let want = format!(r#""rows":{rows}"#);
    let loaded = eventually(Duration::from_secs(60), async || {
        get(server, "/api/sales/summary").await.1.contains(&want)
    })
    .await;
    assert!(loaded, "`{name}` never loaded\n{}", server.stderr.text());
}

/// `path` as headless Chromium draws it; asserts the page logged no error.
async fn in_browser(server: &Server, path: &str) -> crate::web_app::Rendered {
    let url = server.url(path);
    let shown = tokio::task::spawn_blocking(move || crate::web_app::rendered_page(&url))
        .await
        .unwrap();
    assert!(
        !shown.log.contains("Uncaught") && !shown.log.contains(":ERROR:CONSOLE"),
        "{path} logged an error: {}",
        shown.log
    );
    shown
}

#[tokio::test]
async fn data_pipeline_dashboard_charts_the_sales_table() {
    let dir = copy_example("data-pipeline");
    // Two panels a user can get wrong: a column the query does not return, and a query
    // that writes. Each says so in its place; the rest of the page is drawn.
    let manifest = dir.path().join("updraft.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        r#"
[[dashboard.panel]]
title = "Typo"
sql = "sales"
query = "SELECT day, sum(total) AS total FROM sales GROUP BY day"
chart = "bar"
x = "day"
y = "revenue"

[[dashboard.panel]]
title = "Wipe"
sql = "sales"
query = "DELETE FROM sales"
"#,
    );
    std::fs::write(&manifest, text).unwrap();
    let server = Server::start(bin(), dir.path(), &[]);
    assert!(
        server.stdout.wait_for(
            "/_updraft/apps/data-pipeline/dashboard (6 panel(s))",
            Duration::from_secs(10)
        ),
        "`up` says where the dashboard is: {}",
        server.stdout.text()
    );

    // Before any data: every panel says what to expect, or what is wrong with it.
    let (status, page) = get(&server, "/reports").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page.matches("No rows yet").count(), 4, "{page}");
    assert!(panel(&page, 4).contains("column `revenue`"), "{page}");

    drop_sample_and_wait(&server, dir.path()).await;
    let (_, page) = get(&server, "/reports").await;
    assert!(
        page.contains("SO-1005"),
        "the sample reached the dashboard: {page}"
    );

    let (status, page) = get(&server, "/_updraft/apps/data-pipeline/dashboard").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<h1>Sales</h1>"), "{page}");
    // Revenue per day, one line per region: north 2 days, south 2, east 1.
    let line = panel(&page, 0);
    assert!(
        line.contains(r#"data-chart="line" data-series="3" data-points="5""#),
        "{line}"
    );
    assert!(line.contains("north: 2026-11-03 = 12.5"), "{line}");
    assert!(line.contains(r#"data-refresh-ms="30000""#), "{line}");
    assert!(
        line.contains(">revenue by region<"),
        "the y axis says what it shows: {line}"
    );
    // Units per product: four products, one bar each.
    let bars = panel(&page, 1);
    assert!(bars.contains(r#"data-points="4""#), "{bars}");
    assert!(bars.contains("units: gizmo = 10"), "{bars}");
    // Share of revenue: south 27.49 of 63.99.
    let pie = panel(&page, 2);
    assert!(pie.contains("south: 27.49 (43.0%)"), "{pie}");
    // The latest orders, newest day first.
    let table = panel(&page, 3);
    assert_eq!(
        table.matches("<tr>").count(),
        6,
        "a header and five rows: {table}"
    );
    assert!(table.find("SO-1005") < table.find("SO-1001"), "{table}");
    // The mistakes, each named in its panel.
    assert!(
        panel(&page, 4)
            .contains("column `revenue` is not in the query&#39;s result; it has `day`, `total`"),
        "{page}"
    );
    assert!(panel(&page, 5).contains("may only read"), "{page}");
    let (_, summary) = get(&server, "/api/sales/summary").await;
    assert!(
        summary.contains(r#""rows":5"#),
        "nothing was deleted: {summary}"
    );

    // A refreshing panel fetches itself alone.
    let (status, fragment) = get(&server, "/reports?panel=0").await;
    assert_eq!(status, 200);
    assert!(
        fragment.starts_with(r#"<section class="panel" id="panel-0""#)
            && !fragment.contains("<html"),
        "{fragment}"
    );
    let (status, _) = get(&server, "/reports?panel=9").await;
    assert_eq!(status, 404);

    picking_a_range_narrows_the_revenue_panel(&server, dir.path()).await;

    // In a browser: the charts are drawn, and the page logs no error.
    let shown = in_browser(&server, "/reports").await;
    assert_eq!(shown.dom.matches("<svg").count(), 3, "{}", shown.dom);
    assert!(
        shown.dom.contains("Units sold per product"),
        "{}",
        shown.dom
    );
}

/// The range picker, for the revenue panel that uses `$from` and `$to`: all time by
/// default; an order from three days ago is the only one of the last 7 days, on an axis
/// that spans them all; the last hour has none. The bar panel has no range.
async fn picking_a_range_narrows_the_revenue_panel(server: &Server, app: &std::path::Path) {
    let days_ago = |n: i64| {
        (chrono::Utc::now() - chrono::Duration::days(n))
            .format("%Y-%m-%d")
            .to_string()
    };
    let csv = format!(
        "order_id,day,region,product,units,unit_price,total,paid\nSO-2001,{},west,widget,2,2.50,5.00,yes\n",
        days_ago(3)
    );
    drop_and_wait(server, app, "recent.csv", csv.as_bytes(), 6).await;

    let page_url = "/_updraft/apps/data-pipeline/dashboard";
    let (_, page) = get(server, page_url).await;
    assert!(
        page.contains(r#"<p class="windows">Range: "#)
            && page.contains(r#"?range=all" aria-current="true">all</a>"#),
        "{page}"
    );
    assert!(panel(&page, 0).contains(r#"data-points="6""#), "{page}");
    // The axis of the last 7 days starts at the first midnight in them.
    let before = days_ago(6);
    let (status, page) = get(server, &format!("{page_url}?range=7d")).await;
    let after = days_ago(6);
    assert_eq!(status, 200, "{page}");
    let line = panel(&page, 0);
    assert!(line.contains(r#"data-points="1""#), "{line}");
    assert!(
        line.contains(&format!(">{before}<")) || line.contains(&format!(">{after}<")),
        "the axis starts 7 days back ({before}): {line}"
    );
    assert!(
        line.contains("range=7d"),
        "a refreshing panel keeps its range: {line}"
    );
    assert!(panel(&page, 1).contains(r#"data-points="4""#), "{page}");
    let (_, page) = get(server, "/reports?range=1h").await;
    assert!(panel(&page, 0).contains("No rows in the last 1h"), "{page}");
    let (status, page) = get(server, "/reports?range=fortnight").await;
    assert_eq!(status, 400);
    assert!(page.contains("range `fortnight` is not one"), "{page}");
}

/// The `jobs` app the dashboard tests watch: the kitchen enqueues to `jobs`, the worker
/// fails a message three times (`backoff` to `max_backoff` apart) and dead-letters it; a yearly cron gives
/// the overview a schedule to show.
pub(crate) fn jobs_manifest(backoff: &str, max_backoff: &str) -> String {
    format!(
        r#"
[app]
name = "jobs"

[kv.default]

[queue.jobs]
max_attempts = 3
backoff = "{backoff}"
max_backoff = "{max_backoff}"

[function.kitchen]
source = "kitchen.wasm"
kv = ["default"]
enqueue = ["jobs"]

[function.worker]
source = "worker.wasm"
kv = ["default"]

[[trigger.http]]
route = "/k/..."
function = "kitchen"

[[trigger.queue]]
queue = "jobs"
function = "worker"

[[trigger.cron]]
schedule = "@yearly"
function = "worker"
"#
    )
}

async fn post(server: &Server, path: &str, origin: Option<&str>, body: &str) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut r = client.post(server.url(path)).body(body.to_owned());
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    r.send().await.unwrap()
}

async fn worker_errors(server: &Server) -> u64 {
    let (_, stats) = get(server, "/_updraft/api/v1/stats?window=15m").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap_or_default();
    stats["functions"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["function"] == "worker"))
        .map_or(0, |f| f["errors"].as_u64().unwrap_or(0))
}

#[tokio::test]
async fn the_overview_shows_what_ran_and_the_queues_page_redrives_dead_letters() {
    let app = crate::kitchen_and_worker(&jobs_manifest("100ms", "200ms"));
    let server = crate::start(&app);
    assert!(
        server
            .stdout
            .wait_for("dashboard: http://127.0.0.1:", Duration::from_secs(10)),
        "`up` says where the dashboard is: {}",
        server.stdout.text()
    );
    let (status, page) = get(&server, "/_updraft/").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("No invocations in this window"), "{page}");

    for (id, data) in [("p1", "fail"), ("ok1", "fine")] {
        let r = post(
            &server,
            &format!("/k/enqueue?queue=jobs&id={id}"),
            None,
            data,
        )
        .await;
        assert_eq!(r.status(), 202);
    }
    // p1 fails its three attempts and is dead-lettered.
    assert!(
        eventually(Duration::from_secs(60), async || worker_errors(&server)
            .await
            == 3)
        .await,
        "worker errors: {}",
        worker_errors(&server).await
    );

    let (status, page) = get(&server, "/_updraft/apps/jobs?window=15m").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"data-function="kitchen""#) && page.contains(r#"data-function="worker""#),
        "{page}"
    );
    assert!(
        page.contains("queue `jobs`"),
        "the worker's trigger is listed: {page}"
    );
    assert!(
        page.contains("cron `@yearly` UTC  last -  next 20"),
        "a schedule shows its last and next run: {page}"
    );
    assert!(
        page.contains("enqueue: jobs"),
        "the kitchen's allow-lists are listed: {page}"
    );
    assert!(
        page.contains(r#"data-chart="area""#),
        "invocations per minute are charted: {page}"
    );
    for (id, kind) in [
        ("durations", "line"),
        ("error-rate", "line"),
        ("cold-starts", "area"),
    ] {
        let at = page
            .find(&format!(r#"id="{id}""#))
            .unwrap_or_else(|| panic!("no `{id}` chart: {page}"));
        assert!(
            page[at..].contains(&format!(r#"data-chart="{kind}""#)),
            "`{id}` is drawn as a {kind} chart: {page}"
        );
    }
    assert!(page.contains("Duration per minute (ms)"), "{page}");
    // The same figures per minute on the API: each minute with invocations has its
    // percentiles, and the cold starts add up to the totals.
    let (_, stats) = get(&server, "/_updraft/api/v1/stats?window=15m").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let minutes = stats["minutes"].as_array().unwrap();
    let busy: Vec<_> = minutes
        .iter()
        .filter(|m| m["ok"].as_u64().unwrap() + m["failed"].as_u64().unwrap() > 0)
        .collect();
    assert!(!busy.is_empty(), "{stats}");
    assert!(
        busy.iter()
            .all(|m| m["p50_us"].as_i64().unwrap() > 0
                && m["p99_us"].as_i64() >= m["p50_us"].as_i64()),
        "{stats}"
    );
    let cold: u64 = minutes.iter().map(|m| m["cold"].as_u64().unwrap()).sum();
    let cold_total: u64 = stats["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["cold"].as_u64().unwrap())
        .sum();
    assert!(cold >= 2 && cold == cold_total, "{stats}");
    assert!(page.contains(r#"<b data-stat="errors">3</b>"#), "{page}");
    assert!(page.contains(r#"aria-current="true">15m<"#), "{page}");

    // An invocation's page, with what it logged.
    let (_, latest) = get(
        &server,
        "/_updraft/api/v1/invocations?function=worker&limit=50",
    )
    .await;
    let latest: serde_json::Value = serde_json::from_str(&latest).unwrap();
    let failed = latest
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["outcome"] == "error")
        .expect("a failed worker invocation");
    let id = failed["id"].as_str().unwrap();
    let mut page = String::new();
    let logged = eventually(Duration::from_secs(30), async || {
        page = get(&server, &format!("/_updraft/apps/jobs/invocations/{id}"))
            .await
            .1;
        page.contains("handling p1 attempt")
    })
    .await;
    assert!(logged, "{page}");
    assert!(page.contains("asked to fail"), "the error is shown: {page}");
    let (status, _) = get(&server, "/_updraft/apps/jobs/invocations/nope").await;
    assert_eq!(status, 404);
    // The header's search box finds it by id (pasted with spaces around it, too).
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let found = no_redirects
        .get(server.url(&format!("/_updraft/apps/jobs/invocations?id=%20{id}%20")))
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 303);
    assert_eq!(
        found.headers()["location"],
        format!("/_updraft/apps/jobs/invocations/{id}").as_str()
    );
    let (status, missing) = get(&server, "/_updraft/apps/jobs/invocations?id=nope").await;
    assert_eq!(status, 404);
    assert!(missing.contains("no invocation `nope`"), "{missing}");
    assert!(
        page.contains(r#"action="/_updraft/apps/jobs/invocations""#),
        "every page has the search box: {page}"
    );

    // The queues page shows the dead letter; its button redrives it (a same-origin POST),
    // and it fails three more times.
    let (_, page) = get(&server, "/_updraft/apps/jobs/queues").await;
    assert!(page.contains("Dead letters of <code>jobs</code>"), "{page}");
    assert!(page.contains("asked to fail"), "{page}");
    let action = "/_updraft/apps/jobs/queues/jobs/redrive";
    let r = post(&server, action, Some("http://evil.example"), "").await;
    assert_eq!(r.status(), 403, "another origin's page cannot press it");
    let origin = server.base.trim_end_matches('/').to_owned();
    let r = post(&server, action, Some(&origin), "").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_updraft/apps/jobs/queues");
    assert!(
        eventually(Duration::from_secs(60), async || worker_errors(&server)
            .await
            == 6)
        .await,
        "the redriven message never ran: {}",
        worker_errors(&server).await
    );

    // Dead again after three more attempts: its Delete button removes it for good.
    let dead = async || {
        let (_, list) = get(&server, "/_updraft/api/v1/queues/jobs/dead-letters").await;
        serde_json::from_str::<serde_json::Value>(&list)
            .ok()
            .and_then(|l| l.as_array().map(Vec::len))
    };
    assert!(
        eventually(Duration::from_secs(30), async || dead().await == Some(1)).await,
        "{:?}",
        dead().await
    );
    let (_, page) = get(&server, "/_updraft/apps/jobs/queues").await;
    assert!(
        page.contains("<code>fail</code>"),
        "a dead letter shows its data: {page}"
    );
    let delete = "/_updraft/apps/jobs/queues/jobs/delete";
    let r = post(&server, delete, Some("http://evil.example"), "").await;
    assert_eq!(r.status(), 403, "another origin's page cannot press it");
    let r = post(&server, delete, Some(&origin), "").await;
    assert_eq!(r.status(), 303);
    assert_eq!(dead().await, Some(0));
    let r = crate::client()
        .delete(server.url("/_updraft/api/v1/queues/nope/dead-letters"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A message waiting for later: the queue says how old its oldest message is.
    let r = post(
        &server,
        "/k/enqueue?queue=jobs&id=later&delay_ms=600000",
        None,
        "fine",
    )
    .await;
    assert_eq!(r.status(), 202);
    let (_, queues) = get(&server, "/_updraft/api/v1/queues").await;
    let queues: serde_json::Value = serde_json::from_str(&queues).unwrap();
    let jobs = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "jobs")
        .unwrap();
    assert_eq!(
        (
            jobs["waiting"].as_u64(),
            jobs["in_flight"].as_u64(),
            jobs["dead"].as_u64()
        ),
        (Some(1), Some(0), Some(0)),
        "{jobs}"
    );
    assert!(
        jobs["oldest_age_s"].as_u64().is_some_and(|s| s < 60),
        "{jobs}"
    );
    let (_, page) = get(&server, "/_updraft/apps/jobs/queues").await;
    assert!(
        page.contains("in flight") && page.contains(" ago</td>"),
        "{page}"
    );

    // The live view: new records arrive over SSE in batches, filtered as asked.
    let mut live = events(&server, "/_updraft/apps/jobs/live/events").await;
    let id = invocation_of(&server, "/k/kv/get?store=default&key=count").await;
    let seen = read_until(&mut live, &id, Duration::from_secs(20)).await;
    assert!(seen.contains(&id), "no live record of {id}: {seen}");
    assert!(seen.contains("event: invocations"), "{seen}");
    drop(live);
    // The page itself (its script fills the rows from the stream; a headless `--dump-dom`
    // never finishes while a stream is open, so only the page's frame is checked here).
    let (status, page) = get(&server, "/_updraft/apps/jobs/live?function=worker").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("/_updraft/apps/jobs/live/events?function=worker"),
        "the page streams what its filter asks for: {page}"
    );

    // In a browser: the overview draws, and logs no error.
    let shown = in_browser(&server, "/_updraft/").await;
    assert!(
        shown.dom.contains("Functions") && shown.dom.contains("<svg"),
        "{}",
        shown.dom
    );
}

/// `text` encoded for a form body.
fn form_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Off loopback the dashboard asks for the admin token once, then a session cookie
/// carries it; the API takes the cookie too.
#[tokio::test]
async fn off_loopback_the_dashboard_signs_in_with_the_admin_token() {
    let app = crate::kitchen_and_worker(&jobs_manifest("100ms", "200ms"));
    let server = Server::start(bin(), app.path(), &["--listen", "0.0.0.0:0"]);
    let base = server.base.replace("0.0.0.0", "127.0.0.1");
    let token = std::fs::read_to_string(app.path().join(".updraft/admin-token")).unwrap();
    let token = token.trim();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };

    // A page sends a browser to the sign-in form and back; the API answers 401.
    let r = http
        .get(format!("{base}/_updraft/apps/jobs/queues"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        location(&r),
        "/_updraft/login?next=/_updraft/apps/jobs/queues"
    );
    let r = http
        .get(format!("{base}/_updraft/api/v1/functions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{base}/_updraft/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains(r#"name="token" type="password""#)
    );

    let sign_in = async |token: &str, next: &str| {
        http.post(format!("{base}/_updraft/login"))
            .header("origin", &base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "token={}&next={}",
                form_value(token),
                form_value(next)
            ))
            .send()
            .await
            .unwrap()
    };
    let r = sign_in("wrong", "/_updraft/").await;
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("not this node&#39;s admin token")
    );
    // Never sent on to another site.
    let r = sign_in(token, "https://evil.example/").await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/_updraft/".to_owned())
    );
    let r = sign_in(token, "/_updraft/apps/jobs/queues").await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/_updraft/apps/jobs/queues");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in [
        "updraft_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/_updraft",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();

    let with = async |path: &str, cookie: &str| {
        http.get(format!("{base}{path}"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    };
    let r = with("/_updraft/apps/jobs/queues", &session).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains(r#"data-queue="jobs""#));
    assert_eq!(
        with("/_updraft/api/v1/functions", &session).await.status(),
        200
    );
    // A session that is not the one updraft signed is not one.
    let forged = format!("{}0", &session[..session.len() - 1]);
    let forged = if forged == session {
        format!("{}1", &session[..session.len() - 1])
    } else {
        forged
    };
    assert_eq!(with("/_updraft/", &forged).await.status(), 303);

    let r = http
        .post(format!("{base}/_updraft/logout"))
        .header("origin", &base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
}

#[tokio::test]
async fn the_table_explorer_and_bucket_browser_show_the_pipeline_s_data() {
    let dir = copy_example("data-pipeline");
    let server = Server::start(bin(), dir.path(), &[]);
    drop_sample_and_wait(&server, dir.path()).await;

    // The schema, in the API and on the page; updraft's own tables are not shown.
    let (_, schema) = get(&server, "/_updraft/api/v1/sql").await;
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(schema[0]["name"], "sales", "{schema}");
    let tables: Vec<&str> = schema[0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["sales"]);
    assert_eq!(
        schema[0]["tables"][0]["columns"][0],
        serde_json::json!({"name": "order_id", "type": "TEXT"})
    );
    let page_url = "/_updraft/apps/data-pipeline/sql";
    let (status, page) = get(&server, page_url).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("unit_price"), "{page}");

    // A query drawn as a bar chart and a table.
    let q = "SELECT region, sum(total) AS revenue FROM sales GROUP BY region ORDER BY region";
    let (status, page) = get(
        &server,
        &format!(
            "{page_url}?db=sales&q={}&chart=bar&x=region&y=revenue",
            form_value(q)
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<span data-rows="3">3</span>"#), "{page}");
    assert!(
        page.contains(r#"data-chart="bar" data-series="1" data-points="3""#),
        "{page}"
    );
    assert!(page.contains("revenue: south = 27.49"), "{page}");
    // A statement that writes is refused, and nothing changes.
    let (_, page) = get(
        &server,
        &format!("{page_url}?db=sales&q={}", form_value("DELETE FROM sales")),
    )
    .await;
    assert!(
        page.contains(r#"role="alert""#) && page.contains("may only read"),
        "{page}"
    );
    let query = async |sql: &str| {
        crate::client()
            .post(server.url("/_updraft/api/v1/sql/sales/query"))
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(query("DELETE FROM sales").await.status(), 400);
    let r = query("SELECT count(*) AS n FROM sales").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"columns": ["n"], "rows": [[5]]}));
    // `$from` and `$to` are the request's time range.
    let in_range = async |from: &str, to: &str| {
        crate::client()
            .post(server.url("/_updraft/api/v1/sql/sales/query"))
            .json(&serde_json::json!({
                "sql": "SELECT count(*) AS n FROM sales WHERE day BETWEEN date($from) AND date($to)",
                "from": from,
                "to": to,
            }))
            .send()
            .await
            .unwrap()
    };
    let r = in_range("2026-11-03T00:00:00Z", "2026-11-03T23:59:59Z").await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["rows"], serde_json::json!([[2]]), "{body}");
    let r = in_range("lunchtime", "2026-11-03T23:59:59Z").await;
    assert_eq!(r.status(), 400);
    let why = r.text().await.unwrap();
    assert!(why.contains("`from` is not an RFC 3339 time"), "{why}");
    // And on the page, the picker's range: none of the sample is from the last hour.
    let q = "SELECT order_id FROM sales WHERE day >= date($from)";
    let (_, page) = get(
        &server,
        &format!("{page_url}?db=sales&q={}&range=1h", form_value(q)),
    )
    .await;
    assert!(
        page.contains(r#"<span data-rows="0">0</span>"#)
            && page.contains("<option selected>1h</option>"),
        "{page}"
    );
    let (_, page) = get(&server, &format!("{page_url}?db=sales&q={}", form_value(q))).await;
    assert!(page.contains(r#"<span data-rows="5">5</span>"#), "{page}");

    // The result as CSV, quoted where it must be.
    let q = "SELECT order_id, product FROM sales ORDER BY order_id";
    let r = crate::client()
        .get(server.url(&format!(
            "{page_url}/export.csv?db=sales&q={}",
            form_value(q)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    assert!(
        csv.starts_with("order_id,product\r\nSO-1001,widget\r\n")
            && csv.contains("SO-1004,\"widget, large\"\r\n"),
        "{csv}"
    );

    // The bucket the export was dropped into, browsed by prefix, and the file downloaded.
    let bucket = "/_updraft/apps/data-pipeline/buckets/drop";
    let (status, page) = get(&server, bucket).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"?prefix=incoming/">incoming/</a>"#),
        "the folder is listed: {page}"
    );
    let (_, page) = get(&server, &format!("{bucket}?prefix=incoming%2F")).await;
    let sample = std::fs::read(dir.path().join("sample/sales-2026-11.csv")).unwrap();
    assert!(
        page.contains(r#"data-object="incoming/sales-2026-11.csv""#)
            && page.contains(&format!(r#"<td class="num">{}</td>"#, sample.len())),
        "{page}"
    );
    let link =
        "/_updraft/api/v1/apps/data-pipeline/buckets/drop/objects/incoming/sales-2026-11.csv";
    assert!(page.contains(link), "{page}");
    let body = crate::client()
        .get(server.url(link))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.as_ref(), sample.as_slice());

    let shown = in_browser(
        &server,
        &format!(
            "{page_url}?db=sales&q={}&chart=pie&x=region&y=revenue",
            form_value("SELECT region, sum(total) AS revenue FROM sales GROUP BY region")
        ),
    )
    .await;
    assert!(shown.dom.contains(r#"data-chart="pie""#), "{}", shown.dom);
}

/// Opens the SSE stream at `path`, checking that it is one.
async fn events(server: &Server, path: &str) -> reqwest::Response {
    let stream = crate::client().get(server.url(path)).send().await.unwrap();
    assert_eq!(stream.status(), 200, "{path}");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    stream
}

/// GETs `path`; the invocation id its answer names.
async fn invocation_of(server: &Server, path: &str) -> String {
    let r = crate::client().get(server.url(path)).send().await.unwrap();
    r.headers()["updraft-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Reads `stream` until `want` is in what arrived (bounded by `within`); what arrived.
async fn read_until(stream: &mut reqwest::Response, want: &str, within: Duration) -> String {
    let mut seen = String::new();
    let _ = tokio::time::timeout(within, async {
        while !seen.contains(want) {
            match stream.chunk().await {
                Ok(Some(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                _ => break,
            }
        }
    })
    .await;
    seen
}

#[tokio::test]
async fn logs_are_followed_live_and_async_invocations_are_listed() {
    let app = AppDir::new(
        r#"
[app]
name = "kitchen"

[function.kitchen]
source = "kitchen.wasm"
async = true

[[trigger.http]]
route = "/k/..."
function = "kitchen"
"#,
    );
    app.guest(guests::KITCHEN, "kitchen.wasm");
    let server = crate::start(&app);

    // Follow the logs, then make the function print: its lines arrive over SSE.
    let mut follow = events(
        &server,
        "/_updraft/apps/kitchen/logs/events?function=kitchen&after=0",
    )
    .await;
    let id = invocation_of(&server, "/k/log?from=test").await;
    let want = format!("to stderr from {id}");
    let seen = read_until(&mut follow, &want, Duration::from_secs(20)).await;
    assert!(seen.contains(&want), "no live log line of {id}: {seen}");
    assert!(seen.contains("event: lines"), "{seen}");
    assert!(seen.contains(&format!("to stdout from {id}")), "{seen}");
    drop(follow);

    // The page lists the newest lines and streams from after the last one it shows.
    let (status, page) = get(&server, "/_updraft/apps/kitchen/logs?function=kitchen").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&want), "{page}");
    assert!(page.contains(r#"<span class="stderr""#), "{page}");
    assert!(
        page.contains("/_updraft/apps/kitchen/logs/events?after=")
            && page.contains("function=kitchen"),
        "the page follows what its filter asks for: {page}"
    );
    let (status, page) = get(&server, "/_updraft/apps/kitchen/logs?function=nope").await;
    assert_eq!(status, 404, "{page}");
    assert!(
        page.contains("function `nope` is not in this app"),
        "{page}"
    );

    // The invocation keeps its request line; its page shows it and links to the logs.
    let (_, record) = get(&server, &format!("/_updraft/api/v1/invocations/{id}")).await;
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["request"], "GET /k/log?from=test", "{record}");
    let (_, page) = get(&server, &format!("/_updraft/apps/kitchen/invocations/{id}")).await;
    assert!(
        page.contains("<dt>request</dt><dd><code>GET /k/log?from=test</code></dd>"),
        "{page}"
    );
    assert!(
        page.contains("/_updraft/apps/kitchen/logs?function=kitchen"),
        "{page}"
    );

    // An async invocation is listed with its status, on the API and the queues page.
    let (status, page) = get(&server, "/_updraft/apps/kitchen/queues").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Async invocations") && page.contains("None in the last 24 hours"),
        "{page}"
    );
    let r = crate::client()
        .post(server.url("/k/sleep?ms=10"))
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let accepted: serde_json::Value = r.json().await.unwrap();
    let job = accepted["invocation_id"].as_str().unwrap().to_owned();
    let mut list = serde_json::Value::Null;
    let done = eventually(Duration::from_secs(30), async || {
        list = serde_json::from_str(
            &get(&server, "/_updraft/api/v1/async?function=kitchen")
                .await
                .1,
        )
        .unwrap_or_default();
        list[0]["status"] == "succeeded"
    })
    .await;
    assert!(done, "{list}");
    assert_eq!(list[0]["invocation_id"], job.as_str(), "{list}");
    assert_eq!(list[0]["method"], "POST");
    assert_eq!(list[0]["path"], "/k/sleep?ms=10");
    assert_eq!(list[0]["response_status"], 200);
    let (status, body) = get(&server, "/_updraft/api/v1/async?function=nope").await;
    assert_eq!(status, 404, "{body}");
    let (_, page) = get(&server, "/_updraft/apps/kitchen/queues").await;
    assert!(page.contains(&format!(r#"data-async="{job}""#)), "{page}");
    assert!(page.contains("<code>POST /k/sleep?ms=10</code>"), "{page}");
    assert!(page.contains(r#"<td class="ok">succeeded</td>"#), "{page}");
}
