//! Queues: depths, dead letters, redrive, and enqueueing CloudEvents from outside.

use super::*;

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
    /// Of `waiting`, leased to a worker now (on JetStream, also those backing off).
    pub in_flight: u64,
    /// When the oldest message not dead-lettered was enqueued, RFC 3339.
    pub oldest: Option<String>,
    /// Its age in seconds: how far behind the queue's workers are.
    pub oldest_age_s: Option<u64>,
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

pub(super) fn unknown_queue(name: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!(
            "queue `{name}` is not declared in this app; `GET /_updraft/api/v1/queues` lists the queues"
        ),
    )
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/queues", params(("app" = String, Path, description = "the app's name")), responses((status = 200, body = [QueueInfo])))]
pub(super) async fn queues(Extension(state): Extension<Arc<AppState>>) -> Response {
    match queue_infos(&state).await {
        Ok(out) => Json(out).into_response(),
        Err(e) => store_error(&e),
    }
}

/// Every queue (and topic subscription) of the app with its depths.
pub(crate) async fn queue_infos(state: &AppState) -> Result<Vec<QueueInfo>, StoreError> {
    let mut out = Vec::new();
    for (name, q) in &state.queues {
        let now = updraft_runtime::now_us();
        let d = q.store.depth(name, now).await?;
        out.push(QueueInfo {
            name: name.clone(),
            ready: d.ready,
            waiting: d.waiting,
            dead: d.dead,
            in_flight: d.in_flight,
            oldest: d.oldest_us.map(rfc3339),
            oldest_age_s: d
                .oldest_us
                .map(|t| u64::try_from((now - t) / 1_000_000).unwrap_or(0)),
        });
    }
    Ok(out)
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/queues/{name}/dead-letters", params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "queue name")),
    responses((status = 200, body = [DeadLetterInfo], description = "oldest first"), (status = 404, body = ApiError)))]
pub(super) async fn dead_letters(
    Extension(state): Extension<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    match dead_letter_infos(&state, &name).await {
        Ok(Some(dead)) => Json(dead).into_response(),
        Ok(None) => unknown_queue(&name),
        Err(e) => store_error(&e),
    }
}

/// The dead letters of queue `name`, oldest first; `None` when the app has no such queue.
pub(crate) async fn dead_letter_infos(
    state: &AppState,
    name: &str,
) -> Result<Option<Vec<DeadLetterInfo>>, StoreError> {
    let Some(q) = state.queues.get(name) else {
        return Ok(None);
    };
    let rows = q.store.dead_letters(name, 1000).await?;
    Ok(Some(
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
            .collect(),
    ))
}

/// Which dead letters to redrive or delete.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RedriveParams {
    /// One message id; without it, all of them.
    pub id: Option<String>,
}

#[utoipa::path(post, path = "/_updraft/api/v1/apps/{app}/queues/{name}/redrive", params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "queue name"), RedriveParams),
    responses((status = 200, body = Redriven), (status = 404, body = ApiError)))]
pub(super) async fn redrive(
    Extension(state): Extension<Arc<AppState>>,
    Path(name): Path<String>,
    Query(p): Query<RedriveParams>,
) -> Response {
    match act_on_dead_letters(&state, &name, p.id, DeadLetterAction::Redrive).await {
        Ok(Some(n)) => Json(Redriven { redriven: n }).into_response(),
        Ok(None) => unknown_queue(&name),
        Err(e) => store_error(&e),
    }
}

/// What to do with dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadLetterAction {
    /// Deliverable again with fresh attempts.
    Redrive,
    /// Gone for good.
    Delete,
}

/// Redrives or deletes the dead letters of queue `name` (or only message `id`); how many,
/// or `None` when the app has no such queue.
pub(crate) async fn act_on_dead_letters(
    state: &AppState,
    name: &str,
    id: Option<String>,
    action: DeadLetterAction,
) -> Result<Option<u32>, StoreError> {
    let Some(q) = state.queues.get(name) else {
        return Ok(None);
    };
    let ids = id.map(|id| vec![id]);
    let n = match action {
        DeadLetterAction::Redrive => {
            let n = q
                .store
                .redrive(name, ids, updraft_runtime::now_us())
                .await?;
            q.notify.notify_waiters();
            n
        }
        DeadLetterAction::Delete => q.store.delete_dead(name, ids).await?,
    };
    Ok(Some(n))
}

/// How many dead letters were deleted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedDeadLetters {
    /// Dead letters deleted.
    pub deleted: u32,
}

#[utoipa::path(delete, path = "/_updraft/api/v1/apps/{app}/queues/{name}/dead-letters", params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "queue name"), RedriveParams),
    responses((status = 200, body = DeletedDeadLetters), (status = 404, body = ApiError)))]
pub(super) async fn delete_dead_letters(
    Extension(state): Extension<Arc<AppState>>,
    Path(name): Path<String>,
    Query(p): Query<RedriveParams>,
) -> Response {
    match act_on_dead_letters(&state, &name, p.id, DeadLetterAction::Delete).await {
        Ok(Some(n)) => Json(DeletedDeadLetters { deleted: n }).into_response(),
        Ok(None) => unknown_queue(&name),
        Err(e) => store_error(&e),
    }
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

#[utoipa::path(post, path = "/_updraft/api/v1/apps/{app}/queues/{name}/messages", params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "queue name"), EnqueueParams),
    request_body(content = String, description = "CloudEvents 1.0: structured (`application/cloudevents+json`), batch (`application/cloudevents-batch+json`) or binary (`ce-*` headers, any body)"),
    responses((status = 202, body = Enqueued), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 413, body = ApiError)))]
pub(super) async fn enqueue(
    Extension(state): Extension<Arc<AppState>>,
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
        Err(e) => store_error(&e),
    }
}
