//! Event functions: components exporting `updraft:platform/event-handler`, run by cron,
//! queue and topic triggers with a batch of CloudEvents-shaped events.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use tokio::sync::Semaphore;
use updraft_store::Event;

use crate::core::{FunctionCore, micros};
use crate::error::InvokeError;
use crate::host::messaging::to_wit;
use crate::logs::InvocationLog;
use crate::state::InvocationState;
use crate::{FunctionSpec, InvocationRecord, Observer, Outcome};

/// Bindings for calling the export.
mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "updraft:platform/event-handler-export",
        exports: { default: async },
        with: {
            "updraft:platform/types": crate::host::generated::updraft::platform::types,
        },
        require_store_data_send: true,
    });
}

pub(crate) use generated::EventHandlerExportPre;

/// Why an event invocation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventError {
    /// The function could not run or finish (capacity, timeout, trap, memory).
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The function ran and reported failure.
    #[error("function `{function}` failed to handle its events: {message}")]
    Handler {
        /// The function.
        function: String,
        /// Its message.
        message: String,
        /// The indexes of the events that failed; `None` means all of them.
        failed: Option<Vec<u32>>,
    },
}

/// A loaded event function, cheap to clone.
#[derive(Clone)]
pub struct EventFunction {
    inner: Arc<Inner>,
}

struct Inner {
    core: FunctionCore,
    pre: EventHandlerExportPre<InvocationState>,
}

impl EventFunction {
    pub(crate) fn new(
        spec: FunctionSpec,
        pre: EventHandlerExportPre<InvocationState>,
        node_permits: Arc<Semaphore>,
        observer: Observer,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                core: FunctionCore::new(
                    spec,
                    updraft_manifest::DEFAULT_EVENT_TIMEOUT,
                    node_permits,
                    observer,
                ),
                pre,
            }),
        }
    }

    /// The function id.
    pub fn id(&self) -> &str {
        &self.inner.core.id
    }

    /// The timeout in force.
    pub fn timeout(&self) -> std::time::Duration {
        self.inner.core.time_limit
    }

    /// The spec it was loaded from.
    pub fn spec(&self) -> &FunctionSpec {
        &self.inner.core.spec
    }

    /// Instances free right now (for triggers deciding how much to lease).
    pub fn available(&self) -> usize {
        self.inner.core.permits.available_permits()
    }

    /// Runs the function on `events`. `trigger` names what ran it (`queue`, `cron`, …).
    pub async fn invoke(
        &self,
        events: Vec<Event>,
        trigger: &'static str,
        id: Arc<str>,
    ) -> Result<(), EventError> {
        let core = &self.inner.core;
        let started = SystemTime::now();
        let request = describe(&events);
        let permits = core.admit(&id, trigger, started, &request)?;
        let clock = Instant::now();
        let deadline = core.deadline(clock);
        let cold = !core.warm.swap(true, Ordering::Relaxed);
        let log = InvocationLog::new(core.id.clone(), id.clone(), core.observer.clone());
        let mut store = core.new_store(self.inner.pre.engine(), &id, &log, deadline);
        let events: Vec<_> = events.into_iter().map(to_wit).collect();
        let mut instantiate_us = 0;
        let run = async {
            let t = Instant::now();
            let instance = self.inner.pre.instantiate_async(&mut store).await?;
            instantiate_us = micros(t);
            instance
                .updraft_platform_event_handler()
                .call_handle(&mut store, &events)
                .await
        };
        let result = tokio::time::timeout_at(deadline.into(), run).await;
        let hit_memory_cap = store.data().limiter.hit_memory_cap;
        drop(store);
        log.flush();
        let result: Result<(), EventError> = match result {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(EventError::Handler {
                function: core.id.to_string(),
                message: e.message,
                failed: e.failed,
            }),
            Ok(Err(err)) => Err(core.classify(err, hit_memory_cap).into()),
            Err(_elapsed) => Err(core.timeout().into()),
        };
        if let Err(err) = &result {
            tracing::warn!(function = %core.id, invocation = %id, "{err}");
        }
        core.observer.finished(&InvocationRecord {
            id: id.to_string(),
            function: core.id.to_string(),
            trigger,
            started,
            cold,
            instantiate_us,
            duration_us: micros(clock),
            outcome: match &result {
                Ok(()) => Outcome::Ok,
                Err(EventError::Invoke(e)) => e.outcome(),
                Err(EventError::Handler { .. }) => Outcome::Error,
            },
            error: result.as_ref().err().map(ToString::to_string),
            request,
        });
        drop(permits);
        result
    }
}

/// `order.placed 01J… from /queues/orders (+2 more)`: what the invocation record keeps of
/// a batch of events.
fn describe(events: &[Event]) -> Option<String> {
    let first = events.first()?;
    let mut out = format!("{} {} from {}", first.ty, first.id, first.source);
    if events.len() > 1 {
        out.push_str(&format!(" (+{} more)", events.len() - 1));
    }
    Some(out)
}
