//! Streams: partitions with their extent, each consumer's checkpoint and lag per
//! partition, dead letters, and replay (moving a consumer's checkpoints back).

use updraft_runtime::StreamHandle;

use super::*;

/// A stream, its partitions and its consumers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamInfo {
    /// `[stream.<name>]`.
    pub name: String,
    /// How many partitions it has.
    pub partitions: u32,
    /// Events kept, over all partitions.
    pub events: u64,
    /// Bytes kept, over all partitions.
    pub bytes: u64,
    /// Each partition that has had an event.
    pub partition_states: Vec<PartitionInfo>,
    /// Each consumer (a `[[trigger.stream]]`) with its lag.
    pub consumers: Vec<ConsumerInfo>,
}

/// A partition's extent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartitionInfo {
    /// The partition.
    pub partition: u32,
    /// The oldest offset kept.
    pub first: u64,
    /// The offset the next event gets.
    pub next: u64,
    /// Bytes kept.
    pub bytes: u64,
}

/// A consumer of a stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsumerInfo {
    /// Its name (the function id unless the trigger names it).
    pub name: String,
    /// Events stored and not yet processed, over all partitions.
    pub lag: u64,
    /// Per partition: where it is and how far behind.
    pub partitions: Vec<ConsumerPartition>,
    /// Records it gave up on (kept 14 days).
    pub dead_letters: u64,
}

/// A consumer in one partition.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsumerPartition {
    /// The partition.
    pub partition: u32,
    /// The next offset it will process.
    pub next: u64,
    /// Events behind.
    pub lag: u64,
}

/// A record a consumer gave up on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamDeadLetterInfo {
    /// The consumer.
    pub consumer: String,
    /// Where the record is.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// The last error.
    pub error: String,
    /// When it was given up on (RFC 3339).
    pub dead_at: String,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's data, as text when it is UTF-8.
    pub data: String,
}

/// Where a replay starts; exactly one of `from_offset` and `since`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StreamReplayParams {
    /// The consumer to move back (the function id unless its trigger names it).
    pub consumer: String,
    /// Only this partition (default: all).
    pub partition: Option<u32>,
    /// Replay from this offset (in each partition replayed).
    pub from_offset: Option<u64>,
    /// Replay events stored at or after this time (RFC 3339).
    pub since: Option<String>,
}

/// What a replay moved.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamReplayed {
    /// Per partition: the offset the consumer goes on from.
    pub partitions: Vec<ConsumerPartition>,
    /// Events it will process again (or for the first time), over the partitions moved.
    pub events: u64,
}

fn unknown_stream(name: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!(
            "stream `{name}` is not declared in this app; `GET /_updraft/api/v1/streams` lists the streams"
        ),
    )
}

/// What the API says about one stream now.
pub(crate) async fn stream_info(stream: &StreamHandle) -> Result<StreamInfo, StoreError> {
    let parts = stream.store.partitions().await?;
    let checkpoints = stream.store.checkpoints().await?;
    let dead = stream.store.dead_letter_counts().await?;
    let next_of = |p: u32| {
        parts
            .iter()
            .find(|s| s.partition == p)
            .map_or(0, |s| s.next)
    };
    // Checkpoints come sorted by consumer, so each consumer's run is together.
    let mut consumers: Vec<ConsumerInfo> = Vec::new();
    for c in checkpoints {
        let lag = next_of(c.partition).saturating_sub(c.next);
        if consumers.last().is_none_or(|last| last.name != c.consumer) {
            consumers.push(ConsumerInfo {
                dead_letters: dead
                    .iter()
                    .find(|(consumer, _)| *consumer == c.consumer)
                    .map_or(0, |(_, n)| *n),
                name: c.consumer.clone(),
                lag: 0,
                partitions: Vec::new(),
            });
        }
        if let Some(entry) = consumers.last_mut() {
            entry.lag += lag;
            entry.partitions.push(ConsumerPartition {
                partition: c.partition,
                next: c.next,
                lag,
            });
        }
    }
    // Consumers with dead letters and no checkpoint: ingestion (`ingest.mqtt[0]`).
    for (name, n) in dead {
        if !consumers.iter().any(|c| c.name == name) {
            consumers.push(ConsumerInfo {
                name,
                lag: 0,
                partitions: Vec::new(),
                dead_letters: n,
            });
        }
    }
    Ok(StreamInfo {
        name: stream.name.clone(),
        partitions: stream.partitions,
        events: parts.iter().map(|p| p.next - p.first).sum(),
        bytes: parts.iter().map(|p| p.bytes).sum(),
        partition_states: parts
            .iter()
            .map(|p| PartitionInfo {
                partition: p.partition,
                first: p.first,
                next: p.next,
                bytes: p.bytes,
            })
            .collect(),
        consumers,
    })
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/streams", params(("app" = String, Path, description = "the app's name")), responses((status = 200, body = [StreamInfo])))]
pub(super) async fn streams(Extension(state): Extension<Arc<AppState>>) -> Response {
    let mut out = Vec::new();
    for stream in state.streams.values() {
        match stream_info(stream).await {
            Ok(info) => out.push(info),
            Err(e) => return store_error(&e),
        }
    }
    Json(out).into_response()
}

/// Which dead letters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StreamDeadLetterParams {
    /// Only this consumer's.
    pub consumer: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/streams/{name}/dead-letters", params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "stream name"), StreamDeadLetterParams),
    responses((status = 200, body = [StreamDeadLetterInfo]), (status = 404, body = ApiError)))]
pub(super) async fn stream_dead_letters(
    Extension(state): Extension<Arc<AppState>>,
    Path(name): Path<String>,
    Query(p): Query<StreamDeadLetterParams>,
) -> Response {
    let Some(stream) = state.streams.get(&name) else {
        return unknown_stream(&name);
    };
    let limit = p.limit.unwrap_or(100).min(10_000);
    match stream
        .store
        .dead_letters(p.consumer.as_deref(), limit)
        .await
    {
        Ok(list) => Json(
            list.into_iter()
                .map(|d| StreamDeadLetterInfo {
                    consumer: d.consumer,
                    partition: d.record.partition,
                    offset: d.record.offset,
                    error: d.error,
                    dead_at: rfc3339(d.dead_us),
                    event_id: d.record.event.id,
                    event_type: d.record.event.ty,
                    data: String::from_utf8_lossy(&d.record.event.data).into_owned(),
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(&e),
    }
}

#[utoipa::path(post, path = "/_updraft/api/v1/apps/{app}/streams/{name}/replay", params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "stream name"), StreamReplayParams),
    responses((status = 200, body = StreamReplayed), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub(super) async fn stream_replay(
    Extension(state): Extension<Arc<AppState>>,
    Path(name): Path<String>,
    Query(p): Query<StreamReplayParams>,
) -> Response {
    let Some(stream) = state.streams.get(&name) else {
        return unknown_stream(&name);
    };
    let since = match (p.from_offset, &p.since) {
        (Some(_), None) => None,
        (None, Some(since)) => match since_us(since) {
            Ok(t) => Some(t),
            Err(e) => return api_error(StatusCode::BAD_REQUEST, e),
        },
        _ => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "give exactly one of `from_offset` or `since`",
            );
        }
    };
    if let Some(partition) = p.partition
        && partition >= stream.partitions
    {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!(
                "stream `{name}` has partitions 0 to {}; `{partition}` is not one of them",
                stream.partitions - 1
            ),
        );
    }
    let checkpoints = match stream.store.checkpoints().await {
        Ok(c) => c,
        Err(e) => return store_error(&e),
    };
    if !checkpoints.iter().any(|c| c.consumer == p.consumer) {
        let mut known: Vec<&str> = checkpoints.iter().map(|c| c.consumer.as_str()).collect();
        known.dedup();
        return api_error(
            StatusCode::NOT_FOUND,
            format!(
                "stream `{name}` has no consumer `{}`{}; a consumer is a `[[trigger.stream]]`, named after its function unless it sets `consumer`",
                p.consumer,
                updraft_manifest::declared(known.iter())
            ),
        );
    }
    let parts = match stream.store.partitions().await {
        Ok(parts) => parts,
        Err(e) => return store_error(&e),
    };
    let mut out = StreamReplayed {
        partitions: Vec::new(),
        events: 0,
    };
    for part in parts
        .iter()
        .filter(|s| p.partition.is_none_or(|only| only == s.partition))
    {
        let from = match since {
            Some(t) => match stream.store.offset_at(part.partition, t).await {
                Ok(o) => o,
                Err(e) => return store_error(&e),
            },
            None => p.from_offset.unwrap_or(0),
        }
        .clamp(part.first, part.next);
        if let Err(e) = stream
            .store
            .set_checkpoint(&p.consumer, part.partition, from)
            .await
        {
            return store_error(&e);
        }
        out.events += part.next - from;
        out.partitions.push(ConsumerPartition {
            partition: part.partition,
            next: from,
            lag: part.next - from,
        });
    }
    // Idle partitions read their checkpoint again when woken.
    stream.notify.notify_waiters();
    Json(out).into_response()
}
