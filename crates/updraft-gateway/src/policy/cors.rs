//! `[gateway.cors.<label>]`: CORS at the gateway (tower-http's `CorsLayer`). A preflight is
//! answered without running the target; an origin not on the list gets no
//! `Access-Control-Allow-Origin`, so the browser refuses the response.

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};
use updraft_manifest::gateway::CorsDecl;

/// Methods a preflight allows when neither the policy nor the route lists them.
const DEFAULT_METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The layer for a policy on a route answering `route_methods` (`None`: all).
pub fn layer(decl: &CorsDecl, route_methods: Option<&[Method]>) -> CorsLayer {
    let origins = if decl.origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            decl.origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    let methods: Vec<Method> = match (&decl.methods, route_methods) {
        (Some(list), _) => list
            .iter()
            .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
            .collect(),
        (None, Some(route)) => route.to_vec(),
        (None, None) => DEFAULT_METHODS.to_vec(),
    };
    let headers: Vec<HeaderName> = match &decl.headers {
        Some(list) => list
            .iter()
            .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            .collect(),
        None => vec![http::header::CONTENT_TYPE, http::header::AUTHORIZATION],
    };
    let mut layer = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(methods)
        .allow_headers(headers)
        .expose_headers(
            decl.expose_headers
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect::<Vec<_>>(),
        )
        .allow_credentials(decl.credentials);
    if let Some(age) = decl.max_age {
        layer = layer.max_age(age.0);
    }
    layer
}

/// Whether `req` is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. Returns the method it asks about.
pub fn preflight_method<B>(req: &http::Request<B>) -> Option<Method> {
    if req.method() != Method::OPTIONS || !req.headers().contains_key(http::header::ORIGIN) {
        return None;
    }
    let asked = req
        .headers()
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?
        .to_str()
        .ok()?;
    Method::from_bytes(asked.as_bytes()).ok()
}
