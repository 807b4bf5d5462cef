//! Forwarding to an upstream HTTP service: round robin over its instances, an instance that
//! refuses connections or fails its health check taken out, one retry on another instance for
//! a bodiless idempotent request, `x-forwarded-*` set, bodies streamed both ways.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use updraft_manifest::gateway::UpstreamDecl;

use crate::{Body, BoxError, error_response, full};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// How long an instance that refused a connection stays out.
const PASSIVE_DOWN: Duration = Duration::from_secs(5);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Health checks run this often unless the upstream says.
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Why an upstream cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A URL does not parse.
    #[error("`{0}` is not an upstream URL; write \"http://host:port\" with an optional base path")]
    BadUrl(String),
    /// TLS could not be set up.
    #[error("cannot set up TLS for upstreams: {0}")]
    Tls(String),
}

/// One instance of an upstream.
#[derive(Debug)]
struct Instance {
    scheme: Scheme,
    authority: Authority,
    /// The URL's path without a trailing `/` (`""` for none).
    base_path: String,
    /// What the health check last said.
    healthy: AtomicBool,
    /// Out until this Unix time (ms), after a refused connection.
    down_until_ms: AtomicU64,
}

impl Instance {
    fn parse(url: &str) -> Result<Self, UpstreamError> {
        let bad = || UpstreamError::BadUrl(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let parts = uri.into_parts();
        Ok(Self {
            scheme: parts.scheme.ok_or_else(bad)?,
            authority: parts.authority.ok_or_else(bad)?,
            base_path: parts
                .path_and_query
                .map(|p| p.path().trim_end_matches('/').to_owned())
                .unwrap_or_default(),
            healthy: AtomicBool::new(true),
            down_until_ms: AtomicU64::new(0),
        })
    }

    fn available(&self, now_ms: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.down_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let pq = PathAndQuery::try_from(format!("{}{path_and_query}", self.base_path))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }

    fn name(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// An upstream service: a URL, or a `[gateway.upstream.<label>]`.
pub struct Upstream {
    name: String,
    instances: Vec<Instance>,
    next: AtomicUsize,
    client: Client<Https, Body>,
    health: Option<(String, Duration)>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish()
    }
}

/// How the client reached the gateway, for the `x-forwarded-*` headers.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The socket the request came from.
    pub peer: SocketAddr,
    /// Whether the peer is a trusted proxy, whose own `x-forwarded-for` is kept.
    pub peer_trusted: bool,
    /// `http` or `https`.
    pub proto: &'static str,
    /// What the route's auth verified (`updraft-key-id`, `updraft-claim-*`).
    pub identity: Vec<(HeaderName, HeaderValue)>,
}

impl Upstream {
    /// An upstream with one instance at `url`.
    pub fn from_url(url: &str) -> Result<Arc<Self>, UpstreamError> {
        Self::build(url.to_owned(), &[url.to_owned()], None)
    }

    /// A declared upstream; its health checks start when a runtime is running.
    pub fn from_decl(label: &str, decl: &UpstreamDecl) -> Result<Arc<Self>, UpstreamError> {
        let health = decl.health.as_ref().map(|path| {
            (
                path.clone(),
                decl.health_interval
                    .map_or(DEFAULT_HEALTH_INTERVAL, |d| d.0),
            )
        });
        let upstream = Self::build(label.to_owned(), &decl.urls, health)?;
        if upstream.health.is_some() {
            tokio::spawn(check_health(Arc::downgrade(&upstream)));
        }
        Ok(upstream)
    }

    fn build(
        name: String,
        urls: &[String],
        health: Option<(String, Duration)>,
    ) -> Result<Arc<Self>, UpstreamError> {
        let instances = urls
            .iter()
            .map(|u| Instance::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Self {
            name,
            instances,
            next: AtomicUsize::new(0),
            client: plain_client()?,
            health,
        }))
    }

    /// Its label or URL.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn pick(&self, avoid: Option<usize>) -> Option<usize> {
        let now = now_ms();
        let n = self.instances.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|i| Some(*i) != avoid && self.instances[*i].available(now))
    }

    /// Sends `req` (whose path the route may have rewritten) to an instance and streams the
    /// answer back; 502 when the instance fails, 503 when none is up.
    pub async fn forward<B>(&self, req: Request<B>, how: &Forwarded) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let Some(first) = self.pick(None) else {
            let mut r = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "every instance of upstream `{}` is down (refusing connections or failing its health check)",
                    self.name
                ),
                None,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        };
        let (mut parts, body) = req.into_parts();
        let retryable = is_idempotent(&parts.method) && body.is_end_stream();
        let original_host = parts.headers.get(header::HOST).cloned();
        prepare_headers(&mut parts.headers, how, original_host.as_ref());
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", PathAndQuery::as_str)
            .to_owned();
        let body: Body = body.map_err(Into::into).boxed_unsync();
        let mut attempt = self.send(first, &parts, body, &path).await;
        if let Err(e) = &attempt
            && retryable
            && e.is_connect()
            && let Some(second) = self.pick(Some(first))
        {
            attempt = self
                .send(second, &parts, full(bytes::Bytes::new()), &path)
                .await;
        }
        match attempt {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(
                    parts,
                    body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync(),
                )
            }
            Err(e) => error_response(
                StatusCode::BAD_GATEWAY,
                &format!("upstream `{}` failed: {}", self.name, describe(&e)),
                None,
            ),
        }
    }

    async fn send(
        &self,
        instance: usize,
        parts: &http::request::Parts,
        body: Body,
        path: &str,
    ) -> Result<Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        let target = &self.instances[instance];
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.headers_mut() = parts.headers.clone();
        match target.uri(path) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => *req.uri_mut() = Uri::from_static("/"),
        }
        let result = self.client.request(req).await;
        if let Err(e) = &result
            && e.is_connect()
        {
            tracing::warn!(upstream = %self.name, instance = %target.name(), "connection failed: {}; taking it out for {}s", describe(e), PASSIVE_DOWN.as_secs());
            target.down_until_ms.store(
                now_ms() + PASSIVE_DOWN.as_millis() as u64,
                Ordering::Relaxed,
            );
        }
        result
    }
}

/// Checks each instance's health path until the upstream is dropped.
async fn check_health(upstream: Weak<Upstream>) {
    loop {
        let Some(up) = upstream.upgrade() else { return };
        let Some((path, interval)) = up.health.clone() else {
            return;
        };
        for instance in &up.instances {
            let ok = match instance.uri(&path) {
                Ok(uri) => {
                    let req = Request::get(uri).body(full(bytes::Bytes::new()));
                    match req {
                        Ok(req) => matches!(
                            tokio::time::timeout(interval.min(CONNECT_TIMEOUT), up.client.request(req)).await,
                            Ok(Ok(r)) if r.status().is_success()
                        ),
                        Err(_) => false,
                    }
                }
                Err(_) => false,
            };
            if instance.healthy.swap(ok, Ordering::Relaxed) != ok {
                if ok {
                    tracing::info!(upstream = %up.name, instance = %instance.name(), "health check passes again; back in rotation");
                } else {
                    tracing::warn!(upstream = %up.name, instance = %instance.name(), "health check `{path}` failed; out of rotation");
                }
            }
        }
        drop(up);
        tokio::time::sleep(interval).await;
    }
}

/// A client for http and https (native roots), as upstreams and JWKS fetches use it.
pub(crate) fn plain_client() -> Result<Client<Https, Body>, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| UpstreamError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection, never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

fn prepare_headers(headers: &mut HeaderMap, how: &Forwarded, host: Option<&HeaderValue>) {
    strip_hop_by_hop(headers);
    crate::headers::strip_reserved(headers);
    let peer = how.peer.ip().to_string();
    let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(existing) if how.peer_trusted => format!("{existing}, {peer}"),
        _ => peer,
    };
    if let Ok(v) = HeaderValue::from_str(&chain) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(how.proto));
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host.clone());
    }
    for (name, value) in &how.identity {
        headers.insert(name.clone(), value.clone());
    }
    // The client sets `Host` from the upstream's URL.
    headers.remove(header::HOST);
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
