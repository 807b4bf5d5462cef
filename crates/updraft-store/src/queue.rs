//! Queues: durable messages leased to workers, retried with backoff, dead-lettered after
//! the last attempt. Times are passed in (microseconds since the Unix epoch) so every node
//! and every test agrees on them.

use async_trait::async_trait;

use crate::StoreError;

pub use updraft_cloudevents::Event;

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The event it carries.
    pub event: Event,
    /// Not delivered before this time.
    pub available_us: i64,
    /// Enqueueing the same key again within the dedup window stores nothing.
    pub idempotency_key: Option<String>,
}

/// A message leased to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// The message id.
    pub id: String,
    /// The event.
    pub event: Event,
    /// Deliveries so far, this one included.
    pub attempts: u32,
    /// Proves the lease; acks and retries with another token are ignored.
    pub token: String,
    /// When it was enqueued.
    pub enqueued_us: i64,
}

/// A message that used up its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message id.
    pub id: String,
    /// The event.
    pub event: Event,
    /// Deliveries made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was dead-lettered.
    pub dead_us: i64,
}

/// How many messages a queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Deliverable now.
    pub ready: u64,
    /// Leased or waiting for a retry or a delay.
    pub waiting: u64,
    /// Dead-lettered.
    pub dead: u64,
    /// Of `waiting`, those leased to a worker right now (on JetStream: every delivery not
    /// settled yet, which includes those backing off after a failure).
    pub in_flight: u64,
    /// When the oldest message not dead-lettered was enqueued, in microseconds since the
    /// epoch; `None` when there is none.
    pub oldest_us: Option<i64>,
}

/// Durable queues.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Stores messages; durable when it returns. Returns how many were stored (duplicates by
    /// idempotency key within `dedup_window_us` are skipped).
    async fn enqueue(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        dedup_window_us: i64,
        now_us: i64,
    ) -> Result<u32, StoreError>;
    /// Leases up to `max` deliverable messages, oldest first, hiding them until
    /// `now_us + lease_us`.
    async fn lease(
        &self,
        queue: &str,
        max: u32,
        lease_us: i64,
        now_us: i64,
    ) -> Result<Vec<Leased>, StoreError>;
    /// Leases like [`QueueStore::lease`], but when nothing is deliverable waits up to
    /// `wait_us` for a message to arrive (enqueued by any node) and returns as soon as one
    /// does. Backends that cannot wait on their server keep this default, which returns at
    /// once; [`QueueStore::waits`] tells which.
    async fn lease_waiting(
        &self,
        queue: &str,
        max: u32,
        lease_us: i64,
        now_us: i64,
        wait_us: i64,
    ) -> Result<Vec<Leased>, StoreError> {
        let _ = wait_us;
        self.lease(queue, max, lease_us, now_us).await
    }
    /// Whether [`QueueStore::lease_waiting`] waits for work. When it does not, a worker that
    /// found nothing sleeps until an enqueue in its own process wakes it or its poll
    /// interval passes.
    fn waits(&self) -> bool {
        false
    }
    /// Keeps a lease until `until_us`; false if the lease was lost.
    async fn extend(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        until_us: i64,
    ) -> Result<bool, StoreError>;
    /// Removes a delivered message; false if the lease was lost.
    async fn ack(&self, queue: &str, id: &str, token: &str) -> Result<bool, StoreError>;
    /// Schedules another delivery at `at_us`; false if the lease was lost.
    async fn retry(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        at_us: i64,
        error: &str,
    ) -> Result<bool, StoreError>;
    /// Gives a message back undelivered (the function could not run: no free instance),
    /// deliverable again at `at_us`, without counting the attempt; false if the lease was lost.
    async fn release(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        at_us: i64,
    ) -> Result<bool, StoreError>;
    /// Moves a message to the dead letters; false if the lease was lost.
    async fn dead_letter(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        error: &str,
        now_us: i64,
    ) -> Result<bool, StoreError>;
    /// Counts.
    async fn depth(&self, queue: &str, now_us: i64) -> Result<QueueDepth, StoreError>;
    /// Dead letters, oldest first.
    async fn dead_letters(&self, queue: &str, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;
    /// Forgets idempotency keys whose window has passed and dead letters older than
    /// `now_us - dead_letter_retention_us`; returns how many rows went. Backends whose
    /// server expires them itself (JetStream's `duplicate_window` and `max_age`) keep this
    /// default.
    async fn prune(&self, now_us: i64, dead_letter_retention_us: i64) -> Result<u64, StoreError> {
        let _ = (now_us, dead_letter_retention_us);
        Ok(0)
    }
    /// Deletes dead letters (all, or those listed by id); returns how many went.
    async fn delete_dead(&self, queue: &str, ids: Option<Vec<String>>) -> Result<u32, StoreError>;
    /// Makes dead letters (all, or those listed) deliverable again with fresh attempts.
    async fn redrive(
        &self,
        queue: &str,
        ids: Option<Vec<String>>,
        now_us: i64,
    ) -> Result<u32, StoreError>;
}
