//! Topics: an append-only log per topic, fanned out at publish time to one queue per
//! matching subscription (which then delivers with the queue's retries and dead letters),
//! and replayable into a subscription from a position or a time.

use async_trait::async_trait;

use crate::StoreError;
use crate::queue::Event;

/// A subscription's queue and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The queue its deliveries go through (`<topic>.<subscription>`).
    pub queue: String,
    /// Only events whose type equals this, or starts with it when it ends in `.`.
    pub type_filter: Option<String>,
    /// Only events whose subject starts with this.
    pub subject_prefix: Option<String>,
}

impl Subscription {
    /// Whether `event` passes the filter.
    pub fn accepts(&self, event: &Event) -> bool {
        let type_ok = match &self.type_filter {
            None => true,
            Some(t) if t.ends_with('.') => event.ty.starts_with(t.as_str()),
            Some(t) => event.ty == *t,
        };
        let subject_ok = match &self.subject_prefix {
            None => true,
            Some(p) => event
                .subject
                .as_deref()
                .is_some_and(|s| s.starts_with(p.as_str())),
        };
        type_ok && subject_ok
    }
}

/// One entry of a topic's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its position (increasing).
    pub position: i64,
    /// When it was appended.
    pub appended_us: i64,
    /// The event.
    pub event: Event,
}

/// Where replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// Entries at or after this position.
    Position(i64),
    /// Entries appended at or after this time.
    Time(i64),
}

/// Durable topics.
#[async_trait]
pub trait TopicStore: Send + Sync + 'static {
    /// Appends `event` and enqueues it for every subscription that accepts it, in one
    /// durable step. Returns its position, or `None` when an event with the same source and
    /// id was published within `dedup_window_us` (then nothing is stored).
    async fn publish(
        &self,
        topic: &str,
        event: Event,
        subscriptions: &[Subscription],
        dedup_window_us: i64,
        now_us: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// Reads the log after `after` (exclusive), oldest first.
    async fn read(&self, topic: &str, after: i64, limit: u32) -> Result<Vec<LogEntry>, StoreError>;
    /// Drops log entries appended before `now_us - log_retention_us` and dedup ids whose
    /// window has passed; returns how many rows went. Backends whose server expires them
    /// itself (JetStream's `max_age`) keep this default.
    async fn prune(&self, now_us: i64, log_retention_us: i64) -> Result<u64, StoreError> {
        let _ = (now_us, log_retention_us);
        Ok(0)
    }
    /// Enqueues the log's entries from `from` onwards for `subscription` again (if it
    /// accepts them); returns how many.
    async fn replay(
        &self,
        topic: &str,
        subscription: &Subscription,
        from: ReplayFrom,
        now_us: i64,
    ) -> Result<u64, StoreError>;
}
