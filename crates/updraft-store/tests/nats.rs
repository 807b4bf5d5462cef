//! The NATS JetStream backends against a real, private `nats-server` (one per test, each on
//! its own port and store folder; see `updraft_test_support::NatsServer`).

use std::sync::Arc;

use updraft_store::conformance;
use updraft_store::nats::NatsState;
use updraft_store::{Event, KvStore, NewMessage, Subscription};
use updraft_test_support::NatsServer;

async fn state(server: &NatsServer, namespace: &str) -> NatsState {
    NatsState::connect(&server.url(), namespace)
        .await
        .expect("connect to the private nats-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kv_passes_the_conformance_suite() {
    let server = NatsServer::start();
    let state = state(&server, "kv-app").await;
    // The suite wants a fresh store per case; buckets are opened ahead (opening is async).
    let mut stores: Vec<Arc<dyn KvStore>> = Vec::new();
    for i in 0..16 {
        stores.push(state.kv_store(&format!("case{i}")).await.expect("open kv"));
    }
    conformance::kv::run(move || stores.pop().expect("enough kv stores")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_kv_labels_and_apps_are_separate() {
    let server = NatsServer::start();
    let shop = state(&server, "shop").await;
    let blog = state(&server, "blog").await;
    let a = shop.kv("default").await.expect("kv");
    let b = shop.kv("sessions").await.expect("kv");
    let c = blog.kv("default").await.expect("kv");
    a.set("k", b"shop/default").await.expect("set");
    b.set("k", b"shop/sessions").await.expect("set");
    c.set("k", b"blog/default").await.expect("set");
    assert_eq!(
        a.get("k").await.expect("get").as_deref(),
        Some(&b"shop/default"[..])
    );
    assert_eq!(
        b.get("k").await.expect("get").as_deref(),
        Some(&b"shop/sessions"[..])
    );
    assert_eq!(
        c.get("k").await.expect("get").as_deref(),
        Some(&b"blog/default"[..])
    );
    // A namespace that only differs in characters NATS names refuse stays apart too.
    let odd = state(&server, "shop.v2 ünï").await;
    assert_eq!(
        odd.kv("default")
            .await
            .expect("kv")
            .get("k")
            .await
            .expect("get"),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_schedules_pass_the_conformance_suite() {
    let server = NatsServer::start();
    let state = state(&server, "cron-app").await;
    conformance::schedule::run(state.schedule_store().await.expect("schedules")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let err = NatsState::connect(&url, "app")
        .await
        .err()
        .expect("no server there");
    assert!(err.to_string().contains(&format!("`{url}`")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_queues_pass_the_conformance_suite() {
    let server = NatsServer::start();
    let state = state(&server, "queue-app").await;
    conformance::queue::run(state.queue_store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_queues_of_two_apps_are_separate() {
    let server = NatsServer::start();
    let shop = state(&server, "shop").await.queue_store();
    let blog = state(&server, "blog").await.queue_store();
    let now = now_us();
    shop.enqueue("jobs", vec![new_message("1", now)], SEC, now)
        .await
        .expect("enqueue");
    assert!(
        blog.lease("jobs", 10, SEC, now_us())
            .await
            .expect("lease")
            .is_empty()
    );
    assert_eq!(
        blog.depth("jobs", now_us()).await.expect("depth"),
        Default::default()
    );
    let leased = shop.lease("jobs", 10, SEC, now_us()).await.expect("lease");
    assert_eq!(leased.len(), 1);
    // A token from one app's queue proves nothing in another's.
    assert!(
        !blog
            .ack("jobs", &leased[0].id, &leased[0].token)
            .await
            .expect("ack")
    );
    assert!(
        !shop
            .ack("other", &leased[0].id, &leased[0].token)
            .await
            .expect("ack")
    );
    assert!(
        !shop
            .ack("jobs", &leased[0].id, "not a token")
            .await
            .expect("ack")
    );
    assert!(
        shop.ack("jobs", &leased[0].id, &leased[0].token)
            .await
            .expect("ack")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_enqueue_survives_kill_9_of_nats_server() {
    let mut server = NatsServer::start();
    let queues = state(&server, "durable").await.queue_store();
    let now = now_us();
    let stored = queues
        .enqueue(
            "jobs",
            (0..20).map(|i| new_message(&i.to_string(), now)).collect(),
            SEC,
            now,
        )
        .await
        .expect("enqueue");
    assert_eq!(stored, 20);
    // One is leased and settled before the crash, one is leased and left hanging.
    let first = queues
        .lease("jobs", 2, 2 * SEC, now_us())
        .await
        .expect("lease");
    assert_eq!(first.len(), 2);
    assert!(
        queues
            .ack("jobs", &first[0].id, &first[0].token)
            .await
            .expect("ack")
    );
    server.kill9();
    server.restart();
    // A fresh connection, as a restarted node would make.
    let queues = state(&server, "durable").await.queue_store();
    let mut ids = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while ids.len() < 19 && std::time::Instant::now() < deadline {
        for m in queues
            .lease("jobs", 50, 2 * SEC, now_us())
            .await
            .expect("lease after restart")
        {
            assert!(queues.ack("jobs", &m.id, &m.token).await.expect("ack"));
            ids.push(m.event.id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ids.sort_by_key(|id| id.parse::<u32>().unwrap_or(0));
    let expected: Vec<String> = (1..20).map(|i| i.to_string()).collect();
    assert_eq!(
        ids, expected,
        "every acknowledged message, the unsettled lease included, once"
    );
    assert_eq!(
        queues.depth("jobs", now_us()).await.expect("depth"),
        Default::default()
    );
}

const SEC: i64 = 1_000_000;

fn now_us() -> i64 {
    conformance::queue::now_us()
}

fn new_message(id: &str, now: i64) -> NewMessage {
    NewMessage {
        event: Event {
            id: id.into(),
            source: "/test".into(),
            ty: "test".into(),
            data: id.as_bytes().to_vec(),
            ..Event::default()
        },
        available_us: now,
        idempotency_key: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_topics_pass_the_conformance_suite() {
    let server = NatsServer::start();
    let state = state(&server, "topic-app").await;
    conformance::topic::run(state.topic_store(), state.queue_store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_publish_completes_the_fan_out_once() {
    let server = NatsServer::start();
    let state = state(&server, "fanout").await;
    let (topics, queues) = (state.topic_store(), state.queue_store());
    let subs = [
        Subscription {
            queue: "orders.a".into(),
            type_filter: None,
            subject_prefix: None,
        },
        Subscription {
            queue: "orders.b".into(),
            type_filter: None,
            subject_prefix: None,
        },
    ];
    let event = new_message("1", 0).event;
    // As if the first attempt appended and reached only the first subscription.
    let position = topics
        .publish("orders", event.clone(), &subs[..1], 600 * SEC, now_us())
        .await
        .expect("publish")
        .expect("new");
    // The retry is a duplicate for the log, and fills in the second subscription.
    let again = topics
        .publish("orders", event.clone(), &subs, 600 * SEC, now_us())
        .await
        .expect("publish again");
    assert_eq!(again, None, "a duplicate");
    for queue in ["orders.a", "orders.b"] {
        let leased = queues.lease(queue, 10, SEC, now_us()).await.expect("lease");
        assert_eq!(leased.len(), 1, "`{queue}` got the event once");
        assert_eq!(leased[0].event, event);
    }
    let log = topics.read("orders", 0, 10).await.expect("read");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].position, position);
}
