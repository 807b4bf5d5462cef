//! Clustered state: two updraft nodes of one app on a private NATS JetStream server
//! (`--store nats://…`) share kv, queues, topics and cron claims. Work sent to either node
//! is handled once, by whichever node leases it; each cron occurrence runs on one node.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use updraft_test_support::{AppDir, NatsServer, Server, run};

use crate::{bin, client, eventually, get};

const APP: &str = r#"
[app]
name = "cluster"

[kv.default]

[queue.jobs]
backoff = "100ms"

[topic.events]

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

[[trigger.topic]]
topic = "events"
function = "worker"

[[trigger.cron]]
schedule = "* * * * * *"
function = "worker"
"#;

/// A node: its own folder (records, logs, compile cache), the shared NATS for state.
fn node(nats: &NatsServer) -> (AppDir, Server) {
    let app = crate::kitchen_and_worker(APP);
    let server = Server::start(bin(), app.path(), &["--store", &nats.url()]);
    (app, server)
}

/// Every `seen/<id>` key in the shared kv, and the handled count.
async fn handled(server: &Server) -> (Vec<String>, u64) {
    let (_, keys) = get(server, "/k/kv/list?store=default&prefix=seen/").await;
    let ids = keys
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| k.trim_start_matches("seen/").to_owned())
        .collect();
    let count = match get(server, "/k/kv/get?store=default&key=count").await {
        (200, n) => n.parse().unwrap(),
        _ => 0,
    };
    (ids, count)
}

async fn worker_runs(server: &Server) -> usize {
    let r = client()
        .get(server.url("/_updraft/api/v1/invocations?function=worker&limit=1000"))
        .send()
        .await
        .unwrap();
    r.json::<serde_json::Value>()
        .await
        .unwrap()
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_nats_share_kv_queues_topics_and_cron() {
    let nats = NatsServer::start();
    let (_a_dir, a) = node(&nats);
    let (_b_dir, mut b) = node(&nats);
    assert!(
        a.stdout
            .text()
            .contains("state: nats jetstream at nats://127.0.0.1:")
    );

    // kv written through one node is read through the other.
    let r = client()
        .post(a.url("/k/kv/set?store=default&key=greeting"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(&b, "/k/kv/get?store=default&key=greeting").await.1,
        "hi"
    );

    // Queue messages and topic events enter through both nodes.
    for i in 0..60 {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = client()
            .post(node.url(&format!("/k/enqueue?queue=jobs&id=q-{i}")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let batch: Vec<_> = (0..40)
        .map(|i| json!({"specversion": "1.0", "id": format!("t-{i}"), "source": "/test", "type": "t", "data": "x"}))
        .collect();
    let r = client()
        .post(b.url("/_updraft/api/v1/topics/events/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(json!(batch).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let wanted: HashSet<String> = (0..60)
        .map(|i| format!("q-{i}"))
        .chain((0..40).map(|i| format!("t-{i}")))
        .collect();
    assert!(
        eventually(Duration::from_secs(60), async || {
            let (ids, _) = handled(&a).await;
            wanted.iter().all(|w| ids.contains(w))
        })
        .await,
        "not everything was handled"
    );
    // Let a few cron occurrences pass, then count: every delivery and every occurrence ran
    // exactly once across the two nodes.
    assert!(
        eventually(Duration::from_secs(30), async || {
            let (ids, _) = handled(&a).await;
            ids.iter().filter(|id| !wanted.contains(*id)).count() >= 3
        })
        .await,
        "cron ran fewer than 3 times"
    );
    // Stop `b` cleanly: a kill could land between a run's `seen/` write and its count, or
    // between its count and its ack (a redelivery then counts it twice).
    b.signal(libc::SIGTERM);
    assert!(b.wait(Duration::from_secs(30)).is_some(), "b did not stop");
    drop(b);
    // `a` keeps running cron, and the keys and the count are two reads: wait for a pair
    // that agrees (something that ran twice never does).
    let (mut ids, mut count) = (Vec::new(), 0);
    let agreed = eventually(Duration::from_secs(30), async || {
        (ids, count) = handled(&a).await;
        count == ids.len() as u64
    })
    .await;
    let cron_runs = ids.iter().filter(|id| !wanted.contains(*id)).count();
    assert!(cron_runs >= 3, "cron ran {cron_runs} times: {ids:?}");
    assert!(
        agreed,
        "something ran twice: {count} runs for {} ids",
        ids.len()
    );
    assert!(worker_runs(&a).await > 0);
}

#[test]
fn unknown_or_unreachable_stores_are_refused_clearly() {
    let app = crate::kitchen_and_worker(APP);
    let dir = app.path().to_str().unwrap();
    let out = run(
        bin(),
        &["up", dir, "--store", "redis://127.0.0.1:1"],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unknown store `redis://127.0.0.1:1`; use `sqlite` or a NATS URL"),
        "{err}"
    );

    let out = run(
        bin(),
        &[
            "up",
            dir,
            "--listen",
            "127.0.0.1:0",
            "--store",
            "nats://127.0.0.1:1",
        ],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("is a JetStream-enabled `nats-server -js` listening at `nats://127.0.0.1:1`"),
        "{err}"
    );

    app.write("runtime.toml", "[state]\ntype = \"nats\"\n");
    let out = run(
        bin(),
        &["up", dir, "--listen", "127.0.0.1:0"],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`[state] type = \"nats\"` needs `url = \"nats://HOST:PORT\"`"),
        "{err}"
    );
}

/// While the NATS server is down, enqueueing over the admin API answers 503 with
/// `Retry-After` (the state backend is unavailable: try later), not a 500; once it is back,
/// the same call is accepted.
#[tokio::test]
async fn while_nats_is_down_enqueue_answers_503_with_retry_after() {
    let mut nats = NatsServer::start();
    let (_app, server) = node(&nats);
    let enqueue = async |id: &str| {
        client()
            .post(server.url("/_updraft/api/v1/queues/jobs/messages"))
            .header("content-type", "application/cloudevents+json")
            .body(
                json!({"specversion": "1.0", "id": id, "source": "/test", "type": "job", "data": "x"})
                    .to_string(),
            )
            .send()
            .await
            .unwrap()
    };
    assert_eq!(enqueue("before").await.status(), 202);

    nats.kill9();
    let r = enqueue("during").await;
    assert_eq!(r.status(), 503, "{:?}", r.text().await);
    assert_eq!(r.headers()["retry-after"], "1");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("state backend unavailable") && body.contains("queue `jobs`"),
        "{body}"
    );

    nats.restart();
    let mut last = 0;
    let back = eventually(Duration::from_secs(60), async || {
        last = enqueue("after").await.status().as_u16();
        last == 202
    })
    .await;
    assert!(back, "enqueue after NATS came back answered {last}");
}
