//! The admin API, `/_updraft/api/v1`: the apps a node hosts, and per app
//! (`/_updraft/api/v1/apps/<app>/…`) its functions and routes, invoke, invocation records
//! and logs, queues, topics, streams, buckets and async invocations, one module per resource. The CLI's
//! client commands use these types to read the answers. Its OpenAPI document is generated
//! from these handlers ([`ApiDoc`]) and checked in as `docs/openapi.json`.
//!
//! Handlers are registered on the unscoped paths and take the app from the request's
//! extensions; `admin::scope_to_app` resolves `apps/<app>` (or the only app, for the
//! unscoped aliases `updraft up` keeps) before routing. To add an endpoint: a handler in
//! its resource's module with `#[utoipa::path]` on the app-scoped path, one `.route` line
//! in `router`, and its name in [`ApiDoc`].

mod buckets;
mod functions;
mod invocations;
mod keys;
mod queues;
mod sql;
mod stats;
mod streams;
mod topics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use updraft_gateway::headers::FunctionHeaders;
use updraft_runtime::{EventFunction, Function, HttpError};
use updraft_store::{Event, StoreError};
use updraft_store::{InvocationQuery, InvocationRow, LogQuery, LogRow, ReplayFrom};
use updraft_triggers::{InfoContext, TriggerInfo};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::state::{AppState, NodeState};

pub use buckets::*;
pub use functions::*;
pub use invocations::*;
pub use keys::{CreatedKey, KeyInfo, NewKey};
pub(crate) use keys::{KEYS_NAMESPACE, KvKeys};
pub use queues::*;
pub use sql::*;
pub use stats::*;
pub use streams::*;
pub use topics::*;

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "updraft admin API",
        version = "1",
        description = "Functions, invocations, logs, queues, topics, buckets and async invocations of a running updraft node. Outside `updraft up` on loopback, send `Authorization: Bearer <token>`."
    ),
    paths(
        apps,
        app,
        functions,
        function,
        routes,
        keys::keys,
        keys::create_key,
        keys::revoke_key,
        invoke,
        invocations,
        invocation,
        logs,
        stats,
        sql_databases,
        sql_query,
        async_jobs,
        async_status,
        topics,
        publish,
        replay,
        streams::streams,
        streams::stream_dead_letters,
        streams::stream_replay,
        queues,
        enqueue,
        dead_letters,
        delete_dead_letters,
        redrive,
        buckets,
        list_objects,
        get_object,
        put_object,
        delete_object
    ),
    components(schemas(
        AppInfo,
        FunctionInfo,
        TriggerInfo,
        RouteInfo,
        RouteTargetInfo,
        NewKey,
        KeyInfo,
        CreatedKey,
        Invocation,
        InvocationDetail,
        LogLine,
        AsyncInvocation,
        AppStats,
        FunctionStats,
        MinuteStats,
        DatabaseInfo,
        TableSchema,
        ColumnSchema,
        QueryRequest,
        QueryResult,
        TopicInfo,
        SubscriptionInfo,
        Published,
        Replayed,
        StreamInfo,
        PartitionInfo,
        ConsumerInfo,
        ConsumerPartition,
        StreamDeadLetterInfo,
        StreamReplayed,
        QueueInfo,
        Enqueued,
        DeadLetterInfo,
        Redriven,
        DeletedDeadLetters,
        BucketInfo,
        ObjectInfo,
        ObjectList,
        ApiError
    ))
)]
pub struct ApiDoc;

/// An error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// What went wrong and what to do.
    pub error: String,
}

/// A store failure as the API answers it: 400 for what the caller sent, 409 for a lost
/// race, 503 with `Retry-After` while the backend is unreachable, else 500.
pub(crate) fn store_error(e: &StoreError) -> Response {
    let status = match e {
        StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = api_error(status, e.to_string());
    if e.is_transient() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    response
}

fn api_error(status: StatusCode, error: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: error.into(),
        }),
    )
        .into_response()
}

/// The running app.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppInfo {
    /// `[app] name`.
    pub name: String,
    /// How many functions it has.
    pub functions: usize,
    /// How many routes it serves.
    pub routes: usize,
}

fn rfc3339(us: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0));
    humantime::format_rfc3339_micros(t).to_string()
}

/// A replay's `since` (RFC 3339) in microseconds since the epoch, or why it is not one.
fn since_us(since: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(since)
        .map_err(|e| format!("`since` is not an RFC 3339 time like 2026-01-31T12:00:00Z: {e}"))?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(0))
        .unwrap_or(0))
}

/// The API routes, without auth (see [`require_token`]).
pub(crate) fn router() -> axum::Router {
    axum::Router::new()
        .route("/_updraft/api/v1/apps", get(apps))
        .route("/_updraft/api/v1/app", get(app))
        .route("/_updraft/api/v1/functions", get(functions))
        .route("/_updraft/api/v1/functions/{id}", get(function))
        .route("/_updraft/api/v1/functions/{id}/invoke", post(invoke))
        .route("/_updraft/api/v1/routes", get(routes))
        .route(
            "/_updraft/api/v1/keys",
            get(keys::keys).post(keys::create_key),
        )
        .route(
            "/_updraft/api/v1/keys/{id}",
            axum::routing::delete(keys::revoke_key),
        )
        .route("/_updraft/api/v1/invocations", get(invocations))
        .route("/_updraft/api/v1/invocations/{id}", get(invocation))
        .route("/_updraft/api/v1/logs", get(logs))
        .route("/_updraft/api/v1/stats", get(stats))
        .route("/_updraft/api/v1/sql", get(sql_databases))
        .route("/_updraft/api/v1/sql/{name}/query", post(sql_query))
        .route("/_updraft/api/v1/async", get(async_jobs))
        .route("/_updraft/api/v1/async/{id}", get(async_status))
        .route("/_updraft/api/v1/topics", get(topics))
        .route("/_updraft/api/v1/topics/{name}/events", post(publish))
        .route("/_updraft/api/v1/topics/{name}/replay", post(replay))
        .route("/_updraft/api/v1/streams", get(streams::streams))
        .route(
            "/_updraft/api/v1/streams/{name}/dead-letters",
            get(streams::stream_dead_letters),
        )
        .route(
            "/_updraft/api/v1/streams/{name}/replay",
            post(streams::stream_replay),
        )
        .route("/_updraft/api/v1/queues", get(queues))
        .route(
            "/_updraft/api/v1/queues/{name}/dead-letters",
            get(dead_letters).delete(delete_dead_letters),
        )
        .route("/_updraft/api/v1/queues/{name}/redrive", post(redrive))
        .route("/_updraft/api/v1/queues/{name}/messages", post(enqueue))
        .route("/_updraft/api/v1/buckets", get(buckets))
        .route("/_updraft/api/v1/buckets/{name}/objects", get(list_objects))
        .route(
            "/_updraft/api/v1/buckets/{name}/objects/{*object}",
            get(get_object).put(put_object).delete(delete_object),
        )
        .layer(axum::middleware::from_fn(require_token))
}

/// `Authorization: Bearer <token>` when the node has an admin token.
pub(crate) async fn require_token(
    Extension(state): Extension<Arc<NodeState>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.admin_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let signed_in = given.is_some_and(|given| crate::admin_token::matches(given, token))
            || crate::dashboard::has_session(req.headers(), token);
        if !signed_in && !req.uri().path().starts_with("/_updraft/api/") {
            // A dashboard page: to the sign-in form, and back here after it.
            let next = req
                .uri()
                .path_and_query()
                .map_or("/_updraft/", |p| p.as_str());
            let to = format!("/_updraft/login?next={}", url_encode(next));
            return axum::response::Redirect::to(&to).into_response();
        }
        if !signed_in {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "the admin API needs `Authorization: Bearer <token>`; the token is in `.updraft/admin-token` or `UPDRAFT_ADMIN_TOKEN` (CLI: set `UPDRAFT_TOKEN`)",
            );
        }
    }
    next.run(req).await
}

/// `text` as a query value.
pub(crate) fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps", responses((status = 200, body = [AppInfo])))]
async fn apps(Extension(node): Extension<Arc<NodeState>>) -> Json<Vec<AppInfo>> {
    Json(node.apps.values().map(|a| app_info(a)).collect())
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}", params(("app" = String, Path, description = "the app's name")),
    responses((status = 200, body = AppInfo), (status = 404, body = ApiError)))]
async fn app(Extension(state): Extension<Arc<AppState>>) -> Json<AppInfo> {
    Json(app_info(&state))
}

fn app_info(app: &AppState) -> AppInfo {
    AppInfo {
        name: app.name.clone(),
        functions: app.functions.len(),
        routes: app.router.routes().len(),
    }
}

/// The CloudEvents of a request body, checked against `destination`'s limits; the error
/// response otherwise.
async fn read_events(
    destination: &str,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Vec<updraft_store::Event>, Response> {
    let body = axum::body::to_bytes(body, 10 << 20).await.map_err(|e| {
        api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("cannot read the body: {e}"),
        )
    })?;
    let events = updraft_cloudevents::parse(headers, &body)
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.to_string()))?;
    for e in &events {
        if let Err(m) = updraft_runtime::host::messaging::check_event(e, destination) {
            let status = if e.ty.is_empty() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::PAYLOAD_TOO_LARGE
            };
            return Err(api_error(status, m));
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_answer_by_kind_and_transient_ones_say_when_to_retry() {
        for (e, status, retry) in [
            (StoreError::Invalid("k".into()), 400, false),
            (StoreError::Conflict("k".into()), 409, true),
            (StoreError::Unavailable("k".into()), 503, true),
            (StoreError::Backend("k".into()), 500, false),
        ] {
            let r = store_error(&e);
            assert_eq!(r.status().as_u16(), status, "{e:?}");
            assert_eq!(
                r.headers().contains_key(header::RETRY_AFTER),
                retry,
                "{e:?}"
            );
        }
    }

    /// The checked-in document must match the code; run with `UPDATE_OPENAPI=1` to rewrite it.
    #[test]
    fn openapi_document_is_checked_in_and_current() {
        let generated = ApiDoc::openapi().to_pretty_json().unwrap() + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json is out of date with the admin API; run `UPDATE_OPENAPI=1 cargo test -p updraft-server openapi` and commit it"
        );
    }
}
