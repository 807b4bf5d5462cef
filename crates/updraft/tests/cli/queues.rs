//! Queues and event functions: enqueue from a function, deliver to an event function,
//! retries with backoff, dead letters with redrive, idempotency keys, delays.

use std::time::{Duration, Instant};

use serde_json::Value;
use updraft_test_support::{AppDir, Server, guests, run};

use crate::{bin, client, eventually, get, start};

const APP: &str = r#"
[app]
name = "jobs"

[kv.default]

[queue.jobs]
max_attempts = 3
backoff = "100ms"
max_backoff = "200ms"
lease = "2s"

[function.kitchen]
source = "kitchen.wasm"
kv = ["default"]
enqueue = ["jobs"]

[function.worker]
source = "worker.wasm"
kv = ["default"]
max_concurrency = 4

[[trigger.http]]
route = "/k/..."
function = "kitchen"

[[trigger.queue]]
queue = "jobs"
function = "worker"
"#;

fn app() -> AppDir {
    crate::kitchen_and_worker(APP)
}

async fn enqueue(server: &Server, query: &str, data: &str) -> u16 {
    client()
        .post(server.url(&format!("/k/enqueue?queue=jobs&{query}")))
        .body(data.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn count(server: &Server) -> u64 {
    match get(server, "/k/kv/get?store=default&key=count").await {
        (200, n) => n.parse().unwrap(),
        _ => 0,
    }
}

async fn queue_info(server: &Server) -> Value {
    let r = client()
        .get(server.url("/_updraft/api/v1/queues"))
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()[0].clone()
}

#[tokio::test]
async fn every_enqueued_message_is_handled_once() {
    let app = app();
    let server = start(&app);
    for i in 0..60 {
        assert_eq!(
            enqueue(&server, &format!("id=job-{i}"), &format!("job {i}")).await,
            202
        );
    }
    assert!(
        eventually(Duration::from_secs(60), async || count(&server).await == 60).await,
        "count {}",
        count(&server).await
    );
    for i in [0, 31, 59] {
        assert_eq!(
            get(
                &server,
                &format!("/k/kv/get?store=default&key=seen/job-{i}")
            )
            .await,
            (200, format!("job {i}"))
        );
    }
    // The last runs may not be acked yet (a leased message counts as waiting).
    let mut q = Value::Null;
    eventually(Duration::from_secs(30), async || {
        q = queue_info(&server).await;
        q["ready"] == 0 && q["waiting"] == 0
    })
    .await;
    assert_eq!(count(&server).await, 60, "no duplicates");
    assert_eq!(
        (
            q["ready"].as_u64(),
            q["waiting"].as_u64(),
            q["dead"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{q}"
    );
    let m = crate::wait_metrics(
        &server,
        &[r#"updraft_invocations_total{function="worker",trigger="queue",outcome="ok"} 60"#],
    )
    .await;
    assert!(
        m.contains(r#"function="worker",trigger="queue",outcome="ok"} 60"#),
        "{m}"
    );
}

#[tokio::test]
async fn failures_retry_then_dead_letter_and_redrive_brings_them_back() {
    let app = app();
    let server = start(&app);
    for (id, data) in [
        ("p1", "fail"),
        ("p2", "fail"),
        ("r1", "fail-until-2"),
        ("r2", "fail-until-3"),
        ("ok", "fine"),
    ] {
        assert_eq!(enqueue(&server, &format!("id={id}"), data).await, 202);
    }
    // The retried ones succeed on delivery 2 and 3; the poison pair is dead-lettered.
    assert!(
        eventually(Duration::from_secs(60), async || queue_info(&server).await
            ["dead"]
            == 2)
        .await
    );
    assert!(
        eventually(Duration::from_secs(30), async || count(&server).await == 3).await,
        "count {}",
        count(&server).await
    );
    let dead: Vec<Value> = client()
        .get(server.url("/_updraft/api/v1/queues/jobs/dead-letters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ids: Vec<&str> = dead
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["p1", "p2"], "exactly the poison set");
    assert!(dead.iter().all(|d| d["attempts"] == 3), "{dead:?}");
    assert!(
        dead[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("asked to fail"),
        "{dead:?}"
    );
    // Redrive: they fail again three times and come back to the dead letters.
    let r: Value = client()
        .post(server.url("/_updraft/api/v1/queues/jobs/redrive"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["redriven"], 2);
    assert!(
        eventually(Duration::from_secs(60), async || {
            let q = queue_info(&server).await;
            q["dead"] == 2 && q["waiting"] == 0
        })
        .await
    );
    assert!(
        server
            .stderr
            .wait_for("handling p1 attempt 3", Duration::from_secs(30)),
        "{}",
        server.stderr.text()
    );
    assert_eq!(count(&server).await, 3);
}

#[tokio::test]
async fn idempotency_keys_delays_and_unknown_queues() {
    let app = app();
    let server = start(&app);
    assert_eq!(enqueue(&server, "id=a&key=order-1", "first").await, 202);
    assert_eq!(
        enqueue(&server, "id=b&key=order-1", "second").await,
        202,
        "a duplicate is accepted and dropped"
    );
    assert!(eventually(Duration::from_secs(30), async || count(&server).await == 1).await);
    assert_eq!(
        get(&server, "/k/kv/get?store=default&key=seen/b").await.0,
        404
    );
    let sent = Instant::now();
    assert_eq!(
        enqueue(&server, "id=late&delay_ms=1500", "later").await,
        202
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(count(&server).await, 1, "not before its delay");
    assert!(eventually(Duration::from_secs(30), async || count(&server).await == 2).await);
    assert!(sent.elapsed() >= Duration::from_millis(1400));
    let r = client()
        .post(server.url("/k/enqueue?queue=nope"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("NoSuchQueue"));
}

#[tokio::test]
async fn queued_work_survives_a_restart() {
    let app = app();
    let server = start(&app);
    for i in 0..5 {
        enqueue(&server, &format!("id=slow-{i}"), "sleep-300").await;
    }
    drop(server); // kill: leased messages come back after their lease
    let server = start(&app);
    assert!(
        eventually(Duration::from_secs(60), async || count(&server).await >= 5).await,
        "count {}",
        count(&server).await
    );
}

#[tokio::test]
async fn invoke_runs_an_event_function_and_kinds_are_checked_at_start() {
    let app = app();
    let server = start(&app);
    let out = run(
        bin(),
        &[
            "invoke",
            "worker",
            "--data",
            "by hand",
            "--server",
            &server.base,
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(eventually(Duration::from_secs(30), async || count(&server).await == 1).await);
    let (_, ls) = get(&server, "/_updraft/api/v1/functions/worker").await;
    assert!(ls.contains(r#""kind":"event""#), "{ls}");
    drop(server);
    // An HTTP route to an event function, or a queue trigger on an HTTP function, is refused.
    let bad = AppDir::new(&APP.replace(
        "route = \"/k/...\"\nfunction = \"kitchen\"",
        "route = \"/k/...\"\nfunction = \"worker\"",
    ));
    bad.guest(guests::KITCHEN, "kitchen.wasm");
    bad.guest(guests::WORKER, "worker.wasm");
    let err = Server::try_start(bin(), bad.path(), &[]).err().unwrap();
    assert!(err.contains("is an event function"), "{err}");
    let bad = AppDir::new(&APP.replace(
        "queue = \"jobs\"\nfunction = \"worker\"",
        "queue = \"jobs\"\nfunction = \"kitchen\"",
    ));
    bad.guest(guests::KITCHEN, "kitchen.wasm");
    bad.guest(guests::WORKER, "worker.wasm");
    let err = Server::try_start(bin(), bad.path(), &[]).err().unwrap();
    assert!(err.contains("not an event function"), "{err}");
}

async fn seen(server: &Server, id: &str) -> bool {
    get(server, &format!("/k/kv/get?store=default&key=seen/{id}"))
        .await
        .0
        == 200
}

#[tokio::test]
async fn the_cli_and_the_admin_api_enqueue_cloudevents() {
    let app = app();
    let server = start(&app);
    let enqueue = |extra: &[&str]| {
        let mut args = vec!["events", "enqueue", "jobs", "--type", "job", "--data", "hi"];
        args.extend_from_slice(extra);
        crate::cli(&server, &args)
    };
    let (code, out, err) = enqueue(&["--id", "e1"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "enqueued 1 (duplicates 0)");
    let (_, out, _) = enqueue(&["--id", "e1"]);
    assert_eq!(
        out.trim(),
        "enqueued 0 (duplicates 1)",
        "same source and id"
    );
    assert!(eventually(Duration::from_secs(30), async || seen(&server, "e1").await).await);

    let sent = Instant::now();
    let (code, _, err) = enqueue(&["--id", "later", "--delay", "2s"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        eventually(Duration::from_secs(30), async || seen(&server, "later")
            .await)
        .await
    );
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "delivered before its delay"
    );

    // A batch over the API.
    let batch: Vec<Value> = (0..3)
        .map(|i| serde_json::json!({"specversion": "1.0", "id": format!("b{i}"), "source": "/api", "type": "job", "data": "x"}))
        .collect();
    let r = client()
        .post(server.url("/_updraft/api/v1/queues/jobs/messages"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(Value::from(batch).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["enqueued"], 3);
    assert!(
        eventually(Duration::from_secs(30), async || {
            seen(&server, "b0").await && seen(&server, "b1").await && seen(&server, "b2").await
        })
        .await
    );

    // Mistakes name the thing and the fix.
    let (code, _, err) = crate::cli(&server, &["events", "enqueue", "nope", "--type", "t"]);
    assert_ne!(code, 0);
    assert!(err.contains("`nope`"), "{err}");
    let (code, _, err) = enqueue(&["--delay", "soon"]);
    assert_ne!(code, 0);
    assert!(err.contains("`delay` is not a duration"), "{err}");
    let (code, _, err) = enqueue(&["--delay", "15days"]);
    assert_ne!(code, 0);
    assert!(err.contains("over the limit of 14 days"), "{err}");
    let r = client()
        .post(server.url("/_updraft/api/v1/queues/jobs/messages"))
        .header("content-type", "application/cloudevents+json")
        .body(r#"{"specversion":"1.0","id":"x","type":"t"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("source"));
}

/// A message whose every run ends with the process (here `kill -9` mid-run) is
/// dead-lettered once its attempts are used up, instead of being leased forever.
#[tokio::test]
async fn a_message_that_never_finishes_is_dead_lettered_not_redelivered_forever() {
    let app = crate::kitchen_and_worker(&APP.replace(
        "max_attempts = 3\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\nlease = \"2s\"",
        "max_attempts = 2\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\nlease = \"1s\"",
    ));
    let mut server = start(&app);
    assert_eq!(enqueue(&server, "id=doomed", "sleep-600000").await, 202);
    for attempt in 1..=2 {
        let line = format!("handling doomed attempt {attempt} data sleep-600000");
        assert!(
            eventually(Duration::from_secs(60), async || server
                .stdout
                .text()
                .contains(&line)
                || server.stderr.text().contains(&line))
            .await,
            "attempt {attempt} never started"
        );
        server.signal(libc::SIGKILL);
        drop(server);
        server = start(&app);
    }
    // The third lease is past `max_attempts = 2`: dead-lettered, not run.
    let dead = eventually(Duration::from_secs(60), async || {
        let (_, body) = get(&server, "/_updraft/api/v1/queues/jobs/dead-letters").await;
        body.contains("doomed") && body.contains("delivered 2 times without finishing")
    })
    .await;
    assert!(dead, "the message was not dead-lettered");
    assert!(
        !server.stdout.text().contains("handling doomed attempt 3")
            && !server.stderr.text().contains("handling doomed attempt 3"),
        "the message ran a third time"
    );
}
