//! The cluster backends against real, private servers: NATS JetStream (one `nats-server`
//! per test, each on its own port and store folder; see `updraft_test_support::NatsServer`),
//! S3 (`blob`) and PostgreSQL (`postgres`).

mod blob;
mod postgres;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use updraft_store::conformance;
use updraft_store::nats::NatsState;
use updraft_store::{Event, KvStore, NewMessage, QueueStore, StreamStore, Subscription};
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
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

/// A raw JetStream context on the private server, to reach behind the store.
async fn jetstream(server: &NatsServer) -> async_nats::jetstream::Context {
    let client = async_nats::connect(server.url())
        .await
        .expect("connect a raw client");
    async_nats::jetstream::new(client)
}

async fn stream_messages(js: &async_nats::jetstream::Context, name: &str) -> u64 {
    let mut stream = js.get_stream(name).await.expect("the stream");
    stream.info().await.expect("stream info").state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_prune_keeps_each_triggers_latest_claim() {
    let server = NatsServer::start();
    let s = state(&server, "cron")
        .await
        .schedule_store()
        .await
        .expect("schedules");
    for t in [1, 2, 3] {
        assert!(s.claim("a", t, "me").await.expect("claim"));
    }
    assert!(s.claim("b", 1, "me").await.expect("claim"));
    for t in [5, 20] {
        assert!(s.claim("jobs.nightly", t, "me").await.expect("claim"));
    }
    let js = jetstream(&server).await;
    let bucket = "KV_updraft-cron-schedules";
    // Six claims and three latest-claim keys.
    assert_eq!(stream_messages(&js, bucket).await, 9);
    assert_eq!(
        s.prune(10).await.expect("prune"),
        3,
        "a@1, a@2 and jobs.nightly@5 go; a@3, b@1 and jobs.nightly@20 stay"
    );
    assert_eq!(
        stream_messages(&js, bucket).await,
        6,
        "pruned claims leave no delete markers behind"
    );
    assert_eq!(s.last_claimed("a").await.expect("last"), Some(3));
    assert_eq!(s.last_claimed("b").await.expect("last"), Some(1));
    assert_eq!(
        s.last_claimed("jobs.nightly").await.expect("last"),
        Some(20)
    );
    assert!(!s.claim("a", 3, "other").await.expect("claim"));
    assert!(!s.claim("jobs.nightly", 20, "other").await.expect("claim"));
    assert_eq!(s.prune(10).await.expect("prune again"), 0);
    assert_eq!(
        s.prune(i64::MAX).await.expect("prune all"),
        0,
        "each trigger's latest stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_fails_part_way_gives_the_fetched_messages_back() {
    let server = NatsServer::start();
    let queues = state(&server, "lq").await.queue_store();
    let now = now_us();
    queues
        .enqueue(
            "jobs",
            vec![new_message("a", now), new_message("b", now)],
            SEC,
            now,
        )
        .await
        .expect("enqueue");
    // Both are leased and released: their next deliveries update lease records that exist.
    let first = lease_n(&*queues, "jobs", 2).await;
    for m in &first {
        assert!(
            queues
                .release("jobs", &m.id, &m.token, now_us())
                .await
                .expect("release")
        );
    }
    // Make the lease records refuse updates of existing keys (new keys still go in).
    let js = jetstream(&server).await;
    let mut leases = js.get_stream("KV_updraft-lq-leases").await.expect("leases");
    let config = leases.info().await.expect("info").config.clone();
    let mut refusing = config.clone();
    refusing.discard_new_per_subject = true;
    js.update_stream(refusing).await.expect("update leases");
    // A lease now fetches them and fails on the first record it writes: whatever it fetched
    // must go back at once, not when the 60 s lease runs out.
    let started = std::time::Instant::now();
    let failure = loop {
        match queues.lease("jobs", 10, 60 * SEC, now_us()).await {
            Err(e) => break e,
            Ok(leased) => assert!(leased.is_empty(), "{leased:?}"),
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "no lease failed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(failure.to_string().contains("`jobs`"), "{failure}");
    js.update_stream(config).await.expect("restore leases");
    // Well within the 60 s lease the failed one asked for.
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    while got.len() < 2 && started.elapsed() < std::time::Duration::from_secs(30) {
        got.extend(
            queues
                .lease("jobs", 10, 60 * SEC, now_us())
                .await
                .expect("lease"),
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    got.sort_by(|x, y| x.event.id.cmp(&y.event.id));
    let seen: Vec<(&str, u32)> = got
        .iter()
        .map(|m| (m.event.id.as_str(), m.attempts))
        .collect();
    assert_eq!(
        seen,
        [("a", 1), ("b", 1)],
        "both back at once; neither counts the lease that failed"
    );
}

/// `n` messages leased from `queue` (a fresh consumer may need a moment), within 30 s.
async fn lease_n(queues: &dyn QueueStore, queue: &str, n: usize) -> Vec<updraft_store::Leased> {
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    while got.len() < n && started.elapsed() < std::time::Duration::from_secs(30) {
        let max = u32::try_from(n - got.len()).expect("few");
        got.extend(
            queues
                .lease(queue, max, 60 * SEC, now_us())
                .await
                .expect("lease"),
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(got.len(), n, "leased from `{queue}`: {got:?}");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_at_the_end_of_time_stays_away() {
    let server = NatsServer::start();
    let queues = state(&server, "far").await.queue_store();
    let now = now_us();
    queues
        .enqueue("jobs", vec![new_message("1", now)], SEC, now)
        .await
        .expect("enqueue");
    let leased = lease_n(&*queues, "jobs", 1).await.remove(0);
    assert!(
        queues
            .retry("jobs", &leased.id, &leased.token, i64::MAX, "later")
            .await
            .expect("retry")
    );
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(1500) {
        let again = queues
            .lease("jobs", 1, 30 * SEC, now_us())
            .await
            .expect("lease");
        assert!(again.is_empty(), "redelivered at once: {again:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        queues.depth("jobs", now_us()).await.expect("depth").waiting,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_of_listed_ids_moves_those_only() {
    let server = NatsServer::start();
    let queues = state(&server, "rd").await.queue_store();
    let now = now_us();
    queues
        .enqueue(
            "jobs",
            (0..5).map(|i| new_message(&i.to_string(), now)).collect(),
            SEC,
            now,
        )
        .await
        .expect("enqueue");
    let leased = lease_n(&*queues, "jobs", 5).await;
    let mut by_event = HashMap::new();
    for m in &leased {
        assert!(
            queues
                .dead_letter("jobs", &m.id, &m.token, "boom", now_us())
                .await
                .expect("dead-letter")
        );
        by_event.insert(m.event.id.clone(), m.id.clone());
    }
    let pick = vec![by_event["1"].clone(), by_event["3"].clone()];
    assert_eq!(
        queues
            .redrive("jobs", Some(pick.clone()), now_us())
            .await
            .expect("redrive"),
        2
    );
    assert_eq!(
        queues
            .redrive("jobs", Some(pick), now_us())
            .await
            .expect("redrive again"),
        0,
        "already redriven"
    );
    let dead: Vec<String> = queues
        .dead_letters("jobs", 10)
        .await
        .expect("dead letters")
        .into_iter()
        .map(|d| d.event.id)
        .collect();
    assert_eq!(dead, ["0", "2", "4"]);
    let mut back: Vec<(String, u32)> = lease_n(&*queues, "jobs", 2)
        .await
        .into_iter()
        .map(|m| (m.event.id, m.attempts))
        .collect();
    back.sort();
    assert_eq!(back, [("1".to_owned(), 1), ("3".to_owned(), 1)]);
    assert_eq!(
        queues
            .redrive("jobs", None, now_us())
            .await
            .expect("redrive all"),
        3
    );
    assert_eq!(queues.depth("jobs", now_us()).await.expect("depth").dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_ends_where_the_log_ends_when_entries_vanish_under_it() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let state = state(&server, "vanish").await;
    let (topics, queues) = (state.topic_store(), state.queue_store());
    const ENTRIES: usize = 20_000;
    let published = futures::stream::iter(0..ENTRIES)
        .map(|i| {
            let topics = topics.clone();
            async move {
                topics
                    .publish(
                        "log",
                        new_message(&i.to_string(), 0).event,
                        &[],
                        600 * SEC,
                        now_us(),
                    )
                    .await
            }
        })
        .buffer_unordered(64)
        .filter(|r| std::future::ready(r.as_ref().is_ok_and(Option::is_some)))
        .count()
        .await;
    assert_eq!(published, ENTRIES);
    let sub = Subscription {
        queue: "copies".into(),
        type_filter: None,
        subject_prefix: None,
    };
    let replay = {
        let topics = topics.clone();
        tokio::spawn(async move {
            topics
                .replay(
                    "log",
                    &sub,
                    updraft_store::ReplayFrom::Position(1),
                    now_us(),
                )
                .await
        })
    };
    // Once the replay is under way, the rest of the log ages out (here: is purged) under it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while queues.depth("copies", now_us()).await.expect("depth").ready < 256
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let js = jetstream(&server).await;
    js.get_stream("updraft-vanish-t-log")
        .await
        .expect("topic stream")
        .purge()
        .await
        .expect("purge");
    // Timed from the purge: how long the first copies take depends on the machine's load;
    // what matters is that the replay then ends without waiting out a read timeout (10 s).
    let started = std::time::Instant::now();
    let n = replay
        .await
        .expect("join")
        .expect("the replay ends cleanly");
    let took = started.elapsed();
    assert!(n >= 256 && n < ENTRIES as u64, "{n} copies");
    assert!(took < std::time::Duration::from_secs(8), "took {took:?}");
    assert_eq!(
        queues.depth("copies", now_us()).await.expect("depth").ready,
        n
    );
    assert!(topics.read("log", 0, 10).await.expect("read").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_streams_pass_the_conformance_suite() {
    let server = NatsServer::start();
    let state = state(&server, "stream-app").await;
    let stream = state
        .stream(
            "readings",
            updraft_store::nats::NatsStreamConfig {
                partitions: 16,
                retention: Duration::from_secs(3600),
                max_bytes: 1 << 30,
            },
        )
        .unwrap();
    conformance::stream::run(Arc::new(stream), conformance::stream::Retention::Server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stream_partitions_keep_to_their_size_cap() {
    let server = NatsServer::start();
    let state = state(&server, "stream-cap").await;
    let stream = state
        .stream(
            "readings",
            updraft_store::nats::NatsStreamConfig {
                partitions: 2,
                retention: Duration::from_secs(3600),
                max_bytes: 20_000,
            },
        )
        .unwrap();
    let events: Vec<(u32, Event)> = (0..500)
        .map(|i| {
            let e = Event {
                id: format!("e-{i}"),
                source: "/t".into(),
                ty: "t".into(),
                data: vec![b'x'; 100],
                ..Default::default()
            };
            (1, e)
        })
        .collect();
    let offsets = stream.append(events, 0).await.unwrap();
    assert_eq!(offsets.last(), Some(&499));
    let parts = stream.partitions().await.unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].next, 500);
    assert!(
        parts[0].first > 0 && parts[0].bytes <= 20_000,
        "{:?}",
        parts[0]
    );
    let kept = stream.read(1, 0, 1_000).await.unwrap();
    assert_eq!(
        kept.first().map(|r| r.offset),
        Some(parts[0].first),
        "reads start at the oldest kept"
    );
    assert_eq!(kept.last().map(|r| r.offset), Some(499));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_lease_gets_another_nodes_enqueue_as_it_lands() {
    let server = NatsServer::start();
    let (a, b) = (
        state(&server, "wake").await.queue_store(),
        state(&server, "wake").await.queue_store(),
    );
    assert!(b.waits(), "JetStream waits on the server for work");
    // Open the queue on both nodes first (a fresh consumer may need a moment).
    a.enqueue("jobs", vec![new_message("warm", now_us())], SEC, now_us())
        .await
        .expect("enqueue");
    for m in lease_n(&*b, "jobs", 1).await {
        assert!(b.ack("jobs", &m.id, &m.token).await.expect("ack"));
    }
    // Node b waits (up to 20 s); node a enqueues. Whichever comes first at the server, b's
    // lease returns with the message long before its wait is up: no poll in between.
    let started = std::time::Instant::now();
    let waiting = tokio::spawn({
        let b = b.clone();
        async move {
            b.lease_waiting("jobs", 10, 60 * SEC, now_us(), 20 * SEC)
                .await
        }
    });
    a.enqueue("jobs", vec![new_message("m", now_us())], SEC, now_us())
        .await
        .expect("enqueue");
    let leased = waiting.await.expect("join").expect("lease");
    assert_eq!(leased.len(), 1, "{leased:?}");
    assert_eq!(leased[0].event.id, "m");
    assert_eq!(leased[0].attempts, 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "returned as the message landed, not when the wait ran out: {:?}",
        started.elapsed()
    );
    assert!(
        b.ack("jobs", &leased[0].id, &leased[0].token)
            .await
            .expect("ack")
    );
    // What is there already comes back at once, all of it (up to the most asked for).
    let now = now_us();
    let three = ["x", "y", "z"].map(|id| new_message(id, now)).to_vec();
    a.enqueue("jobs", three, SEC, now).await.expect("enqueue");
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    while got.len() < 3 && started.elapsed() < Duration::from_secs(10) {
        got.extend(
            b.lease_waiting("jobs", 10, 60 * SEC, now_us(), 20 * SEC)
                .await
                .expect("lease"),
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a backlog is not waited on: {:?}",
        started.elapsed()
    );
    let mut ids: Vec<&str> = got.iter().map(|m| m.event.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["x", "y", "z"]);
    for m in &got {
        assert!(b.ack("jobs", &m.id, &m.token).await.expect("ack"));
    }
    // With nothing coming, it returns empty when the wait is up.
    let started = std::time::Instant::now();
    let none = b
        .lease_waiting("jobs", 10, 60 * SEC, now_us(), SEC)
        .await
        .expect("lease");
    assert!(none.is_empty(), "{none:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_a_held_delivery_is_one_message_to_the_server() {
    let server = NatsServer::start();
    let node = state(&server, "fast").await;
    let queues = node.queue_store();
    let n = 50;
    let now = now_us();
    let messages = (0..n).map(|i| new_message(&i.to_string(), now)).collect();
    queues
        .enqueue("jobs", messages, SEC, now)
        .await
        .expect("enqueue");
    let leased = lease_n(&*queues, "jobs", n).await;
    // Extending, retrying and acking a delivery this node leased a moment ago needs no
    // check of the message or its lease record: one message each.
    let before = node.messages_sent();
    for m in &leased[..10] {
        assert!(
            queues
                .extend("jobs", &m.id, &m.token, now_us() + 60 * SEC)
                .await
                .expect("extend")
        );
    }
    for m in &leased {
        assert!(queues.ack("jobs", &m.id, &m.token).await.expect("ack"));
    }
    let sent = node.messages_sent() - before;
    assert!(
        sent <= (n + 10) as u64 + 5,
        "{sent} messages for 10 extends and {n} acks"
    );
    // Every token is spent: acking again is refused (now checked with the server).
    for m in &leased[..3] {
        assert!(!queues.ack("jobs", &m.id, &m.token).await.expect("ack"));
    }
    assert_eq!(
        queues.depth("jobs", now_us()).await.expect("depth"),
        Default::default()
    );
}
