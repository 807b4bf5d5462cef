//! The reserved `/_updraft/` endpoints: health, readiness, metrics, the OpenAPI document,
//! and the admin API (`api.rs`) under `/_updraft/api/v1`.

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

use crate::node::NodeState;

/// The reserved endpoints, built once per node. Handlers find the node's state in the
/// request's extensions (so the router holds no reference back to the node).
pub(crate) fn router() -> axum::Router {
    axum::Router::new()
        .merge(crate::api::router())
        .route("/_updraft/openapi.json", get(openapi))
        .route("/_updraft/healthz", get(healthz))
        .route("/_updraft/readyz", get(readyz))
        .route("/_updraft/metrics", get(metrics))
        .fallback(not_found)
}

pub(crate) async fn handle(state: Arc<NodeState>, mut req: Request<Incoming>) -> Response<Body> {
    let router = state.admin.clone();
    req.extensions_mut().insert(state);
    match router.oneshot(req).await {
        Ok(response) => response.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()),
        Err(never) => match never {},
    }
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
            Json(json!({ "status": "ready", "functions": state.functions.len() })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
    }
}

async fn metrics() -> impl IntoResponse {
    let text = crate::metrics::handle()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn not_found(req: axum::extract::Request) -> Response<Body> {
    error_response(
        StatusCode::NOT_FOUND,
        &format!(
            "`{}` is not an updraft endpoint; try /_updraft/healthz, /_updraft/readyz or /_updraft/metrics",
            req.uri().path()
        ),
        None,
    )
}
