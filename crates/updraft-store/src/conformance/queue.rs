//! What every [`QueueStore`] must do.
//!
//! The suite runs on the real clock: a backend whose server keeps the time (JetStream
//! redelivers an expired lease by itself) cannot follow a made-up one. Leases and delays
//! are short, waits poll with a bound, and the timed cases run concurrently, so the suite
//! takes a couple of seconds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue::{Event, Leased, NewMessage, QueueStore};

const MS: i64 = 1_000;
const SEC: i64 = 1_000_000;
/// A lease long enough never to expire during a case.
const LONG: i64 = 60 * SEC;

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn message(n: usize, available_us: i64, key: Option<&str>) -> NewMessage {
    NewMessage {
        event: Event {
            id: format!("e{n}"),
            source: "/test".into(),
            ty: "test.event".into(),
            subject: Some(format!("s{n}")),
            time: None,
            datacontenttype: Some("text/plain".into()),
            data: format!("payload {n}").into_bytes(),
            extensions: vec![("n".into(), n.to_string())],
        },
        available_us,
        idempotency_key: key.map(str::to_owned),
    }
}

async fn sleep_us(us: i64) {
    tokio::time::sleep(Duration::from_micros(u64::try_from(us).unwrap_or(0))).await;
}

/// Leases until something comes, up to `within_us`; panics if nothing does.
async fn lease_within(q: &dyn QueueStore, queue: &str, lease_us: i64, within_us: i64) -> Leased {
    let deadline = Instant::now() + Duration::from_micros(within_us as u64);
    loop {
        let mut got = q.lease(queue, 1, lease_us, now_us()).await.expect("lease");
        if let Some(m) = got.pop() {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "nothing was delivered from `{queue}` within {within_us} µs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the suite against `store` (each case uses its own queue name).
pub async fn run(store: Arc<dyn QueueStore>) {
    let q = &*store;
    tokio::join!(
        lease_hides_and_ack_removes(q),
        expired_leases_come_back(q),
        delays_retries_releases_dead_letters_and_redrive(q),
        idempotency_keys_dedupe_within_the_window(q),
        dead_letters_are_deleted_by_id_or_all(q),
    );
    competing_workers_each_get_every_message_once(store).await;
}

async fn lease_hides_and_ack_removes(q: &dyn QueueStore) {
    let now = now_us();
    let n = q
        .enqueue(
            "a",
            (0..3).map(|i| message(i, now, None)).collect(),
            SEC,
            now,
        )
        .await
        .expect("enqueue");
    assert_eq!(n, 3);
    let first = q.lease("a", 2, LONG, now_us()).await.expect("lease");
    assert_eq!(first.len(), 2);
    assert_eq!(
        first[0].event,
        message(0, now, None).event,
        "events round-trip"
    );
    assert_eq!(first[0].attempts, 1);
    assert!(first[0].enqueued_us >= now && first[0].enqueued_us <= now_us());
    let depth = q.depth("a", now_us()).await.expect("depth");
    assert_eq!((depth.ready, depth.in_flight), (1, 2), "{depth:?}");
    let oldest = depth.oldest_us.expect("the oldest message's time");
    // The server may stamp it (JetStream): within a second of the enqueue.
    assert!(
        (now - SEC..=now_us()).contains(&oldest),
        "oldest {oldest}, enqueued at {now}"
    );
    let second = q.lease("a", 10, LONG, now_us()).await.expect("lease");
    assert_eq!(second.len(), 1, "leased messages are hidden");
    assert_eq!(second[0].event.id, "e2");
    assert!(
        !q.ack("a", &first[1].id, &first[0].token)
            .await
            .expect("another message's token"),
        "a token proves one message"
    );
    for m in first.iter().chain(&second) {
        assert!(q.ack("a", &m.id, &m.token).await.expect("ack"));
    }
    assert!(
        !q.ack("a", &first[0].id, &first[0].token)
            .await
            .expect("ack twice"),
        "an acked message cannot be acked again"
    );
    assert!(
        !q.extend("a", &first[0].id, &first[0].token, now_us() + LONG)
            .await
            .expect("extend after ack")
    );
    assert!(
        q.lease("a", 10, LONG, now_us())
            .await
            .expect("lease")
            .is_empty()
    );
    assert_eq!(
        q.depth("a", now_us()).await.expect("depth"),
        Default::default()
    );
}

async fn expired_leases_come_back(q: &dyn QueueStore) {
    // Long enough that a stalled disk on a loaded machine does not eat the margins.
    let lease = 3 * SEC;
    q.enqueue("b", vec![message(1, now_us(), None)], SEC, now_us())
        .await
        .expect("enqueue");
    let start = Instant::now();
    let first = q.lease("b", 1, lease, now_us()).await.expect("lease");
    assert_eq!(first.len(), 1);
    assert!(
        q.lease("b", 1, lease, now_us())
            .await
            .expect("lease")
            .is_empty(),
        "leased"
    );
    // Halfway through, extend by another lease: it now ends at 1.5 leases.
    sleep_us(lease / 2).await;
    assert!(
        q.extend("b", &first[0].id, &first[0].token, now_us() + lease)
            .await
            .expect("extend")
    );
    let since = i64::try_from(start.elapsed().as_micros()).unwrap_or(0);
    sleep_us(lease * 6 / 5 - since).await;
    assert!(
        q.lease("b", 1, lease, now_us())
            .await
            .expect("lease")
            .is_empty(),
        "extended past the first lease's end"
    );
    let again = lease_within(q, "b", lease, 5 * lease).await;
    assert_eq!(again.event.id, "e1");
    assert_eq!(again.attempts, 2, "an expired lease is delivered again");
    assert!(
        start.elapsed() >= Duration::from_micros((lease * 3 / 2 - 50 * MS) as u64),
        "not before the extended lease ended"
    );
    assert!(
        !q.ack("b", &first[0].id, &first[0].token)
            .await
            .expect("stale ack"),
        "the old token lost the lease"
    );
    assert!(
        !q.extend("b", &first[0].id, &first[0].token, now_us() + lease)
            .await
            .expect("stale extend")
    );
    assert!(q.ack("b", &again.id, &again.token).await.expect("ack"));
}

async fn delays_retries_releases_dead_letters_and_redrive(q: &dyn QueueStore) {
    let delay = 1_500 * MS;
    let enqueued = now_us();
    q.enqueue("c", vec![message(1, enqueued + delay, None)], SEC, enqueued)
        .await
        .expect("enqueue");
    assert!(
        q.lease("c", 1, LONG, now_us())
            .await
            .expect("lease")
            .is_empty(),
        "delayed"
    );
    let depth = q.depth("c", now_us()).await.expect("depth");
    assert_eq!((depth.ready, depth.waiting), (0, 1));
    let m = lease_within(q, "c", LONG, 15 * SEC).await;
    assert!(now_us() >= enqueued + delay, "not before it is due");
    assert_eq!(m.attempts, 1, "waiting for a delay is no attempt");
    // A release gives it back without spending the attempt.
    assert!(
        q.release("c", &m.id, &m.token, now_us())
            .await
            .expect("release")
    );
    assert!(
        !q.ack("c", &m.id, &m.token).await.expect("ack released"),
        "a released lease is gone"
    );
    let m = lease_within(q, "c", LONG, 15 * SEC).await;
    assert_eq!(m.attempts, 1, "a release is no attempt");
    // A retry comes back after its delay, as the next attempt.
    let retry_at = now_us() + delay;
    assert!(
        q.retry("c", &m.id, &m.token, retry_at, "boom")
            .await
            .expect("retry")
    );
    assert!(
        !q.ack("c", &m.id, &m.token).await.expect("ack retried"),
        "a retried lease is gone"
    );
    assert!(
        q.lease("c", 1, LONG, now_us())
            .await
            .expect("lease")
            .is_empty(),
        "backing off"
    );
    let m = lease_within(q, "c", LONG, 15 * SEC).await;
    assert!(now_us() >= retry_at, "not before the retry is due");
    assert_eq!(m.attempts, 2);
    assert!(
        q.dead_letter("c", &m.id, &m.token, "boom again", now_us())
            .await
            .expect("dead")
    );
    assert!(
        !q.ack("c", &m.id, &m.token).await.expect("ack dead"),
        "a dead letter is not leased"
    );
    assert!(
        q.lease("c", 1, LONG, now_us())
            .await
            .expect("lease")
            .is_empty()
    );
    let dead = q.dead_letters("c", 10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].attempts, dead[0].last_error.as_deref()),
        (2, Some("boom again"))
    );
    assert_eq!(dead[0].event, message(1, 0, None).event);
    let dead_id = dead[0].id.clone();
    assert_eq!(q.depth("c", now_us()).await.expect("depth").dead, 1);
    assert_eq!(
        q.redrive("c", Some(vec!["no-such-id".into()]), now_us())
            .await
            .expect("redrive none"),
        0
    );
    assert_eq!(q.redrive("c", None, now_us()).await.expect("redrive"), 1);
    assert!(
        q.dead_letters("c", 10)
            .await
            .expect("dead letters")
            .is_empty()
    );
    let m = lease_within(q, "c", LONG, 15 * SEC).await;
    assert_eq!(
        (m.attempts, m.event.id.as_str(), m.id.as_str()),
        (1, "e1", dead_id.as_str()),
        "redriven with fresh attempts, the same id"
    );
    assert!(q.ack("c", &m.id, &m.token).await.expect("ack"));
    assert_eq!(
        q.depth("c", now_us()).await.expect("depth"),
        Default::default()
    );
}

async fn idempotency_keys_dedupe_within_the_window(q: &dyn QueueStore) {
    let window = 3 * SEC;
    let start = now_us();
    assert_eq!(
        q.enqueue("d", vec![message(1, start, Some("k"))], window, start)
            .await
            .expect("enqueue"),
        1
    );
    let first_acked = now_us();
    assert_eq!(
        q.enqueue("d", vec![message(2, start, Some("k"))], window, now_us())
            .await
            .expect("dup"),
        0
    );
    assert_eq!(
        q.enqueue("e", vec![message(3, start, Some("k"))], window, now_us())
            .await
            .expect("other queue"),
        1
    );
    assert_eq!(
        q.enqueue(
            "d",
            vec![message(5, start, Some("k2")), message(6, start, Some("k2"))],
            window,
            now_us()
        )
        .await
        .expect("dup in one batch"),
        1
    );
    // The window runs from when the store took the first message, which is no later than
    // `first_acked`; a server may drop its dedup entries a little late (JetStream sweeps them
    // on a timer), so the repeat is tried until it is taken, within a bound.
    sleep_us(first_acked + window + 300 * MS - now_us()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let taken = q
            .enqueue("d", vec![message(4, now_us(), Some("k"))], window, now_us())
            .await
            .expect("after window");
        if taken == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "key `k` still deduplicated 10 s after its window"
        );
        sleep_us(100 * MS).await;
    }
    assert_eq!(q.depth("d", now_us()).await.expect("depth").ready, 3);
}

async fn competing_workers_each_get_every_message_once(q: Arc<dyn QueueStore>) {
    let total = 300;
    let now = now_us();
    q.enqueue(
        "f",
        (0..total).map(|i| message(i, now, None)).collect(),
        SEC,
        now,
    )
    .await
    .expect("enqueue");
    let mut workers = Vec::new();
    for _ in 0..4 {
        let q = q.clone();
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            // Bounded: 300 messages in batches of up to 7 take at most 300 rounds.
            for _ in 0..=total {
                let batch = q.lease("f", 7, LONG, now_us()).await.expect("lease");
                if batch.is_empty() {
                    break;
                }
                for m in batch {
                    assert!(q.ack("f", &m.id, &m.token).await.expect("ack"));
                    seen.push(m.event.id);
                }
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), total, "no message delivered twice");
    assert_eq!(unique.len(), total, "no message lost");
}

/// Dead letters can be deleted one by one or all at once; live messages never are.
async fn dead_letters_are_deleted_by_id_or_all(q: &dyn QueueStore) {
    let now = now_us();
    q.enqueue(
        "g",
        (0..3).map(|i| message(i, now, None)).collect(),
        SEC,
        now,
    )
    .await
    .expect("enqueue");
    let leased = q.lease("g", 2, LONG, now_us()).await.expect("lease");
    assert_eq!(leased.len(), 2);
    for m in &leased {
        assert!(
            q.dead_letter("g", &m.id, &m.token, "no good", now_us())
                .await
                .expect("dead letter")
        );
    }
    assert_eq!(
        q.delete_dead("g", Some(vec!["no-such-id".into()]))
            .await
            .expect("delete none"),
        0
    );
    assert_eq!(
        q.delete_dead("g", Some(vec![leased[0].id.clone()]))
            .await
            .expect("delete one"),
        1
    );
    let left = q.dead_letters("g", 10).await.expect("dead letters");
    assert_eq!(
        left.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [leased[1].id.as_str()]
    );
    assert_eq!(q.delete_dead("g", None).await.expect("delete all"), 1);
    let depth = q.depth("g", now_us()).await.expect("depth");
    assert_eq!(
        (depth.dead, depth.ready),
        (0, 1),
        "the live message stays: {depth:?}"
    );
}
