//! Nothing acknowledged is lost to `kill -9`: messages flow into a queue and a topic
//! subscription while the process is killed at random moments and restarted, ten times, on
//! the embedded SQLite state and on NATS JetStream. Every acknowledged message must be
//! handled at least once; duplicates are counted.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use updraft_store::nats::NatsState;
use updraft_test_support::{AppDir, NatsServer, Server};

use crate::{bin, client};

const APP: &str = r#"
[app]
name = "chaos"

[kv.default]

[queue.jobs]
lease = "2s"
backoff = "100ms"

[topic.events]
lease = "2s"
backoff = "100ms"

[function.kitchen]
source = "kitchen.wasm"
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
max_concurrency = 8

[[trigger.topic]]
topic = "events"
function = "worker"
max_concurrency = 8
"#;

/// A small deterministic generator for kill times (no randomness crate needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Sends messages until told to stop; returns the ids that were acknowledged (202).
async fn produce(
    base: String,
    prefix: String,
    topic: bool,
    stop: Arc<AtomicUsize>,
    limit: usize,
) -> Vec<String> {
    let mut acked = Vec::new();
    let mut n = 0;
    while stop.load(Ordering::Relaxed) == 0 && acked.len() < limit {
        let ok = if topic {
            // Batches of 50 CloudEvents.
            let ids: Vec<String> = (n..n + 50).map(|i| format!("{prefix}-{i}")).collect();
            n += 50;
            let batch: Vec<_> = ids
                .iter()
                .map(|id| json!({"specversion": "1.0", "id": id, "source": "/chaos", "type": "chaos.event", "data": "x"}))
                .collect();
            let r = client()
                .post(format!("{base}/_updraft/api/v1/topics/events/events"))
                .header("content-type", "application/cloudevents-batch+json")
                .body(json!(batch).to_string())
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 202 => ids,
                _ => Vec::new(),
            }
        } else {
            let id = format!("{prefix}-{n}");
            n += 1;
            let r = client()
                .post(format!("{base}/k/enqueue?queue=jobs&id={id}"))
                .body("x")
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 202 => vec![id],
                _ => Vec::new(),
            }
        };
        if ok.is_empty() && stop.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acked.extend(ok);
    }
    acked
}

/// Where the app's state lives for a run.
enum State {
    Sqlite,
    Nats(NatsServer),
}

impl State {
    fn args(&self) -> Vec<String> {
        match self {
            State::Sqlite => Vec::new(),
            State::Nats(nats) => vec!["--store".into(), nats.url()],
        }
    }

    /// The ids the worker recorded as handled, and its handled count.
    async fn handled(&self, app: &AppDir) -> (HashSet<String>, u64) {
        match self {
            State::Sqlite => handled_in_sqlite(app),
            State::Nats(nats) => handled_in_nats(&nats.url()).await,
        }
    }
}

fn handled_in_sqlite(app: &AppDir) -> (HashSet<String>, u64) {
    let db = rusqlite::Connection::open(app.path().join(".updraft/state.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT key FROM kv WHERE namespace = 'default' AND key LIKE 'seen/%'")
        .unwrap();
    let seen: HashSet<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|k| k.unwrap().trim_start_matches("seen/").to_owned())
        .collect();
    let count: u64 = db
        .query_row(
            "SELECT value FROM kv WHERE namespace = 'default' AND key = 'count'",
            [],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .map(|v| String::from_utf8_lossy(&v).parse().unwrap_or(0))
        .unwrap_or(0);
    (seen, count)
}

async fn handled_in_nats(url: &str) -> (HashSet<String>, u64) {
    let kv = NatsState::connect(url, "chaos")
        .await
        .unwrap()
        .kv_store("default")
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let page = kv.list("seen/", cursor.as_deref(), 5_000).await.unwrap();
        seen.extend(
            page.keys
                .iter()
                .map(|k| k.trim_start_matches("seen/").to_owned()),
        );
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    let count = kv
        .get("count")
        .await
        .unwrap()
        .map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0));
    (seen, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged() {
    chaos(State::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged_on_nats() {
    chaos(State::Nats(NatsServer::start())).await;
}

async fn chaos(state: State) {
    let args = state.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = crate::kitchen_and_worker(APP);
    let mut rng = Lcg(0x5eed);
    let mut acknowledged: Vec<String> = Vec::new();
    let per_round = 1_000;
    for round in 0..10 {
        let server = Server::start(bin(), app.path(), &args);
        let stop = Arc::new(AtomicUsize::new(0));
        let queue = tokio::spawn(produce(
            server.base.clone(),
            format!("q{round}"),
            false,
            stop.clone(),
            per_round,
        ));
        let topic = tokio::spawn(produce(
            server.base.clone(),
            format!("t{round}"),
            true,
            stop.clone(),
            per_round,
        ));
        // Kill at a random moment while both producers and the workers are busy.
        tokio::time::sleep(Duration::from_millis(300 + rng.next(1200))).await;
        server.signal(libc::SIGKILL);
        stop.store(1, Ordering::Relaxed);
        acknowledged.extend(queue.await.unwrap());
        acknowledged.extend(topic.await.unwrap());
        drop(server);
    }
    // A last run delivers what is left, including leases the kills left behind, and tops
    // the acknowledged total up to the 10,000 the test promises (a slow machine acknowledges
    // fewer during the kill rounds), bounded in time.
    let server = Server::start(bin(), app.path(), &args);
    let short = 10_500usize.saturating_sub(acknowledged.len());
    let stop = Arc::new(AtomicUsize::new(0));
    let queue = tokio::spawn(produce(
        server.base.clone(),
        "qfinal".into(),
        false,
        stop.clone(),
        (short / 3).max(500),
    ));
    let topic = tokio::spawn(produce(
        server.base.clone(),
        "tfinal".into(),
        true,
        stop.clone(),
        (short - short / 3).max(1_000),
    ));
    // The queue producer sends one message per request: on a loaded 2-core machine a few
    // thousand of them take minutes.
    let deadline = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(420)).await;
            stop.store(1, Ordering::Relaxed);
        })
    };
    acknowledged.extend(queue.await.unwrap());
    acknowledged.extend(topic.await.unwrap());
    deadline.abort();
    let wanted: HashSet<String> = acknowledged.iter().cloned().collect();
    assert!(
        wanted.len() >= 10_000,
        "only {} messages were acknowledged",
        wanted.len()
    );
    let end = Instant::now() + Duration::from_secs(300);
    let mut missing = wanted.len();
    while Instant::now() < end {
        let (seen, _) = state.handled(&app).await;
        missing = wanted.difference(&seen).count();
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(server);
    let (seen, count) = state.handled(&app).await;
    let duplicates = count.saturating_sub(seen.len() as u64);
    println!(
        "kill -9 x10 ({}): acknowledged {}, handled {}, lost {missing}, duplicate deliveries {duplicates}",
        if args.is_empty() { "sqlite" } else { "nats" },
        wanted.len(),
        seen.len()
    );
    assert_eq!(missing, 0, "acknowledged messages were lost");
}
