//! A running node: one listener, the gateway's route table, the runtime, and a graceful drain.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use updraft_gateway::policy::client_ip::TrustedProxies;
use updraft_gateway::policy::split::Split;
use updraft_gateway::policy::validate::RequestSchema;
use updraft_gateway::policy::{self, Policies};
use updraft_gateway::router::RESERVED_PREFIX;
use updraft_gateway::{Body, Route, StaticSite, error_response};
use updraft_runtime::{CacheOutcome, EngineSettings, Function, Observer, Runtime};
use updraft_triggers::{RouteSpec, RouteTarget, StartContext, async_jobs};

use crate::admin;
use crate::api::RouteInfo;
use crate::app::AppPlan;
use crate::recorder::Recorder;
use crate::state::{AppState, Handler, NodeState, Served};
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
    /// Serve HTTPS with this certificate chain and key (PEM files), instead of HTTP.
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, as PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate, then any intermediates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// A rustls acceptor offering HTTP/2 and HTTP/1.1; errors name the file and the fix.
    fn acceptor(&self) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .with_context(|| {
                format!(
                    "cannot read the TLS certificate `{}`; give `--tls-cert` a PEM file (certificate first, then intermediates)",
                    self.cert.display()
                )
            })?;
        if certs.is_empty() {
            anyhow::bail!(
                "`{}` holds no PEM certificate; give `--tls-cert` a PEM file",
                self.cert.display()
            );
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).with_context(|| {
            format!(
                "cannot read the TLS key `{}`; give `--tls-key` a PEM private key (PKCS#8, PKCS#1 or SEC1)",
                self.key.display()
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("cannot set up TLS")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .with_context(|| {
                format!(
                    "the TLS key `{}` does not fit the certificate `{}`",
                    self.key.display(),
                    self.cert.display()
                )
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
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
            tls: None,
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

/// A node that is serving. Drop it or call [`RunningNode::shutdown`] to stop.
pub struct RunningNode {
    /// The address the gateway listens on.
    pub addr: SocketAddr,
    /// How each function was loaded.
    pub loaded: Vec<LoadReport>,
    /// The routes, most specific first.
    pub routes: Vec<RouteInfo>,
    /// `https` under `--tls-cert`, else `http`.
    pub scheme: &'static str,
    /// The engine's allocator, limits and memory reset.
    pub engine: updraft_runtime::EngineReport,
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
    let records = stores.records.clone();
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
    let engine = runtime.report().clone();

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
    let keys = Arc::new(crate::api::KvKeys::new(
        stores.internal_kv(crate::api::KEYS_NAMESPACE),
    ));
    let quotas = Arc::new(crate::quotas::KvQuotas(
        stores.internal_kv(crate::quotas::QUOTAS_NAMESPACE),
    ));
    let policies = Policies::new(
        &plan.manifest.manifest.gateway,
        keys.clone(),
        quotas,
        &plan.manifest.dir,
    )
    .with_context(|| format!("`[gateway]` in `{}`", plan.manifest.path.display()))?;
    let router = plan.router.try_map(|route, spec| {
        serve_route(
            route,
            spec,
            &functions,
            &stores.streams,
            &policies,
            &plan.manifest.path,
        )
    })?;
    let routes: Vec<RouteInfo> = router
        .routes()
        .iter()
        .map(|r| r.target.info.clone())
        .collect();

    let tls = options.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
    let https = tls.is_some();
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
    let internal_kv = |name: &str| stores.internal_kv(name);
    plan.triggers.start(&mut StartContext {
        app: &plan.manifest,
        functions: &functions,
        queues: &mut queues,
        platform_queue: &platform_queue,
        internal_kv: &internal_kv,
        buckets: &stores.buckets,
        streams: &stores.streams,
        writers: stores.writers.clone(),
        schedules: stores.schedules.clone(),
        claimant: format!("{}:{}", addr, std::process::id()),
        stop: stop_rx.clone(),
    })?;
    updraft_triggers::ingest::start(&plan.manifest, &stores.streams, &stop_rx)?;
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
    let app = Arc::new(AppState {
        name: plan.manifest.manifest.app.name.clone(),
        router,
        trusted_proxies: TrustedProxies::new(&plan.manifest.manifest.gateway.trusted_proxies),
        access_log: plan.manifest.manifest.gateway.access_log,
        keys,
        max_body: options.max_body,
        local_addr: addr,
        https,
        functions,
        queues,
        topics: stores.topics.clone(),
        streams: stores.streams.clone(),
        buckets: stores.buckets.clone(),
        async_jobs: stores.async_jobs.clone(),
        async_queue: stores.async_queue.clone(),
        callback_hosts: plan.manifest.manifest.async_.callback_hosts.clone(),
        async_policies: plan
            .manifest
            .manifest
            .function
            .iter()
            .filter_map(|(id, f)| Some((id.clone(), f.async_policy()?)))
            .collect(),
        records,
        triggers: plan.triggers.clone(),
        schedules: stores.schedules.clone(),
        sql: stores.sql.clone(),
        dashboard: plan.manifest.manifest.dashboard.clone(),
    });
    let state = Arc::new(NodeState {
        runtime,
        ready: AtomicBool::new(true),
        admin_token: options.admin_token.clone(),
        admin_hosts: options
            .admin_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        admin: admin::router(),
        apps: BTreeMap::from([(app.name.clone(), app)]),
    });
    let access_log = plan
        .manifest
        .manifest
        .gateway
        .access_log
        .then(updraft_gateway::trace::spawn_access_log_flusher);
    let done = tokio::spawn(async move {
        let drained = serve(listener, state, tls, stop_rx, options.grace).await;
        policies.flush_quotas().await;
        if let Some(flusher) = access_log {
            flusher.abort();
            updraft_gateway::trace::flush_access_log();
        }
        // The node state (and with it every observer handle) is gone: flush the records.
        recorder_task.finish().await;
        drained
    });
    Ok(RunningNode {
        addr,
        loaded,
        routes,
        scheme: if https { "https" } else { "http" },
        engine,
        stop,
        done,
    })
}

/// A route of the plan as the node serves it: each target loaded, the split, and the
/// policies stacked in front.
fn serve_route(
    route: &Route<()>,
    spec: RouteSpec,
    functions: &BTreeMap<String, Function>,
    streams: &BTreeMap<String, Arc<updraft_runtime::StreamHandle>>,
    policies: &Policies,
    manifest_path: &std::path::Path,
) -> anyhow::Result<Arc<Served>> {
    let pattern = route.pattern.as_str();
    let info = RouteInfo::of(&route_with(route, &spec));
    let mut targets = Vec::new();
    let mut labels = Vec::new();
    for (target, _) in &spec.targets {
        labels.push(crate::api::target_label(target));
        targets.push(match target {
            RouteTarget::Function(id) => match functions.get(id) {
                Some(Function::Http(f)) => Handler::Function(f.clone()),
                Some(Function::Event(_)) => anyhow::bail!(
                    "route `{pattern}` in `{}` names function `{id}`, which is an event function (it exports `updraft:platform/event-handler`); an HTTP route needs a `wasi:http` component, and event functions run from `[[trigger.queue]]`",
                    manifest_path.display()
                ),
                None => anyhow::bail!("route `{pattern}` names unknown function `{id}`"),
            },
            RouteTarget::Dashboard => Handler::Dashboard,
            RouteTarget::Ingest { stream, ty } => match streams.get(stream) {
                Some(handle) => Handler::Ingest(Arc::new(crate::ingest::HttpIngest {
                    stream: handle.clone(),
                    ty: ty.clone(),
                    source: format!("/ingest{pattern}"),
                })),
                None => anyhow::bail!("route `{pattern}` names unknown stream `{stream}`"),
            },
            RouteTarget::Static(dir) => StaticSite::new(dir)
                .map(|site| Handler::Static(Arc::new(site)))
                .with_context(|| format!("route `{pattern}` in `{}`", manifest_path.display()))?,
            RouteTarget::Upstream(name) => Handler::Upstream(
                policies
                    .upstream(name)
                    .with_context(|| format!("route `{pattern}` in `{}`", manifest_path.display()))?,
            ),
        });
    }
    let gateway = spec.gateway.as_deref();
    let split = (targets.len() > 1).then(|| {
        let weights: Vec<u32> = spec.targets.iter().map(|(_, w)| *w).collect();
        Split::new(&weights, gateway.and_then(|g| g.sticky.as_ref()))
    });
    let route_policies = gateway.map(|g| policies.route(g, route.methods.as_deref()));
    let cors = route_policies.as_ref().is_some_and(|p| p.cors.is_some());
    let keyed = route_policies.as_ref().is_some_and(|p| p.auth.is_some());
    let schema = match gateway {
        Some(g) => RequestSchema::load(
            g.body_schema.as_deref(),
            g.query_schema.as_deref(),
            manifest_path.parent().unwrap_or(std::path::Path::new(".")),
        )
        .map_err(|why| {
            anyhow::anyhow!(
                "route `{}` in `{}`: {why}",
                g.display_name(),
                manifest_path.display()
            )
        })?
        .map(Arc::new),
        None => None,
    };
    let stack = route_policies
        .filter(|p| !p.is_empty())
        .map(|p| policy::stack(&p, crate::edge::target_service()));
    Ok(Arc::new(Served {
        name: gateway.map_or(pattern, |g| g.display_name()).to_owned(),
        gateway: gateway.is_some(),
        info,
        targets,
        labels,
        split,
        stack,
        cors,
        keyed,
        schema,
        max_body: gateway.and_then(|g| g.max_body).map(|b| b.0),
    }))
}

fn route_with<T: Clone>(route: &Route<()>, target: &T) -> Route<T> {
    Route::new(
        route.pattern.clone(),
        route.methods.clone(),
        target.clone(),
        route.index,
    )
    .with_host(route.host.clone())
    .with_headers(route.headers.clone())
}

impl NodeState {
    /// Sends a request to the reserved endpoints or to the app whose route it is.
    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path();
        if path
            .strip_prefix(RESERVED_PREFIX)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        {
            // An app checks this itself, answering with an invocation id.
            if let Err(why) = updraft_gateway::request::check(&req) {
                return error_response(StatusCode::BAD_REQUEST, &why, None);
            }
            return admin::handle(self.clone(), req).await;
        }
        match self.app_for_routes() {
            Some(app) => app.handle(req, peer).await,
            None => error_response(
                StatusCode::NOT_FOUND,
                &format!("no app on this node serves `{path}`"),
                None,
            ),
        }
    }
}

/// How long a client has to complete the TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

async fn serve(
    listener: TcpListener,
    state: Arc<NodeState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
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
                let node = state.clone();
                let service = hyper::service::service_fn(move |req| {
                    let node = node.clone();
                    async move { Ok::<_, Infallible>(node.handle(req, peer).await) }
                });
                let Some(tls) = tls.clone() else {
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(err) = conn.await {
                            tracing::debug!("connection from {peer} ended: {err}");
                        }
                    });
                    continue;
                };
                // The handshake runs in the connection's task, bounded, so a slow or silent
                // client never holds up the accept loop.
                let (builder, watcher) = (builder.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(TLS_HANDSHAKE, tls.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => return tracing::debug!("TLS handshake with {peer} failed: {err}"),
                        Err(_) => return tracing::debug!("TLS handshake with {peer} timed out"),
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    if let Err(err) = watcher.watch(conn.into_owned()).await {
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
