//! The admin API, `/_updraft/api/v1`: functions and routes, invoke, invocation records and
//! logs. The CLI's client commands and the dashboard use it. Its OpenAPI document is
//! generated from these handlers ([`ApiDoc`]) and checked in as `docs/openapi.json`.

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
use updraft_store::Event;
use updraft_store::{InvocationQuery, InvocationRow, LogQuery, LogRow, ReplayFrom};
use updraft_triggers::{InfoContext, TriggerInfo};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::node::NodeState;

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "updraft admin API",
        version = "1",
        description = "Functions, invocations, logs, queues, topics and async invocations of a running updraft node. Outside `updraft up` on loopback, send `Authorization: Bearer <token>`."
    ),
    paths(
        app,
        functions,
        function,
        routes,
        invoke,
        invocations,
        invocation,
        logs,
        async_status,
        topics,
        publish,
        replay,
        queues,
        enqueue,
        dead_letters,
        redrive
    ),
    components(schemas(
        AppInfo,
        FunctionInfo,
        TriggerInfo,
        RouteInfo,
        Invocation,
        InvocationDetail,
        LogLine,
        TopicInfo,
        SubscriptionInfo,
        Published,
        Replayed,
        QueueInfo,
        Enqueued,
        DeadLetterInfo,
        Redriven,
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
#[derive(Debug, Serialize, ToSchema)]
pub struct AppInfo {
    /// `[app] name`.
    pub name: String,
    /// How many functions it has.
    pub functions: usize,
    /// How many routes it serves.
    pub routes: usize,
}

/// One route of the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteInfo {
    /// Methods it answers (`["*"]` for all).
    pub methods: Vec<String>,
    /// The pattern.
    pub route: String,
    /// The function that answers, if any.
    pub function: Option<String>,
    /// The static folder that answers, if any.
    pub static_dir: Option<String>,
}

/// One function.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionInfo {
    /// Its id.
    pub id: String,
    /// `http` (exports `wasi:http/incoming-handler`) or `event` (exports
    /// `updraft:platform/event-handler`).
    pub kind: String,
    /// The component file.
    pub source: String,
    /// Wall-clock limit per invocation, in milliseconds.
    pub timeout_ms: u64,
    /// Memory cap per instance, in bytes.
    pub memory_bytes: u64,
    /// Instances at once.
    pub max_concurrency: u32,
    /// kv stores it may open.
    pub kv: Vec<String>,
    /// sql databases it may open.
    pub sql: Vec<String>,
    /// Where it may send HTTP requests.
    pub allowed_outbound_hosts: Vec<String>,
    /// The routes it serves.
    pub routes: Vec<RouteInfo>,
    /// Every trigger that runs it: its routes, queues, topic subscriptions and cron
    /// schedules (with their last and next run).
    #[serde(default)]
    pub triggers: Vec<TriggerInfo>,
}

/// One finished invocation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Invocation {
    /// Its id (also the `updraft-invocation-id` header).
    pub id: String,
    /// The function.
    pub function: String,
    /// What triggered it (`http`).
    pub trigger: String,
    /// Start time, RFC 3339.
    pub started: String,
    /// First invocation since the component was loaded.
    pub cold: bool,
    /// Store creation plus instantiation, in microseconds.
    pub instantiate_us: i64,
    /// Whole invocation, in microseconds.
    pub duration_us: i64,
    /// `ok`, `error`, `timeout`, `memory_limit` or `rejected`.
    pub outcome: String,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// An invocation with what it logged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvocationDetail {
    /// The record.
    #[serde(flatten)]
    pub invocation: Invocation,
    /// Its output, oldest first.
    pub logs: Vec<LogLine>,
}

/// One line a function wrote.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Position; pass the last one as `after` to follow.
    pub seq: i64,
    /// Time, RFC 3339.
    pub time: String,
    /// The function.
    pub function: String,
    /// The invocation.
    pub invocation: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text.
    pub line: String,
}

fn rfc3339(us: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0));
    humantime::format_rfc3339_micros(t).to_string()
}

impl From<InvocationRow> for Invocation {
    fn from(r: InvocationRow) -> Self {
        Self {
            started: rfc3339(r.started_us),
            id: r.id,
            function: r.function,
            trigger: r.trigger,
            cold: r.cold,
            instantiate_us: r.instantiate_us,
            duration_us: r.duration_us,
            outcome: r.outcome,
            error: r.error,
        }
    }
}

impl From<LogRow> for LogLine {
    fn from(l: LogRow) -> Self {
        Self {
            seq: l.seq,
            time: rfc3339(l.time_us),
            function: l.function,
            invocation: l.invocation,
            stream: l.stream,
            line: l.line,
        }
    }
}

/// The API routes, without auth (see [`require_token`]).
pub(crate) fn router() -> axum::Router {
    axum::Router::new()
        .route("/_updraft/api/v1/app", get(app))
        .route("/_updraft/api/v1/functions", get(functions))
        .route("/_updraft/api/v1/functions/{id}", get(function))
        .route("/_updraft/api/v1/functions/{id}/invoke", post(invoke))
        .route("/_updraft/api/v1/routes", get(routes))
        .route("/_updraft/api/v1/invocations", get(invocations))
        .route("/_updraft/api/v1/invocations/{id}", get(invocation))
        .route("/_updraft/api/v1/logs", get(logs))
        .route("/_updraft/api/v1/async/{id}", get(async_status))
        .route("/_updraft/api/v1/topics", get(topics))
        .route("/_updraft/api/v1/topics/{name}/events", post(publish))
        .route("/_updraft/api/v1/topics/{name}/replay", post(replay))
        .route("/_updraft/api/v1/queues", get(queues))
        .route(
            "/_updraft/api/v1/queues/{name}/dead-letters",
            get(dead_letters),
        )
        .route("/_updraft/api/v1/queues/{name}/redrive", post(redrive))
        .route("/_updraft/api/v1/queues/{name}/messages", post(enqueue))
        .layer(axum::middleware::from_fn(require_token))
}

/// `Authorization: Bearer <token>` when the node has an admin token.
async fn require_token(
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
        if !given.is_some_and(|given| crate::admin_token::matches(given, token)) {
            return api_error(
                StatusCode::UNAUTHORIZED,
                "the admin API needs `Authorization: Bearer <token>`; the token is in `.updraft/admin-token` or `UPDRAFT_ADMIN_TOKEN` (CLI: set `UPDRAFT_TOKEN`)",
            );
        }
    }
    next.run(req).await
}

#[utoipa::path(get, path = "/_updraft/api/v1/app", responses((status = 200, body = AppInfo)))]
async fn app(Extension(state): Extension<Arc<NodeState>>) -> Json<AppInfo> {
    Json(AppInfo {
        name: state.app_name.clone(),
        functions: state.functions.len(),
        routes: state.routes.len(),
    })
}

/// What the API says about function `id`; `Ok(None)` when there is none.
async fn function_info(state: &NodeState, id: &str) -> Result<Option<FunctionInfo>, Response> {
    let Some(f) = state.functions.get(id) else {
        return Ok(None);
    };
    let node = InfoContext {
        schedules: &*state.schedules,
    };
    let triggers = state
        .triggers
        .info_for(id, &node)
        .await
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let spec = f.spec();
    Ok(Some(FunctionInfo {
        id: id.to_owned(),
        kind: f.kind().to_owned(),
        source: spec.source.display().to_string(),
        timeout_ms: u64::try_from(f.timeout().as_millis()).unwrap_or(u64::MAX),
        memory_bytes: spec.memory,
        max_concurrency: spec.max_concurrency,
        kv: spec
            .resources
            .allowed_kv()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        sql: spec
            .resources
            .allowed_sql()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        allowed_outbound_hosts: spec
            .allowed_outbound_hosts
            .iter()
            .map(|h| h.as_str().to_owned())
            .collect(),
        routes: state
            .routes
            .iter()
            .filter(|r| r.function.as_deref() == Some(id))
            .cloned()
            .collect(),
        triggers,
    }))
}

#[utoipa::path(get, path = "/_updraft/api/v1/functions", responses((status = 200, body = [FunctionInfo]), (status = 500, body = ApiError)))]
async fn functions(Extension(state): Extension<Arc<NodeState>>) -> Response {
    let mut all = Vec::new();
    for id in state.functions.keys() {
        match function_info(&state, id).await {
            Ok(Some(info)) => all.push(info),
            Ok(None) => {}
            Err(response) => return response,
        }
    }
    Json(all).into_response()
}

fn unknown_function(id: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!("function `{id}` does not exist in this app; `updraft ls` lists the functions"),
    )
}

#[utoipa::path(get, path = "/_updraft/api/v1/functions/{id}", params(("id" = String, Path, description = "function id")),
    responses((status = 200, body = FunctionInfo), (status = 404, body = ApiError), (status = 500, body = ApiError)))]
async fn function(Extension(state): Extension<Arc<NodeState>>, Path(id): Path<String>) -> Response {
    match function_info(&state, &id).await {
        Ok(Some(info)) => Json(info).into_response(),
        Ok(None) => unknown_function(&id),
        Err(response) => response,
    }
}

#[utoipa::path(get, path = "/_updraft/api/v1/routes", responses((status = 200, body = [RouteInfo])))]
async fn routes(Extension(state): Extension<Arc<NodeState>>) -> Json<Vec<RouteInfo>> {
    Json(state.routes.clone())
}

/// How to shape the request a function receives from `invoke`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct InvokeParams {
    /// HTTP method the function sees (default `POST`).
    pub method: Option<String>,
    /// Path and query the function sees (default `/`).
    pub path: Option<String>,
}

#[utoipa::path(post, path = "/_updraft/api/v1/functions/{id}/invoke",
    params(("id" = String, Path, description = "function id"), InvokeParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the request body the function receives"),
    responses((status = 200, description = "whatever the function answers, with `updraft-invocation-id`"), (status = 404, body = ApiError)))]
async fn invoke(
    Extension(state): Extension<Arc<NodeState>>,
    Path(id): Path<String>,
    Query(params): Query<InvokeParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let function = match state.functions.get(&id).cloned() {
        Some(Function::Http(f)) => f,
        Some(Function::Event(f)) => return invoke_event(&f, &headers, body).await,
        None => return unknown_function(&id),
    };
    let method = params
        .method
        .as_deref()
        .unwrap_or("POST")
        .to_ascii_uppercase();
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("`{method}` is not an HTTP method"),
        );
    };
    let path = params.path.unwrap_or_else(|| "/".to_owned());
    let Ok(uri) = http::Uri::try_from(path.as_str()) else {
        return api_error(StatusCode::BAD_REQUEST, format!("`{path}` is not a path"));
    };
    let mut req =
        http::Request::new(body.map_err(|e| HttpError::InternalError(Some(e.to_string()))));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::ACCEPT] {
        if let Some(v) = headers.get(&name) {
            req.headers_mut().insert(name, v.clone());
        }
    }
    let invocation_id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
    let fh = FunctionHeaders {
        invocation_id: &invocation_id,
        route: "(invoke)",
        path_info: "",
        params: &[],
        client_addr: None,
    };
    let mut response = state.call(&function, req, &fh, invocation_id.clone()).await;
    if let Ok(v) = http::HeaderValue::from_str(&invocation_id) {
        response
            .headers_mut()
            .insert(updraft_gateway::headers::INVOCATION_ID, v);
    }
    response.into_response()
}

/// Runs an event function on one event whose data is the request body.
async fn invoke_event(
    function: &EventFunction,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Response {
    let data = match axum::body::to_bytes(body, 10 << 20).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body: {e}"),
            );
        }
    };
    let id = uuid::Uuid::now_v7().to_string();
    let event = Event {
        id: id.clone(),
        source: "/_updraft/api/v1/invoke".to_owned(),
        ty: "updraft.invoke".to_owned(),
        datacontenttype: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        data,
        ..Event::default()
    };
    let result = function
        .invoke(vec![event], "invoke", Arc::from(id.as_str()))
        .await;
    let (status, body) = match result {
        Ok(()) => (
            StatusCode::OK,
            serde_json::json!({ "ok": true, "invocation_id": id }),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": e.to_string(), "invocation_id": id }),
        ),
    };
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(updraft_gateway::headers::INVOCATION_ID, v);
    }
    response
}

/// Filters for invocation records.
#[derive(Debug, Deserialize, IntoParams)]
pub struct InvocationParams {
    /// Only this function.
    pub function: Option<String>,
    /// Only records that started before this time (microseconds since the epoch), to page back.
    pub before_us: Option<i64>,
    /// At most this many (default 50).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/_updraft/api/v1/invocations", params(InvocationParams),
    responses((status = 200, body = [Invocation], description = "newest first")))]
async fn invocations(
    Extension(state): Extension<Arc<NodeState>>,
    Query(p): Query<InvocationParams>,
) -> Response {
    let query = InvocationQuery {
        function: p.function,
        before_us: p.before_us,
        limit: p.limit.unwrap_or(50),
    };
    match state.records.invocations(query).await {
        Ok(rows) => {
            Json(rows.into_iter().map(Invocation::from).collect::<Vec<_>>()).into_response()
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[utoipa::path(get, path = "/_updraft/api/v1/invocations/{id}", params(("id" = String, Path, description = "invocation id")),
    responses((status = 200, body = InvocationDetail), (status = 404, body = ApiError)))]
async fn invocation(
    Extension(state): Extension<Arc<NodeState>>,
    Path(id): Path<String>,
) -> Response {
    let record = match state.records.invocation(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return api_error(
                StatusCode::NOT_FOUND,
                format!(
                    "no invocation `{id}` (records are written within a second of the end, and kept 7 days)"
                ),
            );
        }
        Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let logs = state
        .records
        .logs(LogQuery {
            invocation: Some(id),
            limit: 10_000,
            ..LogQuery::default()
        })
        .await
        .unwrap_or_default();
    Json(InvocationDetail {
        invocation: record.into(),
        logs: logs.into_iter().map(LogLine::from).collect(),
    })
    .into_response()
}

/// Filters for log lines.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LogParams {
    /// Only this function.
    pub function: Option<String>,
    /// Only this invocation.
    pub invocation: Option<String>,
    /// Only lines after this `seq` (to follow); without it, the newest lines.
    pub after: Option<i64>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/_updraft/api/v1/logs", params(LogParams),
    responses((status = 200, body = [LogLine], description = "oldest first")))]
async fn logs(Extension(state): Extension<Arc<NodeState>>, Query(p): Query<LogParams>) -> Response {
    if let Some(f) = &p.function
        && !state.functions.contains_key(f)
    {
        return unknown_function(f);
    }
    let query = LogQuery {
        function: p.function,
        invocation: p.invocation,
        after: p.after,
        limit: p.limit.unwrap_or(100),
    };
    match state.records.logs(query).await {
        Ok(rows) => Json(rows.into_iter().map(LogLine::from).collect::<Vec<_>>()).into_response(),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A queue and how many messages it holds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueInfo {
    /// `[queue.<name>]`.
    pub name: String,
    /// Deliverable now.
    pub ready: u64,
    /// Leased, delayed or waiting for a retry.
    pub waiting: u64,
    /// Dead-lettered (`<name>.dlq`).
    pub dead: u64,
}

/// A message that used up its attempts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterInfo {
    /// The message id (pass it to redrive).
    pub id: String,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's data, as text (lossy).
    pub data: String,
    /// Deliveries made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it was dead-lettered, RFC 3339.
    pub dead_at: String,
}

/// How many dead letters went back to the queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Redriven {
    /// Messages made deliverable again.
    pub redriven: u32,
}

fn unknown_queue(name: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!(
            "queue `{name}` is not declared in this app; `GET /_updraft/api/v1/queues` lists the queues"
        ),
    )
}

#[utoipa::path(get, path = "/_updraft/api/v1/queues", responses((status = 200, body = [QueueInfo])))]
async fn queues(Extension(state): Extension<Arc<NodeState>>) -> Response {
    let mut out = Vec::new();
    for (name, q) in &state.queues {
        match q.store.depth(name, updraft_runtime::now_us()).await {
            Ok(d) => out.push(QueueInfo {
                name: name.clone(),
                ready: d.ready,
                waiting: d.waiting,
                dead: d.dead,
            }),
            Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    Json(out).into_response()
}

#[utoipa::path(get, path = "/_updraft/api/v1/queues/{name}/dead-letters", params(("name" = String, Path, description = "queue name")),
    responses((status = 200, body = [DeadLetterInfo], description = "oldest first"), (status = 404, body = ApiError)))]
async fn dead_letters(
    Extension(state): Extension<Arc<NodeState>>,
    Path(name): Path<String>,
) -> Response {
    let Some(q) = state.queues.get(&name) else {
        return unknown_queue(&name);
    };
    match q.store.dead_letters(&name, 1000).await {
        Ok(rows) => Json(
            rows.into_iter()
                .map(|d| DeadLetterInfo {
                    id: d.id,
                    event_id: d.event.id,
                    event_type: d.event.ty,
                    data: String::from_utf8_lossy(&d.event.data).into_owned(),
                    attempts: d.attempts,
                    last_error: d.last_error,
                    dead_at: rfc3339(d.dead_us),
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Which dead letters to redrive.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RedriveParams {
    /// One message id; without it, all of them.
    pub id: Option<String>,
}

#[utoipa::path(post, path = "/_updraft/api/v1/queues/{name}/redrive", params(("name" = String, Path, description = "queue name"), RedriveParams),
    responses((status = 200, body = Redriven), (status = 404, body = ApiError)))]
async fn redrive(
    Extension(state): Extension<Arc<NodeState>>,
    Path(name): Path<String>,
    Query(p): Query<RedriveParams>,
) -> Response {
    let Some(q) = state.queues.get(&name) else {
        return unknown_queue(&name);
    };
    match q
        .store
        .redrive(&name, p.id.map(|id| vec![id]), updraft_runtime::now_us())
        .await
    {
        Ok(n) => {
            q.notify.notify_waiters();
            Json(Redriven { redriven: n }).into_response()
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A topic and its subscriptions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopicInfo {
    /// `[topic.<name>]`.
    pub name: String,
    /// Its subscriptions.
    pub subscriptions: Vec<SubscriptionInfo>,
}

/// One subscription of a topic.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionInfo {
    /// The queue its deliveries and dead letters go through (`<topic>.<subscription>`).
    pub queue: String,
    /// Type filter: exact, or a prefix ending in `.`.
    pub r#type: Option<String>,
    /// Subject prefix filter.
    pub subject_prefix: Option<String>,
}

/// The outcome of a publish.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Published {
    /// Events stored.
    pub published: u32,
    /// Events skipped because their id was published within the dedup window.
    pub duplicates: u32,
    /// Log positions of the stored events.
    pub positions: Vec<i64>,
}

/// The outcome of a replay.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    /// Events enqueued again for the subscription.
    pub replayed: u64,
}

fn unknown_topic(name: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!(
            "topic `{name}` is not declared in this app; `GET /_updraft/api/v1/topics` lists the topics"
        ),
    )
}

#[utoipa::path(get, path = "/_updraft/api/v1/topics", responses((status = 200, body = [TopicInfo])))]
async fn topics(Extension(state): Extension<Arc<NodeState>>) -> Json<Vec<TopicInfo>> {
    Json(
        state
            .topics
            .values()
            .map(|t| TopicInfo {
                name: t.name.clone(),
                subscriptions: t
                    .subscriptions
                    .iter()
                    .map(|(s, _)| SubscriptionInfo {
                        queue: s.queue.clone(),
                        r#type: s.type_filter.clone(),
                        subject_prefix: s.subject_prefix.clone(),
                    })
                    .collect(),
            })
            .collect(),
    )
}

#[utoipa::path(post, path = "/_updraft/api/v1/topics/{name}/events", params(("name" = String, Path, description = "topic name")),
    request_body(content = String, description = "CloudEvents 1.0: structured (`application/cloudevents+json`), batch (`application/cloudevents-batch+json`) or binary (`ce-*` headers, any body)"),
    responses((status = 202, body = Published), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 413, body = ApiError)))]
async fn publish(
    Extension(state): Extension<Arc<NodeState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(topic) = state.topics.get(&name) else {
        return unknown_topic(&name);
    };
    let events = match read_events(&name, &headers, body).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let mut out = Published {
        published: 0,
        duplicates: 0,
        positions: Vec::new(),
    };
    for e in events {
        match topic.publish(e).await {
            Ok(Some(p)) => {
                out.published += 1;
                out.positions.push(p);
            }
            Ok(None) => out.duplicates += 1,
            Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    (StatusCode::ACCEPTED, Json(out)).into_response()
}

/// How enqueued messages are delivered.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EnqueueParams {
    /// Deliver no earlier than this long from now, e.g. `30s` or `5m`.
    pub delay: Option<String>,
}

/// What an enqueue stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Enqueued {
    /// Messages stored.
    pub enqueued: u32,
    /// Messages skipped because an event with the same source and id was enqueued within the
    /// dedup window (10 minutes).
    pub duplicates: u32,
}

#[utoipa::path(post, path = "/_updraft/api/v1/queues/{name}/messages", params(("name" = String, Path, description = "queue name"), EnqueueParams),
    request_body(content = String, description = "CloudEvents 1.0: structured (`application/cloudevents+json`), batch (`application/cloudevents-batch+json`) or binary (`ce-*` headers, any body)"),
    responses((status = 202, body = Enqueued), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 413, body = ApiError)))]
async fn enqueue(
    Extension(state): Extension<Arc<NodeState>>,
    Path(name): Path<String>,
    Query(p): Query<EnqueueParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(queue) = state.queues.get(&name) else {
        return unknown_queue(&name);
    };
    let delay_us = match p.delay.as_deref().map(humantime::parse_duration) {
        None => 0,
        Some(Ok(d)) => match updraft_runtime::host::messaging::check_delay(d) {
            Ok(us) => us,
            Err(m) => return api_error(StatusCode::BAD_REQUEST, m),
        },
        Some(Err(e)) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("`delay` is not a duration such as `30s` or `5m`: {e}"),
            );
        }
    };
    let events = match read_events(&name, &headers, body).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let now = updraft_runtime::now_us();
    let count = u32::try_from(events.len()).unwrap_or(u32::MAX);
    let messages = events
        .into_iter()
        .map(|event| updraft_store::NewMessage {
            // A client retrying the same CloudEvent (same source and id) enqueues it once.
            idempotency_key: Some(format!("{}\u{1f}{}", event.source, event.id)),
            event,
            available_us: now.saturating_add(delay_us),
        })
        .collect();
    match queue
        .store
        .enqueue(&name, messages, queue.dedup_window_us, now)
        .await
    {
        Ok(stored) => {
            queue.notify.notify_waiters();
            let out = Enqueued {
                enqueued: stored,
                duplicates: count.saturating_sub(stored),
            };
            (StatusCode::ACCEPTED, Json(out)).into_response()
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
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

/// Where a replay starts.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReplayParams {
    /// The subscription to replay into (its name, the part after `<topic>.`).
    pub subscription: String,
    /// Replay entries at or after this log position.
    pub from_position: Option<i64>,
    /// Replay entries appended at or after this time (RFC 3339).
    pub since: Option<String>,
}

#[utoipa::path(post, path = "/_updraft/api/v1/topics/{name}/replay", params(("name" = String, Path, description = "topic name"), ReplayParams),
    responses((status = 200, body = Replayed), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn replay(
    Extension(state): Extension<Arc<NodeState>>,
    Path(name): Path<String>,
    Query(p): Query<ReplayParams>,
) -> Response {
    let Some(topic) = state.topics.get(&name) else {
        return unknown_topic(&name);
    };
    let queue = updraft_triggers::topic::subscription_queue(&name, &p.subscription);
    let Some((subscription, notify)) = topic.subscriptions.iter().find(|(s, _)| s.queue == queue)
    else {
        return api_error(
            StatusCode::NOT_FOUND,
            format!(
                "topic `{name}` has no subscription `{}`; `GET /_updraft/api/v1/topics` lists them",
                p.subscription
            ),
        );
    };
    let from = match (p.from_position, &p.since) {
        (Some(pos), None) => ReplayFrom::Position(pos),
        (None, Some(since)) => match humantime::parse_rfc3339_weak(since) {
            Ok(t) => ReplayFrom::Time(
                t.duration_since(UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_micros()).unwrap_or(0))
                    .unwrap_or(0),
            ),
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    format!("`since` is not an RFC 3339 time like 2026-01-31T12:00:00Z: {e}"),
                );
            }
        },
        _ => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "give exactly one of `from_position` or `since`",
            );
        }
    };
    match topic
        .store
        .replay(&name, subscription, from, updraft_runtime::now_us())
        .await
    {
        Ok(n) => {
            notify.notify_waiters();
            Json(Replayed { replayed: n }).into_response()
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[utoipa::path(get, path = "/_updraft/api/v1/async/{id}", params(("id" = String, Path, description = "invocation id from the 202")),
    responses((status = 200, description = "`{invocation_id, function, status: queued|running|succeeded|failed, created, finished, response: {status, headers, body}, error}`"), (status = 404, body = ApiError)))]
async fn async_status(
    Extension(state): Extension<Arc<NodeState>>,
    Path(id): Path<String>,
) -> Response {
    match state.async_jobs.get(&id).await {
        Ok(Some(job)) => Json(updraft_triggers::async_jobs::outcome_json(&job)).into_response(),
        Ok(None) => api_error(
            StatusCode::NOT_FOUND,
            format!("no async invocation `{id}` (results are kept 24 hours)"),
        ),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
