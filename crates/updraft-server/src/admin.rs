//! The reserved `/_updraft/` endpoints: health, readiness, metrics, the OpenAPI document,
//! and the admin API (`api.rs`) under `/_updraft/api/v1`.
//!
//! A web page the user visits must not reach them: a request whose `Host` is a name other
//! than `localhost` or one given with `--admin-host` is refused (DNS rebinding: an IP
//! literal cannot be rebound), and so is a state-changing request whose `Origin` is not the
//! host it was sent to (CSRF). User routes match any host; these checks cover
//! `/_updraft/` only.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Extension;
use axum::Json;
use axum::response::IntoResponse;
use axum::routing::get;
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tower::ServiceExt;
use updraft_gateway::{Body, BoxError, error_response};

use crate::state::NodeState;

/// The reserved endpoints, built once per node. Handlers find the node's state in the
/// request's extensions (so the router holds no reference back to the node).
pub(crate) fn router() -> axum::Router {
    axum::Router::new()
        .merge(crate::api::router())
        .merge(crate::dashboard::router())
        .route("/_updraft/openapi.json", get(openapi))
        .route("/_updraft/healthz", get(healthz))
        .route("/_updraft/readyz", get(readyz))
        .route("/_updraft/metrics", get(metrics))
        .fallback(not_found)
}

pub(crate) async fn handle(state: Arc<NodeState>, mut req: Request<Incoming>) -> Response<Body> {
    if let Err(refused) = check_host_and_origin(&req, &state.admin_hosts) {
        return error_response(StatusCode::FORBIDDEN, &refused, None);
    }
    if let Err(unknown) = scope_to_app(&state, &mut req) {
        return error_response(StatusCode::NOT_FOUND, &unknown, None);
    }
    let router = state.admin.clone();
    req.extensions_mut().insert(state);
    match router.oneshot(req).await {
        Ok(response) => response.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()),
        Err(never) => match never {},
    }
}

/// The admin API is app-scoped: `/_updraft/api/v1/apps/<app>/<resource>` is served by the
/// handler of `/_updraft/api/v1/<resource>` with that app in the request's extensions;
/// `/_updraft/api/v1/apps/<app>` alone is its `app` summary. The unscoped paths are aliases
/// for the node's only app (as under `updraft up`).
/// Fails with what to ask instead when the path names no app on this node.
fn scope_to_app<B>(state: &NodeState, req: &mut Request<B>) -> Result<(), String> {
    const API: &str = "/_updraft/api/v1";
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(API) else {
        return Ok(()); // health, metrics, the OpenAPI document
    };
    let (app, resource) = match rest.strip_prefix("/apps/") {
        Some(scoped) => {
            let (name, resource) = scoped.split_once('/').unwrap_or((scoped, ""));
            let resource = if resource.is_empty() {
                "/app".to_owned()
            } else {
                format!("/{resource}")
            };
            let Some(app) = state.apps.get(name) else {
                return Err(format!(
                    "app `{name}` is not on this node; `GET {API}/apps` lists the apps it hosts"
                ));
            };
            (app.clone(), resource)
        }
        None if rest == "/apps" => return Ok(()),
        None => match state.only_app() {
            Some(app) => (app.clone(), rest.to_owned()),
            None => {
                return Err(format!(
                    "this node hosts several apps; name one: `{API}/apps/<app>{rest}`"
                ));
            }
        },
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{API}{resource}?{q}"),
        None => format!("{API}{resource}"),
    };
    if let Ok(uri) = http::Uri::try_from(path_and_query) {
        *req.uri_mut() = uri;
    }
    req.extensions_mut().insert(app);
    Ok(())
}

async fn openapi() -> impl IntoResponse {
    use utoipa::OpenApi;
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::api::ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_default(),
    )
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(Extension(state): Extension<Arc<NodeState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (
            StatusCode::OK,
            Json(json!({
                "status": "ready",
                "functions": state.apps.values().map(|a| a.functions.len()).sum::<usize>(),
            })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
    }
}

async fn metrics(Extension(state): Extension<Arc<NodeState>>) -> impl IntoResponse {
    // The recorder first: gauges set before it is installed would go nowhere.
    let handle = crate::metrics::handle();
    crate::metrics::engine(state.runtime.report(), state.runtime.live_instances());
    let text = handle.map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn not_found(req: axum::extract::Request) -> Response<Body> {
    error_response(
        StatusCode::NOT_FOUND,
        &format!(
            "`{}` is not an updraft endpoint; try /_updraft/ (the dashboard), /_updraft/healthz, /_updraft/readyz or /_updraft/metrics",
            req.uri().path()
        ),
        None,
    )
}

/// Refuses a request for a host name this node was not told about, and a state-changing
/// request from a page of another origin; says why and what to do.
fn check_host_and_origin<B>(req: &Request<B>, admin_hosts: &[String]) -> Result<(), String> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    if let Some(host) = &host
        && !host_allowed(host, admin_hosts)
    {
        return Err(format!(
            "`/_updraft/` answers requests for an IP address, `localhost` or a name given with `--admin-host`, not for `{host}`; if you reach updraft under that name, start it with `--admin-host {}`",
            host_name(host)
        ));
    }
    let changes_state = !matches!(
        *req.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    if changes_state && let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let same_origin = http::Uri::try_from(origin)
            .ok()
            .and_then(|u| u.authority().map(|a| a.as_str().to_ascii_lowercase()))
            .is_some_and(|authority| {
                host.as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(&authority))
                    || admin_hosts.contains(&host_name(&authority).to_owned())
            });
        if !same_origin {
            return Err(format!(
                "`/_updraft/` refuses state-changing requests from pages of other origins (`Origin: {origin}`); use the CLI or the dashboard served by this node"
            ));
        }
    }
    Ok(())
}

/// `host` without its port: `example.com:80` → `example.com`, `[::1]:80` → `[::1]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// An IP literal (cannot be rebound to another address), `localhost`, or a listed name.
fn host_allowed(host: &str, admin_hosts: &[String]) -> bool {
    let name = host_name(host).to_ascii_lowercase();
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    literal.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || admin_hosts.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: &str, method: &str, origin: Option<&str>, hosts: &[&str]) -> bool {
        let mut req = Request::builder()
            .method(method)
            .uri("/_updraft/api/v1/functions")
            .header(header::HOST, host);
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        check_host_and_origin(&req.body(()).unwrap(), &hosts).is_ok()
    }

    #[test]
    fn only_known_hosts_and_same_origin_writes_reach_the_admin_endpoints() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "10.0.0.5",
            "app.localhost:1",
        ] {
            assert!(check(ok, "GET", None, &[]), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "localhost.evil.example:80",
        ] {
            assert!(!check(bad, "GET", None, &[]), "{bad}");
        }
        assert!(check("ops.internal:8080", "GET", None, &["ops.internal"]));
        assert!(check(
            "localhost:8080",
            "POST",
            Some("http://localhost:8080"),
            &[]
        ));
        assert!(check("localhost:8080", "POST", None, &[]));
        assert!(!check(
            "localhost:8080",
            "POST",
            Some("http://evil.example"),
            &[]
        ));
        assert!(!check("localhost:8080", "POST", Some("null"), &[]));
        assert!(!check(
            "localhost:8080",
            "DELETE",
            Some("http://localhost:3000"),
            &[]
        ));
        assert!(check(
            "localhost:8080",
            "GET",
            Some("http://evil.example"),
            &[]
        ));
    }
}
