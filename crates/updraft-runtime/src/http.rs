//! HTTP functions: one `wasi:http/incoming-handler` call per request, each in a fresh
//! instance with its own limits, unless the function opts into reuse (`reuse = N`): then an
//! instance that answered cleanly and let go of its request's handles is kept for the next
//! request, up to N requests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::body::{HostFutureTrailers, HostIncomingBody, HostOutgoingBody};
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, HostIncomingRequest, HostIncomingResponse, HostOutgoingRequest,
    HostOutgoingResponse, HostResponseOutparam,
};

use crate::core::{FunctionCore, micros};
use crate::error::InvokeError;
use crate::logs::InvocationLog;
use crate::state::InvocationState;
use crate::{FunctionSpec, InvocationRecord, Observer, Outcome};

/// The body of a function's response: streamed from the guest as it writes it.
pub type ResponseBody = HyperOutgoingBody;

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
    core: FunctionCore,
    pre: ProxyPre<InvocationState>,
    /// Instances kept for their next request (`reuse` > 1), at most `max_concurrency`.
    kept: Mutex<Vec<Kept>>,
}

/// An instance that served a request cleanly and may serve another.
struct Kept {
    store: Store<InvocationState>,
    proxy: Proxy,
    log: InvocationLog,
    /// Requests it has served.
    served: u32,
}

impl Inner {
    /// An instance kept from an earlier request, moved on to `invocation`.
    fn take_kept(&self, invocation: &Arc<str>, deadline: Instant) -> Option<Kept> {
        if self.core.spec.reuse <= 1 {
            return None;
        }
        let mut kept = self.kept.lock().ok()?.pop()?;
        kept.log.rebind(invocation.clone());
        kept.store.data_mut().rebind(invocation, deadline);
        kept.store.set_epoch_deadline(1);
        Some(kept)
    }

    /// Keeps an instance for another request if the function reuses instances, it has
    /// requests left, and the guest let go of this request's handles.
    fn keep(&self, mut kept: Kept) {
        let spec = &self.core.spec;
        if kept.served >= spec.reuse || !let_go(&mut kept.store.data_mut().table) {
            return;
        }
        if let Ok(mut all) = self.kept.lock()
            && all.len() < spec.max_concurrency as usize
        {
            all.push(kept);
        }
    }
}

impl HttpFunction {
    pub(crate) fn new(
        spec: FunctionSpec,
        pre: ProxyPre<InvocationState>,
        node_permits: Arc<Semaphore>,
        observer: Observer,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                core: FunctionCore::new(
                    spec,
                    updraft_manifest::DEFAULT_HTTP_TIMEOUT,
                    node_permits,
                    observer,
                ),
                pre,
                kept: Mutex::new(Vec::new()),
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
        let request_line = Some(request_line(&request));
        let permits = inner
            .core
            .admit(&invocation.id, "http", started, &request_line)?;
        let clock = Instant::now();
        let deadline = inner.core.deadline(clock);
        let cold = !inner.core.warm.swap(true, Ordering::Relaxed);
        let (mut store, log, kept_proxy, served) = match inner.take_kept(&invocation.id, deadline) {
            Some(kept) => (kept.store, kept.log, Some(kept.proxy), kept.served),
            None => {
                let log = InvocationLog::new(
                    inner.core.id.clone(),
                    invocation.id.clone(),
                    inner.core.observer.clone(),
                );
                let store =
                    inner
                        .core
                        .new_store(inner.pre.engine(), &invocation.id, &log, deadline);
                (store, log, None, 0)
            }
        };
        let failed = |err: wasmtime::Error| InvokeError::Failed {
            function: inner.core.id.to_string(),
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
                function: inner.core.id.to_string(),
                message: format!("{err:#}"),
            })?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(failed)?;

        let (outcome_tx, outcome_rx) = tokio::sync::oneshot::channel();
        // Set when the response body is dropped unfinished: the client went away.
        let client_gone = Arc::new(AtomicBool::new(false));
        let gone = client_gone.clone();
        let this = self.clone();
        let task = tokio::spawn(async move {
            let mut instantiate_us = 0;
            let run = async {
                let proxy = match kept_proxy {
                    Some(proxy) => proxy,
                    None => {
                        let t = Instant::now();
                        let proxy = this.inner.pre.instantiate_async(&mut store).await?;
                        instantiate_us = micros(t);
                        proxy
                    }
                };
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
                    .map(|()| proxy)
            };
            let result = tokio::time::timeout_at(deadline.into(), run).await;
            let hit_memory_cap = store.data().limiter.hit_memory_cap;
            let result = match result {
                Ok(Ok(proxy)) => Ok(proxy),
                Ok(Err(err)) => Err(this.inner.core.classify(err, hit_memory_cap)),
                Err(_elapsed) => Err(this.inner.core.timeout()),
            };
            // The log is flushed once the guest can write no more: after the call, or once
            // the store (and with it the guest's streams) is gone.
            let result = match result {
                Ok(proxy) => {
                    log.flush();
                    let served = served + 1;
                    this.inner.keep(Kept {
                        store,
                        proxy,
                        log,
                        served,
                    });
                    Ok(())
                }
                Err(err) => {
                    drop(store);
                    log.flush();
                    Err(err)
                }
            };
            let left_first = gone.load(Ordering::Acquire);
            let result = result.map_err(|err| match err {
                // Its next write failed because the client had hung up (wstd guests panic
                // on that): say so, so nobody hunts for a bug in the function.
                InvokeError::Failed { function, message } if left_first => InvokeError::Failed {
                    function,
                    message: format!(
                        "the client closed the connection before the response was complete, then {message}"
                    ),
                },
                other => other,
            });
            match &result {
                Err(err) if left_first => {
                    tracing::info!(function = %this.inner.core.id, invocation = %invocation.id, "{err}");
                }
                Err(err) => {
                    tracing::warn!(function = %this.inner.core.id, invocation = %invocation.id, "{err}");
                }
                Ok(()) => {}
            }
            this.inner.core.observer.finished(&InvocationRecord {
                id: invocation.id.to_string(),
                function: this.inner.core.id.to_string(),
                trigger: "http",
                started,
                cold,
                instantiate_us,
                duration_us: micros(clock),
                outcome: result
                    .as_ref()
                    .map_or_else(InvokeError::outcome, |()| Outcome::Ok),
                error: result.as_ref().err().map(ToString::to_string),
                request: request_line,
            });
            drop(permits);
            let _ = outcome_tx.send(result.clone());
            result
        });

        match tokio::time::timeout_at(deadline.into(), receiver).await {
            Ok(Ok(Ok(response))) => {
                Ok(response
                    .map(|body| GuardedBody::new(body, outcome_rx, client_gone).boxed_unsync()))
            }
            Ok(Ok(Err(code))) => Err(InvokeError::Failed {
                function: inner.core.id.to_string(),
                message: format!("it answered with an error: {code:?}"),
            }),
            // The guest dropped its response-outparam without setting it: the task has
            // finished and knows why.
            Ok(Err(_closed)) => match task.await {
                Ok(Err(err)) => Err(err),
                Ok(Ok(())) => Err(InvokeError::Failed {
                    function: inner.core.id.to_string(),
                    message: "it returned without setting a response".to_owned(),
                }),
                Err(join) => Err(InvokeError::Failed {
                    function: inner.core.id.to_string(),
                    message: format!("its task ended abnormally: {join}"),
                }),
            },
            Err(_elapsed) => Err(self.inner.core.timeout()),
        }
    }
}

/// Handles an instance may keep open between requests and still be reused: its stdio
/// streams (libc opens them once and keeps them) and a few more.
const MAX_KEPT_HANDLES: usize = 16;

/// Whether a guest that returned let go of its request: no request, response or body
/// handle left (an outgoing body left open could be a response still streaming, which only
/// dropping the instance ends), and no more than [`MAX_KEPT_HANDLES`] handles in all, so
/// nothing piles up request after request.
fn let_go(table: &mut ResourceTable) -> bool {
    let mut handles = 0;
    for entry in table.iter_mut() {
        handles += 1;
        let per_request = entry.is::<HostOutgoingBody>()
            || entry.is::<HostIncomingBody>()
            || entry.is::<HostIncomingRequest>()
            || entry.is::<HostResponseOutparam>()
            || entry.is::<HostOutgoingResponse>()
            || entry.is::<HostOutgoingRequest>()
            || entry.is::<HostIncomingResponse>()
            || entry.is::<HostFutureIncomingResponse>()
            || entry.is::<HostFutureTrailers>();
        if per_request || handles > MAX_KEPT_HANDLES {
            return false;
        }
    }
    true
}

/// `GET /items?page=2`: what the invocation record keeps of the request.
fn request_line<B>(request: &hyper::Request<B>) -> String {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    format!("{} {target}", request.method())
}

/// A guest's response body that ends cleanly only if the invocation did: a trap or timeout
/// after the headers were sent becomes a body error, so the client sees a broken response,
/// never a complete-looking truncated one.
struct GuardedBody {
    inner: ResponseBody,
    outcome: tokio::sync::oneshot::Receiver<Result<(), InvokeError>>,
    done: bool,
    /// Set if this is dropped before the invocation's outcome arrived (the client left).
    client_gone: Arc<AtomicBool>,
}

impl GuardedBody {
    fn new(
        inner: ResponseBody,
        outcome: tokio::sync::oneshot::Receiver<Result<(), InvokeError>>,
        client_gone: Arc<AtomicBool>,
    ) -> Self {
        Self {
            inner,
            outcome,
            done: false,
            client_gone,
        }
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        if !self.done {
            self.client_gone.store(true, Ordering::Release);
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
