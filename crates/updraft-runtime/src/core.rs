//! What HTTP and event functions share: permits, a fresh limited `Store` per invocation,
//! and turning wasmtime errors into [`InvokeError`]s.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::error::InvokeError;
use crate::host::{Caller, http_budget};
use crate::limits::Limiter;
use crate::logs::{InvocationLog, LogStream};
use crate::outbound::OutboundPolicy;
use crate::state::InvocationState;
use crate::{FunctionSpec, Observer};

/// Raised by the epoch callback when an invocation passes its deadline.
#[derive(Debug)]
pub(crate) struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// One loaded function, whatever it exports.
pub(crate) struct FunctionCore {
    pub(crate) id: Arc<str>,
    pub(crate) spec: FunctionSpec,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) node_permits: Arc<Semaphore>,
    pub(crate) node_limit: u32,
    pub(crate) observer: Observer,
    pub(crate) config: Arc<crate::host::sandbox::Variables>,
    pub(crate) allowed: Arc<[updraft_manifest::AllowedHost]>,
    pub(crate) warm: AtomicBool,
    /// The timeout in force: the spec's, or the default for the function's kind.
    pub(crate) time_limit: std::time::Duration,
}

impl FunctionCore {
    pub(crate) fn new(
        spec: FunctionSpec,
        default_timeout: std::time::Duration,
        node_permits: Arc<Semaphore>,
        observer: Observer,
    ) -> Self {
        let node_limit = u32::try_from(node_permits.available_permits()).unwrap_or(u32::MAX);
        Self {
            id: Arc::from(spec.id.as_str()),
            permits: Arc::new(Semaphore::new(spec.max_concurrency as usize)),
            allowed: spec.allowed_outbound_hosts.clone().into(),
            config: Arc::new(spec.variables.iter().cloned().collect()),
            time_limit: spec.timeout.unwrap_or(default_timeout),
            spec,
            node_permits,
            node_limit,
            observer,
            warm: AtomicBool::new(false),
        }
    }

    /// The deadline of an invocation that starts at `clock`.
    pub(crate) fn deadline(&self, clock: Instant) -> Instant {
        clock
            .checked_add(self.time_limit)
            .unwrap_or(clock + std::time::Duration::from_secs(365 * 24 * 3600))
    }

    /// Takes the permits for one invocation; a rejection is recorded as one.
    pub(crate) fn admit(
        &self,
        id: &str,
        trigger: &'static str,
        started: std::time::SystemTime,
        request: &Option<String>,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), InvokeError> {
        self.acquire().inspect_err(|err| {
            self.observer.finished(&crate::InvocationRecord {
                id: id.to_owned(),
                function: self.id.to_string(),
                trigger,
                started,
                cold: false,
                instantiate_us: 0,
                duration_us: 0,
                outcome: crate::Outcome::Rejected,
                error: Some(err.to_string()),
                request: request.clone(),
            });
        })
    }

    fn acquire(&self) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), InvokeError> {
        let inner = self;
        let own =
            inner
                .permits
                .clone()
                .try_acquire_owned()
                .map_err(|_| InvokeError::AtCapacity {
                    function: inner.id.to_string(),
                    limit: inner.spec.max_concurrency,
                })?;
        let node = inner
            .node_permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| InvokeError::AtCapacity {
                function: inner.id.to_string(),
                limit: inner.node_limit,
            })?;
        Ok((own, node))
    }

    pub(crate) fn new_store(
        &self,
        engine: &wasmtime::Engine,
        invocation: &Arc<str>,
        log: &InvocationLog,
        deadline: Instant,
    ) -> Store<InvocationState> {
        let inner = self;
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(log.stream(LogStream::Stdout))
            .stderr(log.stream(LogStream::Stderr))
            .envs(&inner.spec.variables)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let mut table = ResourceTable::new();
        table.set_max_capacity(http_budget::MAX_HANDLES);
        let limiter = Limiter::new(inner.spec.memory);
        let state = InvocationState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            http_budget: http_budget::HttpBudget::new(limiter.memory_cap()),
            table,
            outbound: OutboundPolicy {
                function: inner.id.clone(),
                invocation: invocation.clone(),
                allowed: inner.allowed.clone(),
            },
            config: inner.config.clone(),
            limiter,
            resources: inner.spec.resources.clone(),
            caller: Caller {
                function: inner.id.clone(),
                invocation: invocation.clone(),
            },
            deadline,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        // Yield to other tasks every epoch tick; trap once the deadline has passed. The
        // deadline is read from the store, which a reused instance moves on per invocation.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    pub(crate) fn timeout(&self) -> InvokeError {
        InvokeError::Timeout {
            function: self.id.to_string(),
            timeout: self.time_limit,
        }
    }

    pub(crate) fn classify(&self, err: wasmtime::Error, hit_memory_cap: bool) -> InvokeError {
        if err.downcast_ref::<DeadlineExceeded>().is_some() {
            return self.timeout();
        }
        if err
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return InvokeError::AtCapacity {
                function: self.id.to_string(),
                limit: self.node_limit,
            };
        }
        if let Some(over) = err.downcast_ref::<http_budget::OverBudget>() {
            return InvokeError::HostMemoryLimit {
                function: self.id.to_string(),
                limit_mib: self.spec.memory >> 20,
                what: over.what.to_owned(),
            };
        }
        if hit_memory_cap {
            return InvokeError::MemoryLimit {
                function: self.id.to_string(),
                limit_mib: self.spec.memory >> 20,
            };
        }
        let message = match err.downcast_ref::<wasmtime::Trap>() {
            // A trap's own text starts with "wasm trap: ".
            Some(trap) => trap.to_string(),
            None => format!("{err:#}"),
        };
        tracing::debug!(function = %self.id, "guest error detail: {err:?}");
        InvokeError::Failed {
            function: self.id.to_string(),
            message,
        }
    }
}

/// Microseconds since `since`.
pub(crate) fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}
