//! The NATS JetStream backends against a real, private `nats-server` (one per test, each on
//! its own port and store folder; see `updraft_test_support::NatsServer`).

use std::sync::Arc;

use updraft_store::KvStore;
use updraft_store::conformance;
use updraft_store::nats::NatsState;
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
