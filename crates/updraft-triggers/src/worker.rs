//! The one queue worker loop, shared by every trigger that consumes a queue (queue, topic,
//! cron and async invocations): lease up to the free slots, keep the leases while the work
//! runs, settle each message (ack, retry with exponential backoff and full jitter,
//! dead-letter after the last attempt, or give it back unspent), wake up on local enqueues
//! and poll for remote ones (or, where the store can, wait on its server for work from any
//! node), and on drain stop leasing and let running work finish.
//!
//! What runs a batch is a [`Consumer`]; [`EventConsumer`] runs an event function.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use updraft_runtime::{EventError, EventFunction, InvokeError, QueueHandle, now_us};
use updraft_store::{Leased, QueueStore};

/// Poll interval when no wake-up arrives (another process may have enqueued).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// When a message given back unspent (no free instance) is due again.
const RELEASE_DELAY: Duration = Duration::from_millis(200);
/// Most messages leased at once.
const MAX_LEASE: u32 = 256;

/// How one trigger's queue is delivered.
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
    /// What records and metrics call the trigger: `queue`, `topic`, `cron`, `async`.
    pub trigger: &'static str,
}

impl Delivery {
    /// The settings a `[queue.<name>]` or `[topic.<name>]` declares, with a trigger's own
    /// batch and concurrency.
    pub fn declared(
        decl: &updraft_manifest::QueueDecl,
        batch: u32,
        concurrency: u32,
        trigger: &'static str,
    ) -> Self {
        Self {
            max_attempts: decl.attempts(),
            lease: decl.lease_duration(),
            backoff: decl.backoff_duration(),
            max_backoff: decl.max_backoff_duration(),
            batch,
            concurrency,
            trigger,
        }
    }
}

/// How to settle one leased message once its batch ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Done: remove it.
    Ack,
    /// Failed: retry with backoff, or dead-letter after the last attempt.
    Fail(String),
    /// Never ran (no free instance): due again shortly, without spending an attempt.
    Release,
    /// Leave it be: its lease runs out and it is delivered again (or someone else has it).
    Keep,
}

/// What runs a leased batch.
#[async_trait::async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// Runs `batch` (its leases are kept meanwhile) and says how to settle each message,
    /// in order. A missing entry is [`Settle::Keep`].
    async fn consume(&self, batch: &[Leased]) -> Vec<Settle>;
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

/// Consumes `queue` with `consumer` until `stop` turns true, then waits for running
/// batches to finish.
pub fn spawn(
    queue: Arc<QueueHandle>,
    consumer: Arc<dyn Consumer>,
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
                // Wait for a batch to finish.
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
            let want = free.saturating_mul(delivery.batch).min(MAX_LEASE);
            let asked = tokio::time::Instant::now();
            let leased = match queue
                .store
                .lease_waiting(
                    &queue.name,
                    want,
                    micros(delivery.lease),
                    now_us(),
                    micros(IDLE_POLL),
                )
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(queue = %queue.name, "cannot lease messages: {e}");
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            };
            // A delivery past the last attempt means earlier ones never settled: the process
            // stopped during each run (a crash or a kill, perhaps caused by the message).
            // Dead-letter it now instead of running it again forever.
            let (leased, spent): (Vec<Leased>, Vec<Leased>) = leased
                .into_iter()
                .partition(|m| m.attempts <= delivery.max_attempts);
            let dead_lettered = !spent.is_empty();
            for m in spent {
                dead_letter_unfinished(&queue, &m).await;
            }
            if leased.is_empty() && dead_lettered {
                continue; // more may be ready behind them
            }
            // A store that waited for work has waited; one that answered at once without
            // any (or cannot wait) is polled.
            if leased.is_empty() && queue.store.waits() && asked.elapsed() >= IDLE_POLL / 2 {
                continue;
            }
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
                let (queue, consumer, delivery) =
                    (queue.clone(), consumer.clone(), delivery.clone());
                tokio::spawn(async move {
                    deliver(&queue, &*consumer, &delivery, batch).await;
                    drop(permit);
                });
            }
        }
        // Stop leasing; let running batches finish (the node's drain waits for them).
        let _ = slots.acquire_many(delivery.concurrency).await;
    })
}

/// Dead-letters a message whose earlier deliveries all ended without settling.
async fn dead_letter_unfinished(queue: &QueueHandle, m: &Leased) {
    let error = format!(
        "delivered {} times without finishing: updraft stopped during each run (a crash or a kill), so the message may be what brings it down",
        m.attempts - 1
    );
    tracing::error!(queue = %queue.name, message = %m.id, attempts = m.attempts, "dead-lettered: {error}");
    if let Err(e) = queue
        .store
        .dead_letter(&queue.name, &m.id, &m.token, &error, now_us())
        .await
    {
        tracing::error!(queue = %queue.name, message = %m.id, "cannot dead-letter: {e}");
    }
}

/// Extends leases while work runs; stops when dropped (also on a panic).
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl LeaseKeeper {
    /// Extends each `(id, token)` of `queue` every third of `lease`.
    fn start(
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

/// Runs one batch with its leases kept, then settles each message.
async fn deliver(
    queue: &QueueHandle,
    consumer: &dyn Consumer,
    delivery: &Delivery,
    batch: Vec<Leased>,
) {
    let held = batch
        .iter()
        .map(|m| (m.id.clone(), m.token.clone()))
        .collect();
    let keeper = LeaseKeeper::start(
        queue.store.clone(),
        queue.name.clone(),
        held,
        delivery.lease,
    );
    let outcomes = consumer.consume(&batch).await;
    drop(keeper);
    // Settled together: each is a round trip to the store (or a write its group commit
    // takes with the others), so a batch costs about one.
    let settles = batch.iter().enumerate().map(|(i, m)| {
        let outcome = outcomes.get(i).unwrap_or(&Settle::Keep);
        settle(queue, delivery, m, outcome)
    });
    let failed = futures::future::join_all(settles)
        .await
        .into_iter()
        .any(|failed| failed);
    if failed {
        // A retry may be due before the idle poll.
        queue.notify.notify_waiters();
    }
}

/// Settles one message as its run said; true if it failed.
async fn settle(queue: &QueueHandle, delivery: &Delivery, m: &Leased, outcome: &Settle) -> bool {
    let store = &queue.store;
    let settled = match outcome {
        Settle::Ack => store.ack(&queue.name, &m.id, &m.token).await,
        Settle::Fail(error) if m.attempts >= delivery.max_attempts => {
            tracing::warn!(queue = %queue.name, message = %m.id, attempts = m.attempts, "dead-lettered: {error}");
            store
                .dead_letter(&queue.name, &m.id, &m.token, error, now_us())
                .await
        }
        Settle::Fail(error) => {
            let at = now_us() + retry_delay_us(delivery, m.attempts);
            store.retry(&queue.name, &m.id, &m.token, at, error).await
        }
        Settle::Release => {
            let at = now_us() + micros(RELEASE_DELAY);
            store.release(&queue.name, &m.id, &m.token, at).await
        }
        Settle::Keep => return false,
    };
    match settled {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(queue = %queue.name, message = %m.id, "lease lost before settling; the message will be delivered again")
        }
        Err(e) => tracing::error!(queue = %queue.name, message = %m.id, "cannot settle: {e}"),
    }
    matches!(outcome, Settle::Fail(_))
}

/// Runs an event function on each batch: the messages' events, each with an `attempt`
/// extension. A handler error naming failed indexes fails only those.
pub struct EventConsumer {
    /// The function.
    pub function: EventFunction,
    /// What records and metrics call the trigger.
    pub trigger: &'static str,
}

#[async_trait::async_trait]
impl Consumer for EventConsumer {
    async fn consume(&self, batch: &[Leased]) -> Vec<Settle> {
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
        let result = self.function.invoke(events, self.trigger, id).await;
        match result {
            Ok(()) => vec![Settle::Ack; batch.len()],
            // The function never ran: give the messages back without spending an attempt.
            Err(EventError::Invoke(InvokeError::AtCapacity { .. })) => {
                vec![Settle::Release; batch.len()]
            }
            Err(e) => {
                let error = e.to_string();
                let failed = match &e {
                    EventError::Handler {
                        failed: Some(which),
                        ..
                    } => Some(which),
                    _ => None,
                };
                (0..batch.len())
                    .map(|i| {
                        let index = u32::try_from(i).unwrap_or(u32::MAX);
                        if failed.is_none_or(|which| which.contains(&index)) {
                            Settle::Fail(error.clone())
                        } else {
                            Settle::Ack
                        }
                    })
                    .collect()
            }
        }
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
