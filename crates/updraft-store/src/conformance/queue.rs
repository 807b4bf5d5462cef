//! What every [`QueueStore`] must do.

use std::collections::HashSet;
use std::sync::Arc;

use crate::queue::{Event, NewMessage, QueueStore};

const SEC: i64 = 1_000_000;
const T0: i64 = 1_700_000_000 * SEC;

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

/// Runs the suite against `store` (each case uses its own queue name).
pub async fn run(store: Arc<dyn QueueStore>) {
    lease_hides_and_ack_removes(&*store).await;
    expired_leases_come_back(&*store).await;
    delays_retries_dead_letters_and_redrive(&*store).await;
    idempotency_keys_dedupe_within_the_window(&*store).await;
    competing_workers_each_get_every_message_once(store).await;
}

async fn lease_hides_and_ack_removes(q: &dyn QueueStore) {
    let n = q
        .enqueue("a", (0..3).map(|i| message(i, T0, None)).collect(), SEC, T0)
        .await
        .expect("enqueue");
    assert_eq!(n, 3);
    let first = q.lease("a", 2, 30 * SEC, T0).await.expect("lease");
    assert_eq!(first.len(), 2);
    assert_eq!(
        first[0].event,
        message(0, T0, None).event,
        "events round-trip"
    );
    assert_eq!(first[0].attempts, 1);
    let second = q.lease("a", 10, 30 * SEC, T0).await.expect("lease");
    assert_eq!(second.len(), 1, "leased messages are hidden");
    assert_eq!(second[0].event.id, "e2");
    for m in first.iter().chain(&second) {
        assert!(q.ack("a", &m.id, &m.token).await.expect("ack"));
    }
    assert!(
        !q.ack("a", &first[0].id, &first[0].token)
            .await
            .expect("ack twice")
    );
    assert!(
        q.lease("a", 10, 30 * SEC, T0 + 100 * SEC)
            .await
            .expect("lease")
            .is_empty()
    );
    assert_eq!(q.depth("a", T0).await.expect("depth"), Default::default());
}

async fn expired_leases_come_back(q: &dyn QueueStore) {
    q.enqueue("b", vec![message(1, T0, None)], SEC, T0)
        .await
        .expect("enqueue");
    let first = q.lease("b", 1, 30 * SEC, T0).await.expect("lease");
    assert!(
        q.lease("b", 1, 30 * SEC, T0 + 29 * SEC)
            .await
            .expect("lease")
            .is_empty()
    );
    assert!(
        q.extend("b", &first[0].id, &first[0].token, T0 + 60 * SEC)
            .await
            .expect("extend")
    );
    assert!(
        q.lease("b", 1, 30 * SEC, T0 + 31 * SEC)
            .await
            .expect("lease")
            .is_empty(),
        "extended"
    );
    let again = q
        .lease("b", 1, 30 * SEC, T0 + 61 * SEC)
        .await
        .expect("lease");
    assert_eq!(again.len(), 1, "an expired lease is delivered again");
    assert_eq!(again[0].attempts, 2);
    assert!(
        !q.ack("b", &first[0].id, &first[0].token)
            .await
            .expect("stale ack"),
        "the old token lost the lease"
    );
    assert!(
        q.ack("b", &again[0].id, &again[0].token)
            .await
            .expect("ack")
    );
}

async fn delays_retries_dead_letters_and_redrive(q: &dyn QueueStore) {
    q.enqueue("c", vec![message(1, T0 + 10 * SEC, None)], SEC, T0)
        .await
        .expect("enqueue");
    assert!(
        q.lease("c", 1, 30 * SEC, T0)
            .await
            .expect("lease")
            .is_empty(),
        "delayed"
    );
    let depth = q.depth("c", T0).await.expect("depth");
    assert_eq!((depth.ready, depth.waiting), (0, 1));
    let m = q
        .lease("c", 1, 30 * SEC, T0 + 10 * SEC)
        .await
        .expect("lease")
        .remove(0);
    assert!(
        q.retry("c", &m.id, &m.token, T0 + 20 * SEC, "boom")
            .await
            .expect("retry")
    );
    assert!(
        q.lease("c", 1, 30 * SEC, T0 + 15 * SEC)
            .await
            .expect("lease")
            .is_empty(),
        "backing off"
    );
    let m = q
        .lease("c", 1, 30 * SEC, T0 + 20 * SEC)
        .await
        .expect("lease")
        .remove(0);
    assert_eq!(m.attempts, 2);
    assert!(
        q.dead_letter("c", &m.id, &m.token, "boom again", T0 + 21 * SEC)
            .await
            .expect("dead")
    );
    assert!(
        q.lease("c", 1, 30 * SEC, T0 + 99 * SEC)
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
    assert_eq!(q.depth("c", T0 + 99 * SEC).await.expect("depth").dead, 1);
    assert_eq!(
        q.redrive("c", None, T0 + 100 * SEC).await.expect("redrive"),
        1
    );
    let m = q
        .lease("c", 1, 30 * SEC, T0 + 100 * SEC)
        .await
        .expect("lease")
        .remove(0);
    assert_eq!(
        (m.attempts, m.event.id.as_str()),
        (1, "e1"),
        "redriven with fresh attempts"
    );
    assert!(q.ack("c", &m.id, &m.token).await.expect("ack"));
}

async fn idempotency_keys_dedupe_within_the_window(q: &dyn QueueStore) {
    let window = 600 * SEC;
    assert_eq!(
        q.enqueue("d", vec![message(1, T0, Some("k"))], window, T0)
            .await
            .expect("enqueue"),
        1
    );
    assert_eq!(
        q.enqueue("d", vec![message(2, T0, Some("k"))], window, T0 + SEC)
            .await
            .expect("dup"),
        0
    );
    assert_eq!(
        q.enqueue("e", vec![message(3, T0, Some("k"))], window, T0)
            .await
            .expect("other queue"),
        1
    );
    assert_eq!(
        q.enqueue(
            "d",
            vec![message(4, T0, Some("k"))],
            window,
            T0 + window + SEC
        )
        .await
        .expect("after window"),
        1
    );
    assert_eq!(
        q.depth("d", T0 + window + SEC).await.expect("depth").ready,
        2
    );
}

async fn competing_workers_each_get_every_message_once(q: Arc<dyn QueueStore>) {
    let total = 300;
    q.enqueue(
        "f",
        (0..total).map(|i| message(i, T0, None)).collect(),
        SEC,
        T0,
    )
    .await
    .expect("enqueue");
    let mut workers = Vec::new();
    for _ in 0..4 {
        let q = q.clone();
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let batch = q.lease("f", 7, 300 * SEC, T0).await.expect("lease");
                if batch.is_empty() {
                    return seen;
                }
                for m in batch {
                    assert!(q.ack("f", &m.id, &m.token).await.expect("ack"));
                    seen.push(m.event.id);
                }
            }
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
