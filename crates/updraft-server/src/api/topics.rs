//! Topics: their subscriptions, publishing CloudEvents from outside, and replay.

use super::*;

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

pub(super) fn unknown_topic(name: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!(
            "topic `{name}` is not declared in this app; `GET /_updraft/api/v1/topics` lists the topics"
        ),
    )
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/topics", params(("app" = String, Path, description = "the app's name")), responses((status = 200, body = [TopicInfo])))]
pub(super) async fn topics(Extension(state): Extension<Arc<AppState>>) -> Json<Vec<TopicInfo>> {
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

#[utoipa::path(post, path = "/_updraft/api/v1/apps/{app}/topics/{name}/events", params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "topic name")),
    request_body(content = String, description = "CloudEvents 1.0: structured (`application/cloudevents+json`), batch (`application/cloudevents-batch+json`) or binary (`ce-*` headers, any body)"),
    responses((status = 202, body = Published), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 413, body = ApiError)))]
pub(super) async fn publish(
    Extension(state): Extension<Arc<AppState>>,
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
            Err(e) => return store_error(&e),
        }
    }
    (StatusCode::ACCEPTED, Json(out)).into_response()
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

#[utoipa::path(post, path = "/_updraft/api/v1/apps/{app}/topics/{name}/replay", params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "topic name"), ReplayParams),
    responses((status = 200, body = Replayed), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub(super) async fn replay(
    Extension(state): Extension<Arc<AppState>>,
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
        (None, Some(since)) => match since_us(since) {
            Ok(t) => ReplayFrom::Time(t),
            Err(e) => return api_error(StatusCode::BAD_REQUEST, e),
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
        Err(e) => store_error(&e),
    }
}
