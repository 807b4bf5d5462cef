//! What a route puts in front of its target, as tower layers, and the one place that lists
//! them in order: [`stack`].
//!
//! Policies are declared once by label in `[gateway]` and named by routes
//! ([`Policies::route`]); limits keep their counters per label, so two routes naming one
//! limit share it. Targets are chosen by [`split`] and reached through [`upstream`] (or a
//! function or a static folder, which the server serves).
//!
//! To add a step (auth, validation): write its layer in a module here and add one line to
//! [`stack`] at its place in the order.

pub mod auth;
pub mod client_ip;
pub mod cors;
pub mod header_limit;
pub mod in_flight;
pub mod jwt;
pub mod limit;
pub mod quota;
pub mod rewrite;
pub mod split;
pub mod timeout;
pub mod upstream;
pub mod validate;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use tower::Layer;
use tower::util::{BoxCloneSyncService, MapRequestLayer, MapResponseLayer};
use tower_http::compression::{CompressionBody, CompressionLayer};
use tower_http::cors::CorsLayer;
use updraft_manifest::gateway::{AuthKind, GatewayRoute, Rewrite};

use crate::Body;
use auth::{AuthLayer, KeyStore};
use limit::{Limiter, RateLimitLayer};
use timeout::TimeoutLayer;
use upstream::{Upstream, UpstreamError};

/// Why the declared policies cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// An upstream.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A `[gateway.auth.<label>]`.
    #[error("`[gateway.auth.{label}]`: {why}")]
    Auth {
        /// The label.
        label: String,
        /// What is wrong.
        why: String,
    },
}

/// A boxed, sendable future.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// A route's service: its policies around its target.
pub type RouteService<B> = BoxCloneSyncService<Request<B>, Response<Body>, Infallible>;

/// What one route puts in front of its target.
#[derive(Clone, Default)]
pub struct RoutePolicies {
    /// The route's name, for messages.
    pub name: String,
    /// `cors = "<label>"`.
    pub cors: Option<CorsLayer>,
    /// `auth = ["<label>", …]`.
    pub auth: Option<AuthLayer>,
    /// `limit = "<label>"`.
    pub limit: Option<Arc<Limiter>>,
    /// `max_in_flight = N`.
    pub in_flight: Option<in_flight::InFlightLayer>,
    /// `timeout = "5s"`.
    pub timeout: Option<Duration>,
    /// `rewrite = { … }`.
    pub rewrite: Option<Rewrite>,
    /// `compress = true`.
    pub compress: bool,
    /// `max_headers = "16KiB"`, in bytes.
    pub max_headers: Option<u64>,
}

impl RoutePolicies {
    /// Whether the route has nothing in front of its target (so it needs no stack).
    pub fn is_empty(&self) -> bool {
        self.cors.is_none()
            && self.auth.is_none()
            && self.limit.is_none()
            && self.in_flight.is_none()
            && self.timeout.is_none()
            && self.rewrite.is_none()
            && !self.compress
            && self.max_headers.is_none()
    }
}

/// Wraps `target` in a route's policies. The order, outermost first:
/// 0. compression: every answer the client accepts compressed (gzip, br), refusals included;
/// 1. CORS: a preflight is answered here; every answer, a 429 included, carries the
///    allow headers, so a browser can read why it was refused;
/// 2. header limit: 431 when the request's headers are over the route's `max_headers`;
/// 3. auth: 401 without a valid credential, 403 when it may not call this route; the
///    identity goes on in the request's extensions;
/// 4. rate limit and daily quota (per client IP, API key or route): 429 before any work;
/// 5. in-flight cap: 503 at once when the route is at `max_in_flight`;
/// 6. timeout: 504 when what follows takes too long;
/// 7. rewrite: the path the target sees;
/// 8. then, at the target (which has the body limit and reads the body): `body_schema` and
///    `query_schema` ([`validate`]), 400 before any target runs.
pub fn stack<B>(policies: &RoutePolicies, target: RouteService<B>) -> RouteService<B>
where
    B: Send + 'static,
{
    let mut service = target;
    if let Some(rewrite) = policies.rewrite.clone() {
        service = BoxCloneSyncService::new(
            MapRequestLayer::new(move |mut req: Request<B>| {
                rewrite::apply(&rewrite, &mut req);
                req
            })
            .layer(service),
        );
    }
    if let Some(after) = policies.timeout {
        service = BoxCloneSyncService::new(
            TimeoutLayer {
                route: policies.name.clone(),
                after,
            }
            .layer(service),
        );
    }
    if let Some(cap) = &policies.in_flight {
        service = BoxCloneSyncService::new(cap.clone().layer(service));
    }
    if let Some(limiter) = &policies.limit {
        service = BoxCloneSyncService::new(RateLimitLayer(limiter.clone()).layer(service));
    }
    if let Some(auth) = &policies.auth {
        service = BoxCloneSyncService::new(auth.clone().layer(service));
    }
    if let Some(max) = policies.max_headers {
        let route: Arc<str> = policies.name.as_str().into();
        service = BoxCloneSyncService::new(
            GuardLayer(move |req: &Request<B>| header_limit::check(&route, max, req))
                .layer(service),
        );
    }
    if let Some(cors) = &policies.cors {
        service = BoxCloneSyncService::new(cors.clone().layer(service));
    }
    if policies.compress {
        service = BoxCloneSyncService::new(
            MapResponseLayer::new(|r: Response<CompressionBody<Body>>| {
                r.map(BodyExt::boxed_unsync)
            })
            .layer(CompressionLayer::new().gzip(true).br(true).layer(service)),
        );
    }
    service
}

/// A step that answers at once when its check refuses a request (a header limit), and
/// otherwise passes the request on untouched.
#[derive(Clone)]
pub struct GuardLayer<F>(pub F);

impl<S, F: Clone> Layer<S> for GuardLayer<F> {
    type Service = Guard<S, F>;
    fn layer(&self, inner: S) -> Guard<S, F> {
        Guard {
            inner,
            check: self.0.clone(),
        }
    }
}

/// A service behind a [`GuardLayer`].
#[derive(Clone)]
pub struct Guard<S, F> {
    inner: S,
    check: F,
}

impl<S, B, F> tower::Service<Request<B>> for Guard<S, F>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
    F: Fn(&Request<B>) -> Option<Response<Body>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match (self.check)(&req) {
            Some(refused) => Box::pin(std::future::ready(Ok(refused))),
            None => Box::pin(self.inner.call(req)),
        }
    }
}

/// Every policy and upstream `[gateway]` declares, ready for routes to name.
pub struct Policies {
    keys: Arc<dyn KeyStore>,
    jwts: BTreeMap<String, Arc<jwt::JwtVerifier>>,
    limits: BTreeMap<String, Arc<Limiter>>,
    cors: BTreeMap<String, updraft_manifest::gateway::CorsDecl>,
    upstreams: BTreeMap<String, Arc<Upstream>>,
}

impl Policies {
    /// Builds the declared policies; declared upstreams start their health checks (so this
    /// runs inside a tokio runtime).
    pub fn new(
        gateway: &updraft_manifest::Gateway,
        keys: Arc<dyn KeyStore>,
        quotas: Arc<dyn quota::QuotaStore>,
        app_dir: &std::path::Path,
    ) -> Result<Self, PolicyError> {
        Ok(Self {
            keys,
            jwts: gateway
                .auth
                .iter()
                .filter(|(_, decl)| decl.kind == AuthKind::Jwt)
                .map(|(label, decl)| {
                    jwt::JwtVerifier::new(label, decl, app_dir)
                        .map(|v| (label.clone(), Arc::new(v)))
                        .map_err(|why| PolicyError::Auth {
                            label: label.clone(),
                            why,
                        })
                })
                .collect::<Result<_, _>>()?,
            limits: gateway
                .limit
                .iter()
                .map(|(label, decl)| (label.clone(), Arc::new(Limiter::new(label, decl, &quotas))))
                .collect(),
            cors: gateway.cors.clone(),
            upstreams: gateway
                .upstream
                .iter()
                .map(|(label, decl)| Ok((label.clone(), Upstream::from_decl(label, decl)?)))
                .collect::<Result<_, UpstreamError>>()?,
        })
    }

    /// The policies `route` names (the manifest checked that they exist).
    pub fn route(&self, route: &GatewayRoute, methods: Option<&[Method]>) -> RoutePolicies {
        RoutePolicies {
            name: route.display_name().to_owned(),
            cors: route
                .cors
                .as_ref()
                .and_then(|label| self.cors.get(label))
                .map(|decl| cors::layer(decl, methods)),
            auth: (!route.auth.is_empty()).then(|| AuthLayer {
                route: route.display_name().to_owned(),
                keys: route
                    .auth
                    .iter()
                    .any(|label| !self.jwts.contains_key(label))
                    .then(|| self.keys.clone()),
                jwts: route
                    .auth
                    .iter()
                    .filter_map(|label| self.jwts.get(label).cloned())
                    .collect(),
            }),
            limit: route
                .limit
                .as_ref()
                .and_then(|label| self.limits.get(label).cloned()),
            in_flight: route
                .max_in_flight
                .map(|max| in_flight::InFlightLayer::new(route.display_name(), max)),
            timeout: route.timeout.map(|d| d.0),
            rewrite: route.rewrite.clone(),
            compress: route.compress,
            max_headers: route.max_headers.map(|max| max.0),
        }
    }

    /// Stores what the daily quotas counted (at a graceful stop; they also flush every
    /// [`quota::FLUSH_EVERY`]).
    pub async fn flush_quotas(&self) {
        for limiter in self.limits.values() {
            limiter.flush().await;
        }
    }

    /// The upstream a target names: a declared label, or a URL of its own.
    pub fn upstream(&self, name: &str) -> Result<Arc<Upstream>, UpstreamError> {
        match self.upstreams.get(name) {
            Some(u) => Ok(u.clone()),
            None => Upstream::from_url(name),
        }
    }
}
