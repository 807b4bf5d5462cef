//! `updraft:platform/messaging`: enqueue to the queues a function lists.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use updraft_store::{Event, NewMessage, QueueStore, Subscription, TopicStore};

use super::generated::updraft::platform::messaging::{self as wit, Error};
use super::generated::updraft::platform::types;
use updraft_manifest::allow::{APPEND, ENQUEUE, PUBLISH};
use wasmtime::component::Linker;

use super::{Binding, BindingCtx};
use crate::state::InvocationState;

/// Links `updraft:platform/messaging` and the event types it uses.
pub(crate) fn link(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    types::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)?;
    wit::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)
}

/// Largest event (data plus attributes) a queue takes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// Longest delivery delay: as long as dead letters are kept (DESIGN §9: 14 days).
pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

/// Checks an enqueue delay; the error names the limit.
pub fn check_delay(delay: std::time::Duration) -> Result<i64, String> {
    if delay > MAX_DELAY {
        return Err(format!(
            "a delay of {} is over the limit of 14 days; schedule far-off work with a cron trigger",
            humantime::format_duration(delay)
        ));
    }
    Ok(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX))
}

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

/// A topic a function may publish to.
pub struct TopicHandle {
    /// The topic's name.
    pub name: String,
    /// Where its log lives.
    pub store: Arc<dyn TopicStore>,
    /// Its subscriptions, each with the wake-up of its delivery queue.
    pub subscriptions: Vec<(Subscription, Arc<Notify>)>,
    /// How long event ids are remembered, in microseconds.
    pub dedup_window_us: i64,
}

impl TopicHandle {
    /// Publishes `event`; returns its position, or `None` for a duplicate id.
    pub async fn publish(&self, event: Event) -> Result<Option<i64>, updraft_store::StoreError> {
        let subs: Vec<Subscription> = self.subscriptions.iter().map(|(s, _)| s.clone()).collect();
        let position = self
            .store
            .publish(&self.name, event, &subs, self.dedup_window_us, now_us())
            .await?;
        for (_, notify) in &self.subscriptions {
            notify.notify_waiters();
        }
        Ok(position)
    }
}

/// Checks an event before it is stored: a type, and the size limit.
pub fn check_event(event: &Event, destination: &str) -> Result<(), String> {
    if event.ty.is_empty() {
        return Err("an event needs a `type` (e.g. `order.created`)".to_owned());
    }
    if size(event) > MAX_EVENT_BYTES {
        return Err(format!(
            "event of {} bytes is over the {MAX_EVENT_BYTES} byte limit of `{destination}`; store the payload in kv or sql and send its key",
            size(event)
        ));
    }
    Ok(())
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
        // Stamped here so every event a function sends says when it happened.
        time: e.time.or_else(|| {
            Some(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string())
        }),
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

impl types::Host for BindingCtx<'_> {}

impl wit::Host for BindingCtx<'_> {
    async fn enqueue(
        &mut self,
        queue: String,
        event: types::Event,
        options: wit::EnqueueOptions,
    ) -> wasmtime::Result<Result<(), Error>> {
        let handle = match self
            .resources
            .open::<QueueHandle>(&ENQUEUE, self.caller, &queue)
        {
            Ok(h) => h,
            Err(denial) => {
                return Ok(Err(if denial.undeclared {
                    Error::NoSuchQueue(denial.message)
                } else {
                    Error::AccessDenied(denial.message)
                }));
            }
        };
        let event = from_wit(event, &self.caller.function);
        if let Err(m) = check_event(&event, &queue) {
            return Ok(Err(if event.ty.is_empty() {
                Error::Other(m)
            } else {
                Error::TooLarge(m)
            }));
        }
        let now = now_us();
        let delay = std::time::Duration::from_millis(options.delay_ms.unwrap_or(0));
        let delay_us = match check_delay(delay) {
            Ok(us) => us,
            Err(m) => return Ok(Err(Error::Other(format!("queue `{queue}`: {m}")))),
        };
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

    async fn publish(
        &mut self,
        topic: String,
        event: types::Event,
    ) -> wasmtime::Result<Result<(), Error>> {
        let handle = match self
            .resources
            .open::<TopicHandle>(&PUBLISH, self.caller, &topic)
        {
            Ok(h) => h,
            Err(denial) => {
                return Ok(Err(if denial.undeclared {
                    Error::NoSuchTopic(denial.message)
                } else {
                    Error::AccessDenied(denial.message)
                }));
            }
        };
        let event = from_wit(event, &self.caller.function);
        if let Err(m) = check_event(&event, &topic) {
            return Ok(Err(if event.ty.is_empty() {
                Error::Other(m)
            } else {
                Error::TooLarge(m)
            }));
        }
        Ok(handle
            .publish(event)
            .await
            .map(drop)
            .map_err(|e| Error::Other(e.to_string())))
    }

    async fn append(
        &mut self,
        stream: String,
        events: Vec<types::Event>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let handle = match self
            .resources
            .open::<crate::StreamHandle>(&APPEND, self.caller, &stream)
        {
            Ok(h) => h,
            Err(denial) => {
                return Ok(Err(if denial.undeclared {
                    Error::NoSuchStream(denial.message)
                } else {
                    Error::AccessDenied(denial.message)
                }));
            }
        };
        let events: Vec<Event> = events
            .into_iter()
            .map(|e| from_wit(e, &self.caller.function))
            .collect();
        for event in &events {
            if let Err(m) = check_event(event, &stream) {
                return Ok(Err(if event.ty.is_empty() {
                    Error::Other(m)
                } else {
                    Error::TooLarge(m)
                }));
            }
        }
        // A function waits while the stream is behind (its own deadline bounds it) rather
        // than fail on back-pressure meant for outside producers.
        let mut wait = std::time::Duration::from_millis(5);
        loop {
            match handle.append(events.clone()).await {
                Ok(_) => return Ok(Ok(())),
                Err(crate::AppendError::Busy(_)) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_millis(500));
                }
                Err(e) => return Ok(Err(Error::Other(e.to_string()))),
            }
        }
    }
}
