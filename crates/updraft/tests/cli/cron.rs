//! Cron: per-second schedules, one run per occurrence across processes, catch-up once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use updraft_test_support::{AppDir, Server};

use crate::{bin, cli, eventually, get, start};

fn app(schedule: &str) -> AppDir {
    crate::kitchen_and_worker(&format!(
        r#"
[app]
name = "cron"

[kv.default]

[function.kitchen]
source = "kitchen.wasm"
kv = ["default"]

[function.worker]
source = "worker.wasm"
kv = ["default"]

[[trigger.http]]
route = "/k/..."
function = "kitchen"

[[trigger.cron]]
schedule = "{schedule}"
function = "worker"
"#
    ))
}

/// The ids of the occurrences handled, and the handled count (equal when none ran twice).
async fn runs(server: &Server) -> (Vec<String>, u64) {
    let (_, keys) = get(server, "/k/kv/list?store=default&prefix=seen/").await;
    let ids: Vec<String> = keys
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    let count = match get(server, "/k/kv/get?store=default&key=count").await {
        (200, n) => n.parse().unwrap(),
        _ => 0,
    };
    (ids, count)
}

#[tokio::test]
async fn two_processes_on_one_store_run_each_occurrence_once() {
    let app = app("* * * * * *");
    let a = start(&app);
    let mut b = Server::start(bin(), app.path(), &[]);
    let started = Instant::now();
    // Both processes race for at least 20 occurrences (about 20 s; more on a loaded machine,
    // which may fire an occurrence late and skip it).
    assert!(
        eventually(Duration::from_secs(90), async || runs(&a).await.0.len()
            >= 22)
        .await,
        "fewer than 22 runs in {} s",
        started.elapsed().as_secs()
    );
    // Stop `b` cleanly: a kill could land between a run's `seen/` write and its count, or
    // between its count and its ack (a redelivery then counts it twice).
    b.signal(libc::SIGTERM);
    assert!(b.wait(Duration::from_secs(30)).is_some(), "b did not stop");
    drop(b);
    // `a` keeps running one occurrence a second, and the keys and the count are two reads:
    // wait for a pair that agrees (a run counted twice never does).
    let (mut ids, mut count) = (Vec::new(), 0);
    let agreed = eventually(Duration::from_secs(30), async || {
        (ids, count) = runs(&a).await;
        count == ids.len() as u64
    })
    .await;
    let elapsed = started.elapsed().as_secs();
    assert!(ids.len() >= 20, "{} runs in {elapsed} s", ids.len());
    assert!(
        agreed,
        "an occurrence ran twice: {count} runs for {} occurrences",
        ids.len()
    );
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
}

#[tokio::test]
async fn missed_occurrences_are_caught_up_once_and_flagged_past_due() {
    let app = app("*/2 * * * * *");
    let mut server = start(&app);
    assert!(
        eventually(Duration::from_secs(30), async || !runs(&server)
            .await
            .0
            .is_empty())
        .await,
        "the cron trigger never ran"
    );
    // Stop cleanly: a run cut by a kill keeps its lease past the restart, and the catch-up
    // is skipped while a run is queued or running.
    server.signal(libc::SIGTERM);
    assert!(
        server.wait(Duration::from_secs(30)).is_some(),
        "not stopped"
    );
    drop(server);
    // Several occurrences pass while nothing runs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let server = start(&app);
    // The catch-up runs in the background after the start; wait for it.
    let (mut ids, mut past_due) = (Vec::new(), 0);
    let caught_up = eventually(Duration::from_secs(30), async || {
        ids = runs(&server).await.0;
        past_due = 0;
        for id in &ids {
            let (_, data) = get(&server, &format!("/k/kv/get?store=default&key={id}")).await;
            if data.contains(r#""past_due":true"#) {
                past_due += 1;
            }
        }
        past_due >= 1
    })
    .await;
    assert!(
        caught_up && past_due == 1,
        "exactly one catch-up run for the missed occurrences ({past_due}): {ids:?}"
    );
}

/// What the worker printed, one string per line.
async fn worker_lines(server: &Server) -> Vec<String> {
    let r = crate::client()
        .get(server.url("/_updraft/api/v1/logs?function=worker&limit=1000"))
        .send()
        .await
        .unwrap();
    r.json::<serde_json::Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap().to_owned())
        .collect()
}

async fn set(server: &Server, key: &str, value: &str) {
    let r = crate::client()
        .post(server.url(&format!("/k/kv/set?store=default&key={key}")))
        .body(value.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_failing_run_is_retried_with_backoff() {
    let app = app("*/3 * * * * *");
    let server = start(&app);
    set(&server, "cron-fail-until", "2").await;
    let retried = |lines: &[String]| {
        lines
            .iter()
            .find(|l| l.starts_with("handling cron/worker/") && l.contains(" attempt 2 "))
            .map(|l| l.split(' ').nth(1).unwrap().to_owned())
    };
    let mut id = None;
    assert!(
        crate::eventually(Duration::from_secs(30), async || {
            id = retried(&worker_lines(&server).await);
            id.is_some()
        })
        .await,
        "no cron run was retried: {:?}",
        worker_lines(&server).await
    );
    let id = id.unwrap();
    assert!(
        crate::eventually(Duration::from_secs(30), async || runs(&server)
            .await
            .0
            .contains(&format!("seen/{id}")))
        .await,
        "the retry of `{id}` succeeded"
    );
    // A run that keeps failing is dead-lettered after 3 attempts, in the trigger's queue
    // that `updraft dlq` lists.
    set(&server, "cron-fail-until", "99").await;
    let dead = async || {
        let queues: serde_json::Value = crate::client()
            .get(server.url("/_updraft/api/v1/queues"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        queues
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"].as_str().unwrap().starts_with("_cron.worker."))
            .map_or(0, |q| q["dead"].as_u64().unwrap())
    };
    assert!(
        crate::eventually(Duration::from_secs(30), async || dead().await >= 1).await,
        "no cron run was dead-lettered"
    );
    let (code, out, err) = crate::cli(&server, &["dlq", "ls"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("_cron.worker."), "{out}");
}

#[tokio::test]
async fn a_run_cut_by_kill_9_runs_again_after_restart() {
    let app = app("*/2 * * * * *");
    let server = start(&app);
    set(&server, "cron-sleep-ms", "4000").await;
    // Wait for a run that started after the sleep was set, then kill the process under it.
    // A run reads the sleep just after it logs `handling`, so one already under way when it
    // was set may not sleep: take only occurrences scheduled after the set (their run starts
    // later still). A run's id ends in its occurrence's time in microseconds.
    let set_at = chrono::Utc::now().timestamp_micros();
    let started = |lines: Vec<String>| {
        lines
            .into_iter()
            .filter(|l| l.starts_with("handling cron/worker/"))
            .map(|l| l.split(' ').nth(1).unwrap().to_owned())
            .rfind(|id| {
                id.rsplit('/')
                    .next()
                    .and_then(|t| t.parse::<i64>().ok())
                    .is_some_and(|t| t > set_at)
            })
    };
    let mut cut = None;
    assert!(
        crate::eventually(Duration::from_secs(30), async || {
            cut = started(worker_lines(&server).await);
            cut.is_some()
        })
        .await
    );
    let cut = cut.unwrap();
    assert!(
        !runs(&server).await.0.contains(&format!("seen/{cut}")),
        "`{cut}` is still running when the process is killed"
    );
    server.signal(libc::SIGKILL);
    drop(server);
    let server = start(&app);
    set(&server, "cron-sleep-ms", "0").await;
    assert!(
        crate::eventually(Duration::from_secs(25), async || runs(&server)
            .await
            .0
            .contains(&format!("seen/{cut}")))
        .await,
        "the run of `{cut}` cut by kill -9 never ran again: {:?}",
        runs(&server).await.0
    );
}

/// The details of the cron triggers of function `worker` in `updraft ls --output json`.
fn ls_cron(server: &Server) -> Vec<serde_json::Value> {
    let (code, out, err) = cli(server, &["ls", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let functions: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let worker = functions.iter().find(|f| f["id"] == "worker").unwrap();
    worker["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "cron")
        .map(|t| t["details"].clone())
        .collect()
}

fn time(v: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn ls_shows_each_cron_trigger_with_its_last_and_next_run() {
    let app = app("* * * * * *");
    let server = start(&app);
    let before = chrono::Utc::now();
    let cron = ls_cron(&server);
    let after = chrono::Utc::now();
    assert_eq!(cron.len(), 1, "{cron:?}");
    assert_eq!(cron[0]["schedule"], "* * * * * *");
    assert_eq!(cron[0]["timezone"], "UTC");
    // In the future when asked, and at most a second later.
    let next = time(&cron[0]["next_run"]);
    assert!(
        next > before && next <= after + chrono::Duration::seconds(1),
        "next run {next} is not the coming second (asked between {before} and {after})"
    );

    // Once it ran, the last run is a past occurrence and the next one comes after it.
    let ran = eventually(Duration::from_secs(30), async || {
        !runs(&server).await.0.is_empty()
    })
    .await;
    assert!(ran, "the cron trigger never ran");
    let cron = ls_cron(&server);
    let last = time(&cron[0]["last_run"]);
    let next = time(&cron[0]["next_run"]);
    let now = chrono::Utc::now();
    assert!(
        last <= now && next > last,
        "last {last}, next {next}, now {now}"
    );

    // The dashboard's queues page lists the schedule with its recent runs, each a link.
    let mut page = String::new();
    let listed = eventually(Duration::from_secs(30), async || {
        page = get(&server, "/_updraft/apps/cron/queues").await.1;
        page.contains(r#"<li><a class="ok" href="/_updraft/apps/cron/invocations/"#)
    })
    .await;
    assert!(listed, "{page}");
    assert!(
        page.contains(r#"<tr data-schedule="worker"><th scope="row">worker</th><td><code>* * * * * *</code> UTC</td>"#),
        "{page}"
    );

    let (code, out, err) = cli(&server, &["ls"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("cron `* * * * * *` UTC"))
        .unwrap_or_else(|| panic!("no cron line: {out}"));
    assert!(
        line.contains("  last 20") && line.contains("  next 20"),
        "{line}"
    );
}

/// A process that dies between claiming an occurrence and queueing its run (a failure point
/// armed in it) does not lose the run: the other process on the same state runs it, once.
#[tokio::test]
async fn a_claim_whose_process_dies_before_the_enqueue_still_runs_once() {
    let app = app("* * * * * *");
    let b = start(&app);
    let mut a = Server::start_with_env(
        bin(),
        app.path(),
        &[],
        &[("UPDRAFT_FAILPOINT", "cron-after-claim")],
    );
    let claimant = format!("{}:{}", a.base.trim_start_matches("http://"), a.pid());
    // `a` aborts right after the first occurrence it wins.
    assert!(
        a.wait(Duration::from_secs(90)).is_some(),
        "the armed process never won a claim"
    );
    let state = rusqlite::Connection::open(app.path().join(".updraft/state.db")).unwrap();
    let lost: Vec<i64> = state
        .prepare("SELECT occurrence_us FROM cron_claims WHERE claimant = ?1")
        .unwrap()
        .query_map([&claimant], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(lost.len(), 1, "claims of {claimant}: {lost:?}");
    let id = format!("seen/cron/worker/{}", lost[0]);
    assert!(
        eventually(Duration::from_secs(60), async || runs(&b)
            .await
            .0
            .contains(&id))
        .await,
        "the occurrence claimed by the dead process never ran: {:?}",
        runs(&b).await.0
    );
    // Once: the handled count matches the distinct occurrences.
    assert!(
        eventually(Duration::from_secs(30), async || {
            let (ids, count) = runs(&b).await;
            ids.len() as u64 == count
        })
        .await,
        "an occurrence ran twice: {:?}",
        runs(&b).await
    );
}
