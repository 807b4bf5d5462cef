//! The admin API and the CLI commands that use it: ls, invoke, logs, invocation records,
//! and the token outside loopback.

use std::time::Duration;

use updraft_test_support::{Server, run, run_with_env};

use crate::{bin, cli, client, eventually, get, kitchen_app, start};

/// The invocation record of `id` once `ready` holds for it (records and their logs are
/// written in batches), or the last one read after 30 s (`null` if none was found).
async fn invocation_record(
    server: &Server,
    id: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut record = serde_json::Value::Null;
    eventually(Duration::from_secs(30), async || {
        let r = client()
            .get(server.url(&format!("/_updraft/api/v1/invocations/{id}")))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            record = r.json().await.unwrap();
        }
        ready(&record)
    })
    .await;
    record
}

fn app() -> updraft_test_support::AppDir {
    kitchen_app(
        r#"
[kv.cache]

[function.other]
source = "kitchen.wasm"
kv = ["cache"]
timeout = "2s"

[[trigger.http]]
route = "/other/:id"
methods = ["GET", "PUT"]
function = "other"
"#,
    )
}

#[tokio::test]
async fn ls_lists_functions_and_routes_in_text_and_json() {
    let app = app();
    let server = start(&app);
    let (code, out, err) = cli(&server, &["ls"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kitchen") && out.contains("* /k/..."), "{out}");
    assert!(
        out.contains("other") && out.contains("GET,PUT /other/:id"),
        "{out}"
    );
    assert!(out.contains("may use kv cache"), "{out}");
    let (code, out, _) = cli(&server, &["ls", "--output", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let other = v
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "other")
        .unwrap();
    assert_eq!(other["kv"], serde_json::json!(["cache"]));
    // Every allow-list is reported, from the same list the manifest checks.
    for key in ["sql", "enqueue", "publish"] {
        assert_eq!(other[key], serde_json::json!([]), "{key}: {other}");
    }
    assert_eq!(other["timeout_ms"], 2000);
}

/// The admin API is app-scoped (`/_updraft/api/v1/apps/<app>/…`); under `up` the unscoped
/// paths are aliases of the one app, and the CLI finds the app itself or takes `--app`.
#[tokio::test]
async fn the_admin_api_is_app_scoped_with_unscoped_aliases_under_up() {
    let app = app();
    let server = start(&app);
    let (s, body) = get(&server, "/_updraft/api/v1/apps").await;
    assert_eq!(s, 200, "{body}");
    let apps: serde_json::Value = serde_json::from_str(&body).unwrap();
    let name = apps[0]["name"].as_str().unwrap().to_owned();
    assert_eq!(apps.as_array().unwrap().len(), 1, "{apps}");
    let (s, scoped) = get(&server, &format!("/_updraft/api/v1/apps/{name}/functions")).await;
    assert_eq!(s, 200, "{scoped}");
    let (s, alias) = get(&server, "/_updraft/api/v1/functions").await;
    assert_eq!((s, &alias), (200, &scoped));
    let (s, one) = get(&server, &format!("/_updraft/api/v1/apps/{name}")).await;
    assert_eq!(s, 200, "{one}");
    assert!(one.contains(&format!(r#""name":"{name}""#)), "{one}");
    let (s, body) = get(&server, "/_updraft/api/v1/apps/nope/functions").await;
    assert_eq!(s, 404, "{body}");
    assert!(
        body.contains("app `nope` is not on this node") && body.contains("/_updraft/api/v1/apps"),
        "{body}"
    );
    // The dashboard's pages say the same, whatever else their path holds.
    for page in [
        "/_updraft/apps/nope",
        "/_updraft/apps/nope/invocations/x",
        "/_updraft/apps/nope/sql",
    ] {
        let (s, body) = get(&server, page).await;
        assert_eq!(s, 404, "{page}: {body}");
        assert!(
            body.contains("app `nope` is not on this node"),
            "{page}: {body}"
        );
    }
    // The CLI: the only app by default, the one named by `--app`, and a clear error.
    let (code, out, err) = cli(&server, &["ls", "--app", &name]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kitchen"), "{out}");
    let (code, _, err) = cli(&server, &["ls", "--app", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("app `nope` is not on this node"), "{err}");
}

#[tokio::test]
async fn invoke_sends_a_body_and_reports_the_invocation() {
    let app = app();
    let server = start(&app);
    let (code, out, err) = cli(
        &server,
        &["invoke", "kitchen", "--path", "/echo", "--data", "hello"],
    );
    assert_eq!((code, out.trim_end()), (0, "hello"), "{err}");
    assert!(err.contains("status 200 · invocation "), "{err}");
    let file = app.write("body.bin", "from a file");
    let at = format!("@{}", file.display());
    let (_, out, _) = cli(
        &server,
        &["invoke", "kitchen", "--path", "/echo", "--data", &at],
    );
    assert_eq!(out.trim_end(), "from a file");
    let (code, out, _) = cli(
        &server,
        &[
            "invoke", "kitchen", "--path", "/echo", "-d", "x", "--output", "json",
        ],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["body"].as_str()),
        (Some(200), Some("x"))
    );
    let id = v["invocation_id"].as_str().unwrap().to_owned();
    // The record appears (records are written in batches).
    let record = invocation_record(&server, &id, |r| !r.is_null()).await;
    assert_eq!(record["function"], "kitchen", "{record}");
    assert_eq!(record["outcome"], "ok");
    assert!(record["instantiate_us"].as_i64().unwrap() > 0);
    // A function error exits non-zero; an unknown function says how to find the right one.
    let (code, _, err) = cli(&server, &["invoke", "kitchen", "--path", "/trap"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("status 500"), "{err}");
    let (code, _, err) = cli(&server, &["invoke", "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("function `nope` does not exist") && err.contains("updraft ls"),
        "{err}"
    );
}

#[tokio::test]
async fn logs_show_and_follow_guest_output_by_invocation() {
    let app = app();
    let server = start(&app);
    let r = client().get(server.url("/k/log")).send().await.unwrap();
    let id = r.headers()["updraft-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let wanted = format!("to stdout from {id}");
    let mut out = String::new();
    eventually(Duration::from_secs(30), async || {
        out = cli(&server, &["logs", "--function", "kitchen"]).1;
        out.contains(&wanted)
    })
    .await;
    assert!(out.contains(&wanted) && out.contains("stdout:"), "{out}");
    // Log lines and records are written in batches: the stderr line and the record may land
    // in a later one than the stdout line.
    let mut lines: Vec<serde_json::Value> = Vec::new();
    eventually(Duration::from_secs(30), async || {
        out = cli(&server, &["logs", "--invocation", &id, "--output", "json"]).1;
        lines = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines.len() >= 2
    })
    .await;
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().any(|l| l["stream"] == "stderr"));
    // The invocation's record carries its logs too.
    let detail = invocation_record(&server, &id, |r| {
        r["logs"].as_array().is_some_and(|l| l.len() >= 2)
    })
    .await;
    assert_eq!(detail["logs"].as_array().unwrap().len(), 2, "{detail}");
    // Follow: a line logged after `logs -f` started shows up in its output.
    let mut follow = std::process::Command::new(bin())
        .args([
            "logs",
            "-f",
            "--server",
            &server.base,
            "--function",
            "kitchen",
            "--limit",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = updraft_test_support::Captured::from_reader(follow.stdout.take().unwrap());
    // Only log once it follows: it starts with the newest line (the first call's stderr one)
    // and then asks for lines after it. Were the new call's lines stored before its first
    // look, `--limit 1` would show only the last of them.
    let following = stdout.wait_for(&id, Duration::from_secs(30));
    assert!(following, "{}", stdout.text());
    let r = client().get(server.url("/k/log")).send().await.unwrap();
    let id2 = r.headers()["updraft-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let seen = stdout.wait_for(&format!("to stdout from {id2}"), Duration::from_secs(30));
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(seen, "{}", stdout.text());
    let (code, _, err) = cli(&server, &["logs", "--function", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("function `nope` does not exist"), "{err}");
}

#[tokio::test]
async fn outside_loopback_the_admin_api_needs_the_token() {
    let app = app();
    let server = Server::start(bin(), app.path(), &["--listen", "0.0.0.0:0"]);
    // Talk to it over loopback all the same.
    let base = server.base.replace("0.0.0.0", "127.0.0.1");
    assert!(
        server.stdout.text().contains("admin token (shown once"),
        "{}",
        server.stdout.text()
    );
    let token = std::fs::read_to_string(app.path().join(".updraft/admin-token")).unwrap();
    let token = token.trim();
    let mode = std::fs::metadata(app.path().join(".updraft/admin-token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let r = client()
        .get(format!("{base}/_updraft/api/v1/functions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Authorization: Bearer"));
    let r = client()
        .get(format!("{base}/_updraft/api/v1/functions"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(format!("{base}/_updraft/api/v1/functions"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        client()
            .get(format!("{base}/_updraft/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The CLI takes the token from UPDRAFT_TOKEN.
    let out = run_with_env(
        bin(),
        &["ls", "--server", &base],
        &[("UPDRAFT_TOKEN", token)],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(bin(), &["ls", "--server", &base], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
    // Function routes stay public.
    assert_eq!(
        client()
            .get(format!("{base}/k/sleep?ms=1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A web page cannot reach `/_updraft/`: not through a rebound DNS name (`Host`), not by
/// posting from another origin; user routes still answer any host.
#[tokio::test]
async fn the_admin_endpoints_refuse_foreign_hosts_and_origins() {
    let app = app();
    let server = Server::start(bin(), app.path(), &["--admin-host", "ops.internal"]);
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let status = async |host: &str, path: &str| {
        let r = client()
            .get(server.url(path))
            .header("host", host)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    for path in ["/_updraft/api/v1/functions", "/_updraft/api/v1/invocations"] {
        let (s, body) = status(&format!("rebound.example:{port}"), path).await;
        assert_eq!(s, 403, "{path}: {body}");
        assert!(
            body.contains("`rebound.example:") && body.contains("--admin-host rebound.example"),
            "{body}"
        );
        for ok in [
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("ops.internal:{port}"),
        ] {
            assert_eq!(status(&ok, path).await.0, 200, "{ok} {path}");
        }
    }
    // User routes match any host.
    assert_eq!(status("rebound.example", "/k/sleep?ms=1").await.0, 200);
    // State-changing requests from another origin are refused; same origin and no origin
    // (the CLI) are not.
    let invoke = async |origin: Option<&str>| {
        let mut r = client()
            .post(server.url("/_updraft/api/v1/functions/kitchen/invoke?path=/sleep%3Fms%3D1"))
            .header("host", format!("localhost:{port}"));
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (s, body) = invoke(Some("http://evil.example")).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("Origin: http://evil.example"), "{body}");
    assert_eq!(invoke(Some("null")).await.0, 403);
    let (s, body) = invoke(Some(&format!("http://localhost:{port}"))).await;
    assert_ne!(s, 403, "{body}");
    let (s, body) = invoke(None).await;
    assert_ne!(s, 403, "{body}");
}

/// An admin token file another user could read is made private at start.
#[tokio::test]
async fn an_existing_admin_token_file_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = app();
    let path = app.path().join(".updraft/admin-token");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "s3cret-token\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start(bin(), app.path(), &["--listen", "0.0.0.0:0"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    crate::stderr_shows(&server, "was readable by others").await;
    let base = server.base.replace("0.0.0.0", "127.0.0.1");
    let r = client()
        .get(format!("{base}/_updraft/api/v1/functions"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn openapi_document_is_served() {
    let app = app();
    let server = start(&app);
    let (s, body) = get(&server, "/_updraft/openapi.json").await;
    assert_eq!(s, 200);
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
    .unwrap();
    assert_eq!(body.trim(), checked_in.trim());
}

#[test]
fn client_commands_say_when_nothing_is_running() {
    let out = run(
        bin(),
        &["ls", "--server", "http://127.0.0.1:9"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach updraft at `http://127.0.0.1:9`") && err.contains("updraft up"),
        "{err}"
    );
}
