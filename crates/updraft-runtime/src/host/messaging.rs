//! `updraft:platform/messaging`: enqueue to the queues a function lists.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use updraft_store::{Event, NewMessage, QueueStore};

use super::generated::updraft::platform::messaging::{self as wit, Error};
use super::generated::updraft::platform::types;
use super::{Denied, lookup};
use crate::state::InvocationState;

/// Largest event (data plus attributes) a queue takes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// A queue a function may send to.
pub struct QueueHandle {
    /// The queue's name.
    pub name: String,
    /// Where it lives.
    pub store: Arc<dyn QueueStore>,
    /// Woken on every enqueue, so local workers need not poll.
    pub notify: Arc<Notify>,
    /// How long an idempotency key is remembered, in microseconds.
    pub dedup_window_us: i64,
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A guest's event as the store keeps it, filling in what the guest left empty.
pub(crate) fn from_wit(e: types::Event, function: &str) -> Event {
    Event {
        id: if e.id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            e.id
        },
        source: if e.source.is_empty() {
            format!("/functions/{function}")
        } else {
            e.source
        },
        ty: e.type_,
        subject: e.subject,
        time: e.time,
        datacontenttype: e.datacontenttype,
        data: e.data,
        extensions: e.extensions,
    }
}

/// The store's event as a guest sees it.
pub(crate) fn to_wit(e: Event) -> types::Event {
    types::Event {
        id: e.id,
        source: e.source,
        type_: e.ty,
        subject: e.subject,
        time: e.time,
        datacontenttype: e.datacontenttype,
        data: e.data,
        extensions: e.extensions,
    }
}

fn size(e: &Event) -> usize {
    e.data.len()
        + e.id.len()
        + e.source.len()
        + e.ty.len()
        + e.extensions
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

impl types::Host for InvocationState {}

impl wit::Host for InvocationState {
    async fn enqueue(
        &mut self,
        queue: String,
        event: types::Event,
        options: wit::EnqueueOptions,
    ) -> wasmtime::Result<Result<(), Error>> {
        let handle = match lookup(&self.resources.queues, &queue) {
            Ok(h) => h,
            Err(denied) => {
                let err = match denied {
                    Denied::Unknown => Error::NoSuchQueue(format!(
                        "queue `{queue}` is not declared; add a `[queue.{queue}]` table to updraft.toml"
                    )),
                    Denied::NotAllowed => Error::AccessDenied(format!(
                        "function `{}` may not enqueue to `{queue}`; add it to the function's `enqueue = [...]`",
                        self.outbound.function
                    )),
                };
                if let Error::NoSuchQueue(m) | Error::AccessDenied(m) = &err {
                    tracing::warn!(function = %self.outbound.function, invocation = %self.outbound.invocation, "{m}");
                }
                return Ok(Err(err));
            }
        };
        if event.type_.is_empty() {
            return Ok(Err(Error::Other(
                "an event needs a `type` (e.g. `order.created`)".to_owned(),
            )));
        }
        let event = from_wit(event, &self.outbound.function);
        if size(&event) > MAX_EVENT_BYTES {
            return Ok(Err(Error::TooLarge(format!(
                "event of {} bytes is over the {MAX_EVENT_BYTES} byte limit of queue `{queue}`; store the payload in kv or sql and enqueue its key",
                size(&event)
            ))));
        }
        let now = now_us();
        let delay_us = options.delay_ms.map_or(0, |ms| {
            i64::try_from(ms.saturating_mul(1000)).unwrap_or(i64::MAX)
        });
        let message = NewMessage {
            event,
            available_us: now.saturating_add(delay_us),
            idempotency_key: options.idempotency_key,
        };
        match handle
            .store
            .enqueue(&handle.name, vec![message], handle.dedup_window_us, now)
            .await
        {
            Ok(_) => {
                handle.notify.notify_waiters();
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(Error::Other(e.to_string()))),
        }
    }
}
