//! Async invocations (scenario 5): `Prefer: respond-async` answers 202 at once; the work
//! runs in the background; its status and result are kept; completion is published to a
//! topic and POSTed to an allowed callback.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;
use updraft_test_support::{AppDir, Server, guests};

use crate::{client, eventually, start};

fn app(callback_port: u16) -> AppDir {
    crate::kitchen_and_worker(&format!(
        r#"
[app]
name = "async"

[kv.default]

[topic.done]

[async]
completion_topic = "done"
callback_hosts = ["http://127.0.0.1:{callback_port}"]

[function.kitchen]
source = "kitchen.wasm"
async = true

[function.listener]
source = "worker.wasm"
kv = ["default"]

[[trigger.http]]
route = "/k/..."
function = "kitchen"

[[trigger.topic]]
topic = "done"
function = "listener"
"#
    ))
}

/// A one-request HTTP server that hands back the body it received.
fn callback_server() -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    let _ = tx.send(body.to_owned());
                    break;
                }
            }
        }
        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
    });
    (port, rx)
}

async fn status(server: &Server, url: &str) -> Value {
    client()
        .get(server.url(url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn respond_async_runs_later_and_reports_the_result() {
    let (port, callback) = callback_server();
    let app = app(port);
    let server = start(&app);
    let sent = Instant::now();
    let r = client()
        .post(server.url("/k/sleep?ms=5000"))
        .header("prefer", "respond-async")
        .header("callback-url", format!("http://127.0.0.1:{port}/hook"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Well before the 5 s of work (a loaded machine can take a while over the enqueue).
    assert!(
        sent.elapsed() < Duration::from_millis(4000),
        "202 comes before the work is done"
    );
    assert_eq!(r.headers()["preference-applied"], "respond-async");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = r.json().await.unwrap();
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["status_url"], location.as_str());
    let mut outcome = Value::Null;
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        outcome = status(&server, &location).await;
        if outcome["status"] == "succeeded" {
            break;
        }
        assert!(
            outcome["status"] == "queued" || outcome["status"] == "running",
            "{outcome}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(outcome["response"]["status"], 200);
    assert_eq!(outcome["response"]["body"], "slept\n");
    // The callback got the same outcome; the completion topic's subscriber got an event.
    let posted: Value =
        serde_json::from_str(&callback.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(posted["invocation_id"], accepted["invocation_id"]);
    assert_eq!(posted["status"], "succeeded");
    let end = Instant::now() + Duration::from_secs(30);
    let mut seen = false;
    while !seen && Instant::now() < end {
        let r: Value = status(&server, "/_updraft/api/v1/invocations?function=listener").await;
        seen = r
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["outcome"] == "ok"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the completion event reached the topic's subscriber");
}

#[tokio::test]
async fn failures_and_bad_callbacks() {
    let app = app(9);
    let server = start(&app);
    let r = client()
        .post(server.url("/k/trap"))
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let end = Instant::now() + Duration::from_secs(30);
    let mut outcome = Value::Null;
    while Instant::now() < end {
        outcome = status(&server, &location).await;
        if outcome["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcome["status"], "failed", "{outcome}");
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .contains("function `kitchen` failed"),
        "{outcome}"
    );
    let r = client()
        .post(server.url("/k/echo"))
        .header("prefer", "respond-async")
        .header("callback-url", "http://127.0.0.1:1/elsewhere")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("[async] callback_hosts"));
    let r = client()
        .get(server.url("/_updraft/api/v1/async/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// How many runs of kitchen's `/sleep` have started (each logs a line as it begins).
async fn sleeping_lines(server: &Server) -> usize {
    let logs = status(server, "/_updraft/api/v1/logs?function=kitchen&limit=1000").await;
    logs.as_array().map_or(0, |lines| {
        lines
            .iter()
            .filter(|l| {
                l["line"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("sleeping"))
            })
            .count()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_never_finishes_a_run_fails_after_three_deliveries() {
    let app = AppDir::new(
        r#"
[app]
name = "async-crash"

[function.kitchen]
source = "kitchen.wasm"
async = true
timeout = "8s"

[[trigger.http]]
route = "/k/..."
function = "kitchen"
"#,
    );
    app.guest(guests::KITCHEN, "kitchen.wasm");
    let mut server = start(&app);
    let r = client()
        .post(server.url("/k/sleep?ms=6000"))
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    // Kill the process under each of three runs, each seen starting by its log line.
    for run in 1..=3 {
        assert!(
            crate::eventually(Duration::from_secs(40), async || {
                sleeping_lines(&server).await >= run
            })
            .await,
            "run {run} never started"
        );
        server.signal(libc::SIGKILL);
        drop(server);
        server = start(&app);
    }
    // The fourth delivery gives up at once.
    let mut outcome = Value::Null;
    assert!(
        crate::eventually(Duration::from_secs(30), async || {
            outcome = status(&server, &location).await;
            outcome["status"] == "failed"
        })
        .await,
        "{outcome}"
    );
    let error = outcome["error"].as_str().unwrap();
    assert!(error.contains("gave up after 3 deliveries"), "{error}");
}

/// `Prefer: respond-async` is opt-in per function and bounded: a function without `async`
/// answers at once; past `max_queued` the answer is 503 with `Retry-After`; credentials are
/// not stored unless the function keeps them.
#[tokio::test]
async fn respond_async_is_opt_in_bounded_and_keeps_no_credentials() {
    let app = AppDir::new(
        r#"
[app]
name = "async-caps"

[function.kitchen]
source = "kitchen.wasm"
async = { max_queued = 1 }

[function.keeper]
source = "kitchen.wasm"
async = { keep_headers = ["Authorization"] }

[function.plain]
source = "kitchen.wasm"

[[trigger.http]]
route = "/k/..."
function = "kitchen"

[[trigger.http]]
route = "/keep/..."
function = "keeper"

[[trigger.http]]
route = "/plain/..."
function = "plain"
"#,
    );
    app.guest(guests::KITCHEN, "kitchen.wasm");
    let server = start(&app);
    let async_post = |path: &str| {
        client()
            .post(server.url(path))
            .header("prefer", "respond-async")
            .header("authorization", "Bearer secret-token")
            .header("cookie", "session=abc")
            .header("x-kept", "yes")
    };
    // Not opted in: the preference is ignored and the function answers now.
    let r = async_post("/plain/sleep?ms=1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("preference-applied").is_none());
    assert_eq!(r.text().await.unwrap(), "slept\n");
    // One waiting invocation at most: the second is refused while the first runs.
    let first = async_post("/k/sleep?ms=4000").send().await.unwrap();
    assert_eq!(first.status(), 202);
    let r = async_post("/k/sleep?ms=1").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert!(r.text().await.unwrap().contains("async.max_queued"));
    // Stored requests drop credentials unless the function keeps them.
    let outcome = |location: String| {
        let server = &server;
        async move {
            let mut outcome = Value::Null;
            eventually(Duration::from_secs(60), async || {
                outcome = status(server, &location).await;
                outcome["status"] == "succeeded"
            })
            .await;
            outcome
        }
    };
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(outcome(location).await["status"], "succeeded");
    let r = async_post("/k/headers").send().await.unwrap();
    assert_eq!(r.status(), 202);
    let seen = outcome(r.headers()["location"].to_str().unwrap().to_owned()).await;
    let body = seen["response"]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(body.contains("x-kept"), "{seen}");
    assert!(
        !body.contains("secret-token") && !body.contains("session=abc"),
        "credentials were stored: {body}"
    );
    let r = async_post("/keep/headers").send().await.unwrap();
    assert_eq!(r.status(), 202);
    let seen = outcome(r.headers()["location"].to_str().unwrap().to_owned()).await;
    let body = seen["response"]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(body.contains("secret-token"), "kept: {body}");
    assert!(!body.contains("session=abc"), "cookie not kept: {body}");
}
