//! A running node: one listener, the gateway's route table, the runtime, and a graceful drain.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use updraft_gateway::headers::{FunctionHeaders, INVOCATION_ID};
use updraft_gateway::router::RESERVED_PREFIX;
use updraft_gateway::{Body, BoxError, Lookup, Router, StaticSite, error_response};
use updraft_runtime::{
    CacheOutcome, EngineSettings, Function, HttpError, HttpFunction, HttpInvocation, InvokeError,
    Observer, Runtime,
};
use updraft_store::RecordStore;
use updraft_store::sqlite::SqliteRecords;

use updraft_triggers::{AppTriggers, RouteTarget, StartContext, async_jobs};

use crate::admin;
use crate::api::RouteInfo;
use crate::app::AppPlan;
use crate::body_limit::LimitedBody;
use crate::recorder::Recorder;
use crate::stores::AppStores;

/// Default request body limit (DESIGN §9).
pub const DEFAULT_MAX_BODY: u64 = 10 << 20;
/// Default request header limit (DESIGN §9).
pub const DEFAULT_MAX_HEADERS: usize = 64 << 10;

/// How a node listens and drains.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The gateway listener.
    pub listen: SocketAddr,
    /// How long in-flight work may take to finish after a shutdown signal.
    pub grace: Duration,
    /// Request body limit in bytes.
    pub max_body: u64,
    /// Node-wide instance limit.
    pub max_instances: u32,
    /// Required as `Authorization: Bearer` on the admin API, when set.
    pub admin_token: Option<String>,
    /// Host names `/_updraft/` answers besides IP literals and `localhost`
    /// (`--admin-host`).
    pub admin_hosts: Vec<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grace: Duration::from_secs(30),
            max_body: DEFAULT_MAX_BODY,
            max_instances: 1000,
            admin_token: None,
            admin_hosts: Vec::new(),
        }
    }
}

/// How one function was loaded.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The function id.
    pub function: String,
    /// Compiled now or taken from the cache.
    pub outcome: CacheOutcome,
}

/// What answers a route.
#[derive(Clone)]
enum Handler {
    Function(HttpFunction),
    Static(Arc<StaticSite>),
}

pub(crate) struct NodeState {
    router: Router<Handler>,
    runtime: Runtime,
    max_body: u64,
    local_addr: SocketAddr,
    pub(crate) ready: AtomicBool,
    pub(crate) app_name: String,
    pub(crate) functions: BTreeMap<String, Function>,
    pub(crate) queues: BTreeMap<String, Arc<updraft_runtime::QueueHandle>>,
    pub(crate) topics: BTreeMap<String, Arc<updraft_runtime::TopicHandle>>,
    pub(crate) async_jobs: Arc<dyn updraft_store::AsyncStore>,
    async_queue: Arc<updraft_runtime::QueueHandle>,
    callback_hosts: Vec<updraft_manifest::AllowedHost>,
    pub(crate) routes: Vec<RouteInfo>,
    pub(crate) records: Arc<dyn RecordStore>,
    /// Every trigger, for what `ls` and the API show about it.
    pub(crate) triggers: AppTriggers,
    pub(crate) schedules: Arc<dyn updraft_store::ScheduleStore>,
    pub(crate) admin_token: Option<String>,
    /// `--admin-host` names, lowercase.
    pub(crate) admin_hosts: Vec<String>,
    /// The `/_updraft/` router.
    pub(crate) admin: axum::Router,
}

/// A node that is serving. Drop it or call [`RunningNode::shutdown`] to stop.
pub struct RunningNode {
    /// The address the gateway listens on.
    pub addr: SocketAddr,
    /// How each function was loaded.
    pub loaded: Vec<LoadReport>,
    /// The routes, most specific first.
    pub routes: Vec<RouteInfo>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<bool>,
}

impl RunningNode {
    /// Stops accepting, lets in-flight requests finish within the grace period, and returns
    /// whether everything finished in time.
    pub async fn shutdown(self) -> bool {
        let _ = self.stop.send(true);
        self.done.await.unwrap_or(false)
    }
}

/// Loads every function of `plan`, binds the listener and starts serving.
pub async fn start(
    plan: AppPlan,
    stores: &AppStores,
    options: NodeOptions,
) -> anyhow::Result<RunningNode> {
    let records: Arc<dyn RecordStore> = Arc::new(SqliteRecords::new(stores.state.clone()));
    let (recorder, recorder_task) = Recorder::start(records.clone());
    let observer: Observer = recorder;
    let max_memory = plan
        .functions
        .iter()
        .map(|f| f.memory)
        .max()
        .unwrap_or(updraft_manifest::DEFAULT_MEMORY)
        .max(updraft_manifest::DEFAULT_MEMORY);
    let runtime = Runtime::new(EngineSettings {
        max_instances: options.max_instances,
        max_memory,
        cache_dir: plan.manifest.state_dir().join("cache"),
        ..EngineSettings::default()
    })
    .context("cannot start the WebAssembly engine")?;

    let mut loaded = Vec::new();
    let mut functions = BTreeMap::new();
    for spec in &plan.functions {
        let (function, outcome) = runtime.load(spec.clone(), observer.clone())?;
        loaded.push(LoadReport {
            function: spec.id.clone(),
            outcome,
        });
        functions.insert(spec.id.clone(), function);
    }
    let manifest_path = plan.manifest.path.clone();
    let routes: Vec<RouteInfo> = plan
        .router
        .routes()
        .iter()
        .map(|r| RouteInfo {
            methods: r.methods.as_ref().map_or_else(
                || vec!["*".to_owned()],
                |m| m.iter().map(|m| m.as_str().to_owned()).collect(),
            ),
            route: r.pattern.as_str().to_owned(),
            function: match &r.target {
                RouteTarget::Function(f) => Some(f.clone()),
                RouteTarget::Static(_) => None,
            },
            static_dir: match &r.target {
                RouteTarget::Static(dir) => Some(dir.display().to_string()),
                RouteTarget::Function(_) => None,
            },
        })
        .collect();
    let router = plan.router.try_map(|pattern, target| match target {
        RouteTarget::Function(id) => match functions.get(&id) {
            Some(Function::Http(f)) => Ok(Handler::Function(f.clone())),
            Some(Function::Event(_)) => Err(anyhow::anyhow!(
                "route `{}` in `{}` names function `{id}`, which is an event function (it exports `updraft:platform/event-handler`); an HTTP route needs a `wasi:http` component, and event functions run from `[[trigger.queue]]`",
                pattern.as_str(),
                manifest_path.display()
            )),
            None => Err(anyhow::anyhow!(
                "route `{}` names unknown function `{id}`",
                pattern.as_str()
            )),
        },
        RouteTarget::Static(dir) => StaticSite::new(&dir)
            .map(|site| Handler::Static(Arc::new(site)))
            .with_context(|| {
                format!(
                    "route `{}` in `{}`",
                    pattern.as_str(),
                    manifest_path.display()
                )
            }),
    })?;

    let listener = TcpListener::bind(options.listen).await.with_context(|| {
        format!(
            "cannot listen on `{}`; pick another address with `--listen`",
            options.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    // Declared queues and subscriptions; triggers add queues of their own (cron runs).
    let mut queues = stores.queues.clone();
    let platform_queue = |name: &str| stores.internal_queue(name);
    plan.triggers.start(&mut StartContext {
        app: &plan.manifest,
        functions: &functions,
        queues: &mut queues,
        platform_queue: &platform_queue,
        schedules: stores.schedules.clone(),
        claimant: format!("{}:{}", addr, std::process::id()),
        stop: stop_rx.clone(),
    })?;
    let runner = async_jobs::AsyncRunner {
        jobs: stores.async_jobs.clone(),
        queue: stores.async_queue.clone(),
        functions: Arc::new(functions.clone()),
        completion_topic: plan
            .manifest
            .manifest
            .async_
            .completion_topic
            .as_ref()
            .and_then(|t| stores.topics.get(t).cloned()),
    };
    async_jobs::spawn(runner, stop_rx.clone());
    spawn_retention(stores.clone(), stop_rx.clone());
    let state = Arc::new(NodeState {
        router,
        runtime,
        max_body: options.max_body,
        local_addr: addr,
        ready: AtomicBool::new(true),
        app_name: plan.manifest.manifest.app.name.clone(),
        functions,
        queues,
        topics: stores.topics.clone(),
        async_jobs: stores.async_jobs.clone(),
        async_queue: stores.async_queue.clone(),
        callback_hosts: plan.manifest.manifest.async_.callback_hosts.clone(),
        routes: routes.clone(),
        records,
        triggers: plan.triggers.clone(),
        schedules: stores.schedules.clone(),
        admin_token: options.admin_token.clone(),
        admin_hosts: options
            .admin_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        admin: admin::router(),
    });
    let done = tokio::spawn(async move {
        let drained = serve(listener, state, stop_rx, options.grace).await;
        // The node state (and with it every observer handle) is gone: flush the records.
        recorder_task.finish().await;
        drained
    });
    Ok(RunningNode {
        addr,
        loaded,
        routes,
        stop,
        done,
    })
}

async fn serve(
    listener: TcpListener,
    state: Arc<NodeState>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> bool {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(DEFAULT_MAX_HEADERS)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .max_header_list_size(u32::try_from(DEFAULT_MAX_HEADERS).unwrap_or(u32::MAX));
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(state.handle(req, peer).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!("connection from {peer} ended: {err}");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    state.ready.store(false, Ordering::Relaxed);
    drop(listener);
    let deadline = Instant::now() + grace;
    tracing::info!("draining: finishing in-flight requests (grace {grace:?})");
    let closed = tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_ok();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let drained = state.runtime.drain(remaining).await;
    if !(closed && drained) {
        tracing::warn!(
            "grace period of {grace:?} ended with {} invocations still running; they are cut off",
            state.runtime.in_flight()
        );
    }
    closed && drained
}

impl NodeState {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if path
            .strip_prefix(RESERVED_PREFIX)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        {
            return admin::handle(self.clone(), req).await;
        }
        let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
        let mut response = match self.router.lookup(req.method(), &path) {
            Lookup::Found(m) => {
                let handler = m.route.target.clone();
                let route = m.route.pattern.as_str().to_owned();
                match handler {
                    Handler::Static(site) => site.serve(req, &m.raw_path_info).await,
                    Handler::Function(f) => {
                        let headers = FunctionHeaders {
                            invocation_id: &id,
                            route: &route,
                            path_info: &m.path_info,
                            params: &m.params,
                            client_addr: Some(peer),
                        };
                        self.call(&f, req, &headers, id.clone()).await
                    }
                }
            }
            Lookup::MethodNotAllowed { allow } => {
                let allow_list = allow
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut r = error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!(
                        "`{}` does not accept {}; it accepts {allow_list}",
                        path,
                        req.method()
                    ),
                    Some(&id),
                );
                if let Ok(v) = HeaderValue::from_str(&allow_list) {
                    r.headers_mut().insert(header::ALLOW, v);
                }
                r
            }
            Lookup::NotFound => error_response(
                StatusCode::NOT_FOUND,
                &format!("no route matches `{} {path}`", req.method()),
                Some(&id),
            ),
        };
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(INVOCATION_ID, v);
        }
        response
    }

    /// Runs `function` for `req`, with the body limit and updraft's headers.
    pub(crate) async fn call<B>(
        &self,
        function: &HttpFunction,
        mut req: Request<B>,
        headers: &FunctionHeaders<'_>,
        id: Arc<str>,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<HttpError>,
    {
        if let Some(len) = content_length(&req)
            && len > self.max_body
        {
            discard(req.into_body(), self.max_body.saturating_mul(4));
            return self.too_large(&id);
        }
        headers.apply(req.headers_mut());
        if wants_async(req.headers()) {
            return self.submit_async(function, req, id).await;
        }
        if !req.headers().contains_key(header::HOST) {
            // HTTP/2 carries the host in `:authority`; HTTP/1.0 may carry none.
            let host = req
                .uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_else(|| self.local_addr.to_string());
            if let Ok(host) = HeaderValue::from_str(&host) {
                req.headers_mut().insert(header::HOST, host);
            }
        }
        let exceeded = Arc::new(AtomicBool::new(false));
        let req = req.map(|b| LimitedBody::new(b, self.max_body, exceeded.clone()));
        let result = function
            .handle(
                req,
                HttpInvocation {
                    id: id.clone(),
                    https: false,
                },
            )
            .await;
        if exceeded.load(Ordering::Relaxed) {
            return self.too_large(&id);
        }
        match result {
            Ok(response) => response.map(|body| {
                body.map_err(|code| -> BoxError {
                    format!("function body failed: {code:?}").into()
                })
                .boxed_unsync()
            }),
            Err(err) => invoke_error_response(&err, &id),
        }
    }

    /// Stores the request for the async worker and answers `202` with where to look.
    async fn submit_async<B>(
        &self,
        function: &HttpFunction,
        req: Request<B>,
        id: Arc<str>,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<HttpError>,
    {
        let (parts, mut body) = req.into_parts();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        if (bytes.len() + data.len()) as u64 > self.max_body {
                            return self.too_large(&id);
                        }
                        bytes.extend_from_slice(data);
                    }
                }
                // The body limit, or a client that went away.
                Err(_) => return self.too_large(&id),
            }
        }
        let body = bytes;
        let callback = parts
            .headers
            .get("callback-url")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(url) = &callback
            && !self.callback_allowed(url)
        {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "callback `{url}` is not allowed; add its `scheme://host:port` to `[async] callback_hosts` in updraft.toml"
                ),
                Some(&id),
            );
        }
        let job = updraft_store::AsyncJob {
            id: id.to_string(),
            function: function.id().to_owned(),
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            headers: parts
                .headers
                .iter()
                .filter(|(k, _)| *k != "prefer" && *k != "callback-url")
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body,
            callback,
            ..updraft_store::AsyncJob::default()
        };
        if let Err(e) = self
            .async_jobs
            .submit(job, async_jobs::QUEUE, updraft_runtime::now_us())
            .await
        {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot store the async invocation: {e}"),
                Some(&id),
            );
        }
        self.async_queue.notify.notify_waiters();
        let status_url = format!("/_updraft/api/v1/async/{id}");
        let body = serde_json::json!({ "invocation_id": &*id, "status": "queued", "status_url": status_url });
        let mut response = Response::new(updraft_gateway::full(body.to_string()));
        *response.status_mut() = StatusCode::ACCEPTED;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
        if let Ok(v) = HeaderValue::from_str(&status_url) {
            headers.insert(header::LOCATION, v);
        }
        response
    }

    fn callback_allowed(&self, url: &str) -> bool {
        let Ok(uri) = http::Uri::try_from(url) else {
            return false;
        };
        let scheme = uri.scheme_str().unwrap_or("");
        let (Some(host), Some(port)) = (
            uri.host(),
            uri.port_u16()
                .or_else(|| updraft_manifest::values::default_port(scheme)),
        ) else {
            return false;
        };
        self.callback_hosts
            .iter()
            .any(|h| h.allows(scheme, host, port))
    }

    fn too_large(&self, id: &str) -> Response<Body> {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "request body is over the limit of {} bytes; send a smaller body",
                self.max_body
            ),
            Some(id),
        )
    }
}

/// Reads and drops up to `cap` bytes of a refused body in the background, so a client that
/// is still sending gets to read the error answer instead of a broken pipe.
fn discard<B>(mut body: B, cap: u64)
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
{
    tokio::spawn(async move {
        let mut read = 0u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while read <= cap {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    });
}

/// `Prefer: respond-async` (RFC 7240).
fn wants_async(headers: &http::HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
        })
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn invoke_error_response(err: &InvokeError, id: &str) -> Response<Body> {
    let status = match err {
        InvokeError::AtCapacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
        InvokeError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        InvokeError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        InvokeError::MemoryLimit { .. } | InvokeError::Failed { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let mut response = error_response(status, &err.to_string(), Some(id));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Prunes what is past its retention a minute after start, then hourly, until `stop`.
fn spawn_retention(stores: AppStores, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut next = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.changed() => return,
            }
            let (pruned, errors) = stores.prune(updraft_runtime::now_us()).await;
            if pruned > 0 {
                tracing::info!("retention: pruned {pruned} expired rows");
            }
            for e in errors {
                tracing::warn!("retention: {e}");
            }
            next += Duration::from_secs(3600);
        }
    });
}
