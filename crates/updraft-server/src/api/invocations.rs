//! Invocation records, captured logs and async invocations' outcomes.

use updraft_store::AsyncJob;

use super::*;

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
    /// What it was asked: the HTTP method, path and query (`GET /items?page=2`), or the
    /// first event's type, id and source.
    pub request: Option<String>,
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
            request: r.request,
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

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/invocations", params(("app" = String, Path, description = "the app's name"), InvocationParams),
    responses((status = 200, body = [Invocation], description = "newest first")))]
pub(super) async fn invocations(
    Extension(state): Extension<Arc<AppState>>,
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
        Err(e) => store_error(&e),
    }
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/invocations/{id}", params(("app" = String, Path, description = "the app's name"), ("id" = String, Path, description = "invocation id")),
    responses((status = 200, body = InvocationDetail), (status = 404, body = ApiError)))]
pub(super) async fn invocation(
    Extension(state): Extension<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    match invocation_detail(&state, &id).await {
        Ok(Some(detail)) => Json(detail).into_response(),
        Ok(None) => api_error(StatusCode::NOT_FOUND, no_invocation(&id)),
        Err(e) => store_error(&e),
    }
}

/// What to say when invocation `id` has no record.
pub(crate) fn no_invocation(id: &str) -> String {
    format!(
        "no invocation `{id}` (records are written within a second of the end, and kept 7 days)"
    )
}

/// Invocation `id` with what it logged; `None` when there is no record of it.
pub(crate) async fn invocation_detail(
    state: &AppState,
    id: &str,
) -> Result<Option<InvocationDetail>, StoreError> {
    let Some(record) = state.records.invocation(id).await? else {
        return Ok(None);
    };
    let logs = state
        .records
        .logs(LogQuery {
            invocation: Some(id.to_owned()),
            limit: 10_000,
            ..LogQuery::default()
        })
        .await
        .unwrap_or_default();
    Ok(Some(InvocationDetail {
        invocation: record.into(),
        logs: logs.into_iter().map(LogLine::from).collect(),
    }))
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

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/logs", params(("app" = String, Path, description = "the app's name"), LogParams),
    responses((status = 200, body = [LogLine], description = "oldest first")))]
pub(super) async fn logs(
    Extension(state): Extension<Arc<AppState>>,
    Query(p): Query<LogParams>,
) -> Response {
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
        Err(e) => store_error(&e),
    }
}

/// An async invocation (`Prefer: respond-async`) as listed: its request and how it went,
/// without bodies (`GET async/<id>` has the answer).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AsyncInvocation {
    /// The invocation id the 202 gave.
    pub invocation_id: String,
    /// The function.
    pub function: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// The stored request's method.
    pub method: String,
    /// The stored request's path and query.
    pub path: String,
    /// When it was accepted, RFC 3339.
    pub created: String,
    /// When it finished, RFC 3339.
    pub finished: Option<String>,
    /// The status the function answered.
    pub response_status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
}

impl From<AsyncJob> for AsyncInvocation {
    fn from(j: AsyncJob) -> Self {
        Self {
            created: rfc3339(j.created_us),
            finished: j.finished_us.map(rfc3339),
            invocation_id: j.id,
            function: j.function,
            status: j.status,
            method: j.method,
            path: j.path,
            response_status: j.response_status,
            error: j.error,
        }
    }
}

/// Filters for async invocations.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AsyncParams {
    /// Only this function.
    pub function: Option<String>,
    /// At most this many (default 50, at most 1,000).
    pub limit: Option<u32>,
}

/// The newest async invocations of `state`'s app (of `function`, when given).
pub(crate) async fn async_invocations(
    state: &AppState,
    function: Option<&str>,
    limit: u32,
) -> Result<Vec<AsyncInvocation>, StoreError> {
    let jobs = state.async_jobs.recent(function, limit.min(1_000)).await?;
    Ok(jobs.into_iter().map(AsyncInvocation::from).collect())
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/async", params(("app" = String, Path, description = "the app's name"), AsyncParams),
    responses((status = 200, body = [AsyncInvocation], description = "newest first; results are kept 24 hours"), (status = 404, body = ApiError)))]
pub(super) async fn async_jobs(
    Extension(state): Extension<Arc<AppState>>,
    Query(p): Query<AsyncParams>,
) -> Response {
    if let Some(f) = &p.function
        && !state.functions.contains_key(f)
    {
        return unknown_function(f);
    }
    match async_invocations(&state, p.function.as_deref(), p.limit.unwrap_or(50)).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => store_error(&e),
    }
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/async/{id}", params(("app" = String, Path, description = "the app's name"), ("id" = String, Path, description = "invocation id from the 202")),
    responses((status = 200, description = "`{invocation_id, function, status: queued|running|succeeded|failed, created, finished, response: {status, headers, body}, error}`"), (status = 404, body = ApiError)))]
pub(super) async fn async_status(
    Extension(state): Extension<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    match state.async_jobs.get(&id).await {
        Ok(Some(job)) => Json(updraft_triggers::async_jobs::outcome_json(&job)).into_response(),
        Ok(None) => api_error(
            StatusCode::NOT_FOUND,
            format!("no async invocation `{id}` (results are kept 24 hours)"),
        ),
        Err(e) => store_error(&e),
    }
}
