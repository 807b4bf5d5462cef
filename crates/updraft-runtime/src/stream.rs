//! A `[stream.<name>]` as the node holds it: its store, how events find their partition,
//! the wake-up of its consumers, and the cap on appends in flight that makes ingestion slow
//! its producers down instead of queueing without bound.

use std::sync::Arc;

use tokio::sync::{Notify, Semaphore};
use updraft_manifest::KeySource;
use updraft_store::{Event, StoreError, StreamStore, partition_of};

/// Appends in flight per stream before ingestion answers "busy" (503 + `Retry-After`).
pub const MAX_APPENDS_IN_FLIGHT: usize = 256;

/// One stream.
pub struct StreamHandle {
    /// Its name.
    pub name: String,
    /// Where its partitions live.
    pub store: Arc<dyn StreamStore>,
    /// How many partitions.
    pub partitions: u32,
    /// What an event's partition is the hash of (`None`: its subject, else its id).
    pub key: Option<KeySource>,
    /// Woken after every append, so local consumers need not poll.
    pub notify: Arc<Notify>,
    /// Appends in flight.
    pub in_flight: Arc<Semaphore>,
}

/// Why events were not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// An event has no value for the stream's key; nothing was stored.
    #[error("{0}")]
    NoKey(String),
    /// Too many appends in flight: try again shortly; nothing was stored.
    #[error("stream `{0}` is busy storing earlier events; retry shortly")]
    Busy(String),
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StreamHandle {
    /// A handle on `store` for the stream `name`.
    pub fn new(
        name: &str,
        store: Arc<dyn StreamStore>,
        partitions: u32,
        key: Option<KeySource>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            store,
            partitions,
            key,
            notify: Arc::new(Notify::new()),
            in_flight: Arc::new(Semaphore::new(MAX_APPENDS_IN_FLIGHT)),
        }
    }

    /// The key `event` is partitioned by, or why it has none.
    pub fn key_of(&self, event: &Event) -> Result<String, String> {
        let missing = |what: &str| {
            format!(
                "event `{}` has no {what}, which stream `{}` is partitioned by; send it on every event",
                event.id, self.name
            )
        };
        match &self.key {
            None => Ok(event.subject.clone().unwrap_or_else(|| event.id.clone())),
            Some(KeySource::Attribute(name)) => attribute(event, name)
                .map(str::to_owned)
                .ok_or_else(|| missing(&format!("`{name}` attribute"))),
            Some(KeySource::Data(path)) => {
                let field = format!("`data.{}` field", path.join("."));
                let json: serde_json::Value =
                    serde_json::from_slice(&event.data).map_err(|_| missing(&field))?;
                let value = path
                    .iter()
                    .try_fold(&json, |v, step| v.get(step))
                    .ok_or_else(|| missing(&field))?;
                match value {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    serde_json::Value::Number(n) => Ok(n.to_string()),
                    serde_json::Value::Bool(b) => Ok(b.to_string()),
                    _ => Err(missing(&format!("{field} holding a string or number"))),
                }
            }
        }
    }

    /// The partition of `event`.
    pub fn partition_of(&self, event: &Event) -> Result<u32, String> {
        Ok(partition_of(&self.key_of(event)?, self.partitions))
    }

    /// Stores `events` (all or none), each in its key's partition; durable when it returns
    /// `(partition, offset)` per event. Refuses at once when too many appends are in flight.
    pub async fn append(&self, events: Vec<Event>) -> Result<Vec<(u32, u64)>, AppendError> {
        let placed = events
            .into_iter()
            .map(|e| Ok((self.partition_of(&e).map_err(AppendError::NoKey)?, e)))
            .collect::<Result<Vec<_>, AppendError>>()?;
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| AppendError::Busy(self.name.clone()))?;
        let partitions: Vec<u32> = placed.iter().map(|(p, _)| *p).collect();
        let offsets = self.store.append(placed, crate::now_us()).await?;
        self.notify.notify_waiters();
        Ok(partitions.into_iter().zip(offsets).collect())
    }
}

/// A context attribute or an extension of `event`, by name.
fn attribute<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    match name {
        "id" => Some(&event.id),
        "source" => Some(&event.source),
        "type" => Some(&event.ty),
        "subject" => event.subject.as_deref(),
        "time" => event.time.as_deref(),
        _ => event
            .extensions
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str()),
    }
}
