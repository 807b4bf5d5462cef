//! Sending work: to the queues a function lists in `enqueue = [...]`, the topics it lists
//! in `publish = [...]` and the streams it lists in `append = [...]`. All are durable when
//! they return.

use crate::bindings::updraft::platform::messaging::{self as wit, EnqueueOptions};
use crate::event::Event;
use crate::{Error, Result};

fn err(e: wit::Error) -> Error {
    Error(match e {
        wit::Error::AccessDenied(m)
        | wit::Error::NoSuchQueue(m)
        | wit::Error::NoSuchTopic(m)
        | wit::Error::NoSuchStream(m)
        | wit::Error::TooLarge(m)
        | wit::Error::Other(m) => m,
    })
}

/// Publishes `event` to topic `topic`: appended to its log and delivered to every matching
/// subscription.
pub fn publish(topic: &str, event: &Event) -> Result<()> {
    wit::publish(topic, event).map_err(err)
}

/// Appends `events` to stream `stream`, each in the partition of its key (the stream's
/// `key`), all or none.
pub fn append(stream: &str, events: &[Event]) -> Result<()> {
    wit::append(stream, events).map_err(err)
}

/// Adds `event` to queue `queue`, deliverable now.
pub fn enqueue(queue: &str, event: &Event) -> Result<()> {
    enqueue_with(queue, event, Options::default())
}

/// How [`enqueue_with`] delivers.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Deliver no earlier than this many milliseconds from now.
    pub delay_ms: Option<u64>,
    /// Enqueueing the same key again within the dedup window does nothing.
    pub idempotency_key: Option<String>,
}

/// Adds `event` to queue `queue` with a delay or an idempotency key.
pub fn enqueue_with(queue: &str, event: &Event, options: Options) -> Result<()> {
    let options = EnqueueOptions {
        delay_ms: options.delay_ms,
        idempotency_key: options.idempotency_key,
    };
    wit::enqueue(queue, event, &options).map_err(err)
}
