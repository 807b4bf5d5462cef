//! What every [`ScheduleStore`] must do.

use std::sync::Arc;

use crate::schedule::{Fired, ScheduleStore, ScheduledRun};

/// Runs the suite against `store`.
pub async fn run(store: Arc<dyn ScheduleStore>) {
    assert_eq!(store.last_claimed("t").await.expect("last"), None);
    assert!(store.claim("t", 100, "a").await.expect("claim"));
    assert!(
        !store.claim("t", 100, "b").await.expect("claim again"),
        "one claim per occurrence"
    );
    assert!(store.claim("u", 100, "b").await.expect("other trigger"));
    assert!(store.claim("t", 200, "b").await.expect("next occurrence"));
    assert_eq!(store.last_claimed("t").await.expect("last"), Some(200));
    // Racing claimants: exactly one wins each occurrence.
    let mut tasks = Vec::new();
    for who in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for occurrence in 1000..1050 {
                if store
                    .claim("race", occurrence, &who.to_string())
                    .await
                    .expect("claim")
                {
                    won += 1;
                }
            }
            won
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    assert_eq!(total, 50);

    // Claiming with the run: still one claim per occurrence, whether or not the backend
    // queues the run in the same commit.
    let run = ScheduledRun {
        queue: "conformance-cron".into(),
        message: crate::queue::NewMessage {
            event: crate::queue::Event {
                id: "t/300".into(),
                source: "/cron/t".into(),
                ty: "updraft.cron".into(),
                ..Default::default()
            },
            available_us: 0,
            idempotency_key: Some("t/300".into()),
        },
        dedup_window_us: 1_000_000,
        now_us: 0,
    };
    let first = store
        .claim_and_queue("t", 300, "a", &run)
        .await
        .expect("claim");
    assert!(matches!(first, Fired::Claimed | Fired::Queued), "{first:?}");
    let again = store
        .claim_and_queue("t", 300, "b", &run)
        .await
        .expect("again");
    assert_eq!(again, Fired::Lost);
    assert_eq!(store.last_claimed("t").await.expect("last"), Some(300));
}
