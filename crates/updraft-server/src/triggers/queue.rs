//! `[[trigger.queue]]`: lease messages, run the function, ack on success, retry with
//! exponential backoff and full jitter on failure, dead-letter after the last attempt. A
//! lease is extended while the function runs.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use updraft_runtime::{EventError, EventFunction, InvokeError, QueueHandle, now_us};
use updraft_store::{Leased, QueueStore};

/// Poll interval when no wake-up arrives (another process may have enqueued).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// How one queue trigger delivers.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Deliveries in all.
    pub max_attempts: u32,
    /// Visibility timeout, extended while running.
    pub lease: Duration,
    /// First retry delay.
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Messages per invocation.
    pub batch: u32,
    /// Invocations at once.
    pub concurrency: u32,
    /// What records and metrics call the trigger: `queue`, `topic` or `cron`.
    pub trigger: &'static str,
}

pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A random number in `0..=max` (jitter; not for secrets).
fn jitter(max: i64) -> i64 {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    if max <= 0 {
        0
    } else {
        (random % (max as u64 + 1)) as i64
    }
}

/// The retry delay before delivery `attempts + 1`: `backoff × 2^(attempts-1)`, capped,
/// with full jitter.
pub fn retry_delay_us(delivery: &Delivery, attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(30);
    let base = micros(delivery.backoff).saturating_mul(1i64 << exp);
    jitter(base.min(micros(delivery.max_backoff)))
}

/// Starts consuming `queue` with `function` until `stop` turns true.
pub fn spawn(
    queue: Arc<QueueHandle>,
    function: EventFunction,
    delivery: Delivery,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(delivery.concurrency as usize));
        loop {
            if *stop.borrow() {
                break;
            }
            let free = slots.available_permits() as u32;
            if free == 0 {
                // Wait for an invocation to finish.
                tokio::select! {
                    permit = slots.clone().acquire_owned() => drop(permit),
                    changed = stop.changed() => if changed.is_err() { break },
                }
                continue;
            }
            // Listen before looking, so an enqueue that commits with our lease still wakes us.
            let notified = queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let want = free.saturating_mul(delivery.batch).min(256);
            let leased = match queue
                .store
                .lease(&queue.name, want, micros(delivery.lease), now_us())
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(queue = %queue.name, "cannot lease messages: {e}");
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            };
            if leased.is_empty() {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    changed = stop.changed() => if changed.is_err() { break },
                }
                continue;
            }
            let mut leased = leased.into_iter().peekable();
            while leased.peek().is_some() {
                let batch: Vec<Leased> = leased.by_ref().take(delivery.batch as usize).collect();
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (queue, function, delivery) =
                    (queue.clone(), function.clone(), delivery.clone());
                tokio::spawn(async move {
                    deliver(&queue, &function, &delivery, batch).await;
                    drop(permit);
                });
            }
        }
        // Stop leasing; let running deliveries finish (the node's drain waits for them).
        let _ = slots.acquire_many(delivery.concurrency).await;
    })
}

/// Extends leases while work runs; stops when dropped (also on a panic).
pub struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl LeaseKeeper {
    /// Extends each `(id, token)` of `queue` every third of `lease`.
    pub fn start(
        store: Arc<dyn QueueStore>,
        queue: String,
        held: Vec<(String, String)>,
        lease: Duration,
    ) -> Self {
        let every = (lease / 3).max(Duration::from_millis(100));
        Self(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                for (id, token) in &held {
                    let _ = store
                        .extend(&queue, id, token, now_us() + micros(lease))
                        .await;
                }
            }
        }))
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one batch and settles each message.
async fn deliver(
    queue: &QueueHandle,
    function: &EventFunction,
    delivery: &Delivery,
    batch: Vec<Leased>,
) {
    let store = queue.store.clone();
    // Keep the leases while the function runs.
    let held: Vec<(String, String)> = batch
        .iter()
        .map(|m| (m.id.clone(), m.token.clone()))
        .collect();
    let keeper = LeaseKeeper::start(store.clone(), queue.name.clone(), held, delivery.lease);
    let events = batch
        .iter()
        .map(|m| {
            let mut e = m.event.clone();
            e.extensions
                .push(("attempt".to_owned(), m.attempts.to_string()));
            e
        })
        .collect();
    let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
    let result = function.invoke(events, delivery.trigger, id).await;
    drop(keeper);
    if let Err(EventError::Invoke(InvokeError::AtCapacity { .. })) = &result {
        // The function never ran: give the messages back without spending an attempt.
        let at = now_us() + micros(Duration::from_millis(200));
        for m in &batch {
            let _ = store.release(&queue.name, &m.id, &m.token, at).await;
        }
        return;
    }
    let failed: Vec<bool> = match &result {
        Ok(()) => vec![false; batch.len()],
        Err(EventError::Handler {
            failed: Some(which),
            ..
        }) => (0..batch.len())
            .map(|i| which.contains(&u32::try_from(i).unwrap_or(u32::MAX)))
            .collect(),
        Err(_) => vec![true; batch.len()],
    };
    let error = result
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    for (m, failed) in batch.iter().zip(failed) {
        let settled = if !failed {
            store.ack(&queue.name, &m.id, &m.token).await
        } else if m.attempts >= delivery.max_attempts {
            tracing::warn!(queue = %queue.name, message = %m.id, attempts = m.attempts, "dead-lettered: {error}");
            store
                .dead_letter(&queue.name, &m.id, &m.token, &error, now_us())
                .await
        } else {
            let at = now_us() + retry_delay_us(delivery, m.attempts);
            store.retry(&queue.name, &m.id, &m.token, at, &error).await
        };
        match settled {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(queue = %queue.name, message = %m.id, "lease lost before settling; the message will be delivered again")
            }
            Err(e) => tracing::error!(queue = %queue.name, message = %m.id, "cannot settle: {e}"),
        }
    }
    if result.is_err() {
        // A retry may be due before the idle poll.
        queue.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let d = Delivery {
            max_attempts: 5,
            lease: Duration::from_secs(30),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            batch: 1,
            concurrency: 1,
            trigger: "queue",
        };
        for _ in 0..100 {
            assert!((0..=1_000_000).contains(&retry_delay_us(&d, 1)));
            assert!((0..=4_000_000).contains(&retry_delay_us(&d, 3)));
            assert!((0..=5_000_000).contains(&retry_delay_us(&d, 10)));
        }
        let spread: std::collections::HashSet<i64> =
            (0..50).map(|_| retry_delay_us(&d, 10)).collect();
        assert!(spread.len() > 10, "jitter spreads retries");
    }
}
