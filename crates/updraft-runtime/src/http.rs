//! HTTP functions: one `wasi:http/incoming-handler` call per request, each in a fresh
//! instance with its own limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::error::InvokeError;
use crate::limits::Limiter;
use crate::logs::{InvocationLog, LogStream};
use crate::outbound::OutboundPolicy;
use crate::state::InvocationState;
use crate::{FunctionSpec, InvocationRecord, Observer, Outcome};

/// The body of a function's response: streamed from the guest as it writes it.
pub type ResponseBody = HyperOutgoingBody;

/// Raised by the epoch callback when an invocation passes its deadline.
#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// Per-request facts the caller knows.
#[derive(Debug, Clone)]
pub struct HttpInvocation {
    /// The invocation id (also sent to the guest as `updraft-invocation-id`).
    pub id: Arc<str>,
    /// Whether the client connected over TLS.
    pub https: bool,
}

/// A loaded HTTP function, cheap to clone.
#[derive(Clone)]
pub struct HttpFunction {
    inner: Arc<Inner>,
}

struct Inner {
    id: Arc<str>,
    spec: FunctionSpec,
    pre: ProxyPre<InvocationState>,
    permits: Arc<Semaphore>,
    node_permits: Arc<Semaphore>,
    node_limit: u32,
    observer: Observer,
    config: Arc<WasiConfigVariables>,
    allowed: Arc<[updraft_manifest::AllowedHost]>,
    warm: AtomicBool,
}

impl HttpFunction {
    pub(crate) fn new(
        spec: FunctionSpec,
        pre: ProxyPre<InvocationState>,
        node_permits: Arc<Semaphore>,
        observer: Observer,
    ) -> Self {
        let node_limit = u32::try_from(node_permits.available_permits()).unwrap_or(u32::MAX);
        let config = Arc::new(WasiConfigVariables::from_iter(spec.variables.clone()));
        Self {
            inner: Arc::new(Inner {
                id: Arc::from(spec.id.as_str()),
                permits: Arc::new(Semaphore::new(spec.max_concurrency as usize)),
                allowed: spec.allowed_outbound_hosts.clone().into(),
                spec,
                pre,
                node_permits,
                node_limit,
                observer,
                config,
                warm: AtomicBool::new(false),
            }),
        }
    }

    /// The function id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The spec it was loaded from.
    pub fn spec(&self) -> &FunctionSpec {
        &self.inner.spec
    }

    /// Serves one request. Returns as soon as the guest has set its response; the body keeps
    /// streaming from the guest, which runs until it finishes or its timeout.
    pub async fn handle<B>(
        &self,
        request: hyper::Request<B>,
        invocation: HttpInvocation,
    ) -> Result<hyper::Response<ResponseBody>, InvokeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let inner = &self.inner;
        let started = SystemTime::now();
        let permits = match self.acquire() {
            Ok(p) => p,
            Err(err) => {
                inner.observer.finished(&InvocationRecord {
                    id: invocation.id.to_string(),
                    function: inner.id.to_string(),
                    trigger: "http",
                    started,
                    cold: false,
                    instantiate_us: 0,
                    duration_us: 0,
                    outcome: Outcome::Rejected,
                    error: Some(err.to_string()),
                });
                return Err(err);
            }
        };
        let clock = Instant::now();
        let deadline = clock
            .checked_add(inner.spec.timeout)
            .unwrap_or(clock + std::time::Duration::from_secs(365 * 24 * 3600));
        let cold = !inner.warm.swap(true, Ordering::Relaxed);
        let log = InvocationLog::new(
            inner.id.clone(),
            invocation.id.clone(),
            inner.observer.clone(),
        );
        let mut store = self.new_store(&invocation, &log, deadline);
        let failed = |err: wasmtime::Error| InvokeError::Failed {
            function: inner.id.to_string(),
            message: format!("{err:#}"),
        };
        let scheme = if invocation.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, request)
            .map_err(|err| InvokeError::BadRequest {
                function: inner.id.to_string(),
                message: format!("{err:#}"),
            })?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(failed)?;

        let (outcome_tx, outcome_rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut instantiate_us = 0;
            let run = async {
                let t = Instant::now();
                let proxy = this.inner.pre.instantiate_async(&mut store).await?;
                instantiate_us = micros(t);
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let result = tokio::time::timeout_at(deadline.into(), run).await;
            let hit_memory_cap = store.data().limiter.hit_memory_cap;
            drop(store);
            log.flush();
            let result = match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(this.classify(err, hit_memory_cap)),
                Err(_elapsed) => Err(this.timeout()),
            };
            if let Err(err) = &result {
                tracing::warn!(function = %this.inner.id, invocation = %invocation.id, "{err}");
            }
            this.inner.observer.finished(&InvocationRecord {
                id: invocation.id.to_string(),
                function: this.inner.id.to_string(),
                trigger: "http",
                started,
                cold,
                instantiate_us,
                duration_us: micros(clock),
                outcome: result
                    .as_ref()
                    .map_or_else(InvokeError::outcome, |()| Outcome::Ok),
                error: result.as_ref().err().map(ToString::to_string),
            });
            drop(permits);
            let _ = outcome_tx.send(result.clone());
            result
        });

        match tokio::time::timeout_at(deadline.into(), receiver).await {
            Ok(Ok(Ok(response))) => {
                Ok(response.map(|body| GuardedBody::new(body, outcome_rx).boxed_unsync()))
            }
            Ok(Ok(Err(code))) => Err(InvokeError::Failed {
                function: inner.id.to_string(),
                message: format!("it answered with an error: {code:?}"),
            }),
            // The guest dropped its response-outparam without setting it: the task has
            // finished and knows why.
            Ok(Err(_closed)) => match task.await {
                Ok(Err(err)) => Err(err),
                Ok(Ok(())) => Err(InvokeError::Failed {
                    function: inner.id.to_string(),
                    message: "it returned without setting a response".to_owned(),
                }),
                Err(join) => Err(InvokeError::Failed {
                    function: inner.id.to_string(),
                    message: format!("its task ended abnormally: {join}"),
                }),
            },
            Err(_elapsed) => Err(self.timeout()),
        }
    }

    fn acquire(&self) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), InvokeError> {
        let inner = &self.inner;
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

    fn new_store(
        &self,
        invocation: &HttpInvocation,
        log: &InvocationLog,
        deadline: Instant,
    ) -> Store<InvocationState> {
        let inner = &self.inner;
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(log.stream(LogStream::Stdout))
            .stderr(log.stream(LogStream::Stderr))
            .envs(&inner.spec.variables)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = InvocationState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundPolicy {
                function: inner.id.clone(),
                invocation: invocation.id.clone(),
                allowed: inner.allowed.clone(),
            },
            config: inner.config.clone(),
            limiter: Limiter::new(inner.spec.memory),
            resources: inner.spec.resources.clone(),
        };
        let mut store = Store::new(inner.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        // Yield to other tasks every epoch tick; trap once the deadline has passed.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    fn timeout(&self) -> InvokeError {
        InvokeError::Timeout {
            function: self.inner.id.to_string(),
            timeout: self.inner.spec.timeout,
        }
    }

    fn classify(&self, err: wasmtime::Error, hit_memory_cap: bool) -> InvokeError {
        if err.downcast_ref::<DeadlineExceeded>().is_some() {
            return self.timeout();
        }
        if err
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return InvokeError::AtCapacity {
                function: self.inner.id.to_string(),
                limit: self.inner.node_limit,
            };
        }
        if hit_memory_cap {
            return InvokeError::MemoryLimit {
                function: self.inner.id.to_string(),
                limit_mib: self.inner.spec.memory >> 20,
            };
        }
        let message = match err.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => format!("wasm trap: {trap}"),
            None => format!("{err:#}"),
        };
        tracing::debug!(function = %self.inner.id, "guest error detail: {err:?}");
        InvokeError::Failed {
            function: self.inner.id.to_string(),
            message,
        }
    }
}

/// A guest's response body that ends cleanly only if the invocation did: a trap or timeout
/// after the headers were sent becomes a body error, so the client sees a broken response,
/// never a complete-looking truncated one.
struct GuardedBody {
    inner: ResponseBody,
    outcome: tokio::sync::oneshot::Receiver<Result<(), InvokeError>>,
    done: bool,
}

impl GuardedBody {
    fn new(
        inner: ResponseBody,
        outcome: tokio::sync::oneshot::Receiver<Result<(), InvokeError>>,
    ) -> Self {
        Self {
            inner,
            outcome,
            done: false,
        }
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {}
            other => return other,
        }
        let outcome = std::task::ready!(std::pin::Pin::new(&mut self.outcome).poll(cx));
        self.done = true;
        match outcome {
            Ok(Ok(())) => Poll::Ready(None),
            Ok(Err(err)) => Poll::Ready(Some(Err(HttpError::InternalError(Some(err.to_string()))))),
            Err(_) => Poll::Ready(Some(Err(HttpError::InternalError(Some(
                "the invocation ended abnormally".to_owned(),
            ))))),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}
