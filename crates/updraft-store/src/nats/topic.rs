//! `TopicStore` on JetStream: a stream per topic, fanned out into subscription queues.
//!
//! * **Log.** Stream `updraft-<ns>-t-<topic>` (limits retention, 7 days, file storage,
//!   `duplicate_window` = the dedup window of the latest `publish`), subject
//!   `updraft.<ns>.t.<topic>`; a position is the stream sequence, and `appended_us` the
//!   server's timestamp of the entry (so `ReplayFrom::Time` and `appended_us` use one clock;
//!   `publish`'s `now_us` only stamps the queued copies). An entry carries the event like a
//!   queue message (length-prefixed JSON attributes, then the data).
//! * **Publish.** The event is appended with `Nats-Msg-Id` = a hash of its source and id,
//!   so JetStream stores one per source and id within the window. Then every accepting
//!   subscription's queue gets a copy with `Nats-Msg-Id` = `t:<topic stream>:<position>`,
//!   and only then does `publish` return. A publish retried after a failure part way (or a
//!   duplicate, which JetStream answers with the original's position) redoes the fan-out,
//!   which the queues' deduplication turns into "complete what is missing"; a duplicate still
//!   returns `None`. The difference from the embedded backend: append and fan-out are not
//!   one transaction, so if the publisher dies between them, the subscriptions get the event
//!   when the publish is retried (within the queues' dedup window, 10 min by default), not
//!   before; the caller saw no acknowledgement, so it retries (at-least-once).
//! * **Read and replay** walk the stream with a short-lived ephemeral consumer from a
//!   position or a time, in batches, bounded by what was pending when they started; a walk
//!   ends when the consumer has nothing more pending (entries that aged out while it walked
//!   are simply not there), and each batch must make progress within [`REQUEST_TIMEOUT`]
//!   (however long the whole walk takes). Replayed copies carry `Nats-Msg-Id` =
//!   `r:<replay id>:<position>` with a fresh id per replay, so a replay always enqueues, each
//!   entry once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType, Stream};
use async_trait::async_trait;
use futures::StreamExt;

use super::names::nonempty_token;
use super::queue::{Envelope, MSG_ID_HEADER, NatsQueues, decode, encode, hashed};
use super::{Inner, REQUEST_TIMEOUT, backend};
use crate::StoreError;
use crate::queue::{Event, NewMessage};
use crate::topic::{LogEntry, ReplayFrom, Subscription, TopicStore};

/// How long a topic's log is kept (DESIGN §9).
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Entries fetched per round trip when walking a log.
const BATCH: u64 = 256;
/// How often an empty batch is tried again while the consumer still counts entries, within
/// [`REQUEST_TIMEOUT`].
const EMPTY_BATCH_PAUSE: Duration = Duration::from_millis(50);

/// The topic streams this process has opened.
#[derive(Default)]
pub(crate) struct Registry {
    streams: Mutex<HashMap<String, (Stream, Duration)>>,
}

/// Durable topics on NATS JetStream (see the module doc).
#[derive(Clone)]
pub struct NatsTopics {
    inner: Arc<Inner>,
    queues: NatsQueues,
}

impl NatsTopics {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self {
            queues: NatsQueues::new(inner.clone()),
            inner,
        }
    }

    fn names(&self, topic: &str) -> Result<(String, String), StoreError> {
        let t = nonempty_token("topic", topic)?;
        Ok((
            self.inner.name(&format!("t-{t}")),
            self.inner.subject(&format!("t.{t}")),
        ))
    }

    /// The stream of `topic`, created on first use, with `dedup_window`.
    async fn stream(&self, topic: &str, dedup_window: Duration) -> Result<Stream, StoreError> {
        let cached = self
            .inner
            .topics
            .streams
            .lock()
            .ok()
            .and_then(|m| m.get(topic).cloned());
        if let Some((stream, window)) = cached
            && window == dedup_window
        {
            return Ok(stream);
        }
        let (name, subject) = self.names(topic)?;
        let failed =
            |e: &dyn std::fmt::Display| backend(format_args!("cannot open topic `{topic}`"), e);
        let config = stream::Config {
            name,
            subjects: vec![subject],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: self.inner.replicas,
            max_age: RETENTION,
            duplicate_window: dedup_window.min(RETENTION),
            allow_direct: true,
            ..Default::default()
        };
        let stream = self
            .inner
            .js
            .get_or_create_stream(config.clone())
            .await
            .map_err(|e| failed(&e))?;
        if stream.cached_info().config.duplicate_window != config.duplicate_window {
            let mut updated = stream.cached_info().config.clone();
            updated.duplicate_window = config.duplicate_window;
            self.inner
                .js
                .update_stream(updated)
                .await
                .map_err(|e| failed(&e))?;
        }
        if let Ok(mut m) = self.inner.topics.streams.lock() {
            m.insert(topic.to_owned(), (stream.clone(), dedup_window));
        }
        Ok(stream)
    }

    /// The stream of `topic` if it exists.
    async fn existing(&self, topic: &str) -> Result<Option<Stream>, StoreError> {
        if let Some((stream, _)) = self
            .inner
            .topics
            .streams
            .lock()
            .ok()
            .and_then(|m| m.get(topic).cloned())
        {
            return Ok(Some(stream));
        }
        let (name, _) = self.names(topic)?;
        match self.inner.js.get_stream(name).await {
            Ok(stream) => Ok(Some(stream)),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(backend(format_args!("cannot open topic `{topic}`"), e)),
            },
        }
    }

    /// Enqueues `event` (at `position`) for each of `subscriptions` that accepts it.
    async fn fan_out(
        &self,
        topic_stream: &str,
        position: u64,
        event: &Event,
        subscriptions: &[Subscription],
        now_us: i64,
    ) -> Result<(), StoreError> {
        for s in subscriptions.iter().filter(|s| s.accepts(event)) {
            let message = NewMessage {
                event: event.clone(),
                available_us: now_us,
                idempotency_key: None,
            };
            let msg_id = format!("t:{topic_stream}:{position}");
            self.queues
                .put(&s.queue, &[(message, Some(msg_id))], None, now_us)
                .await?;
        }
        Ok(())
    }
}

/// A walk through a topic's log with an ephemeral consumer, a batch at a time, bounded by
/// what was pending when it started; each batch must make progress within
/// [`REQUEST_TIMEOUT`].
struct Walk<'a> {
    topic: &'a str,
    stream: &'a Stream,
    consumer: PullConsumer,
    /// Most entries still to deliver (what was pending at the start, within the limit), so
    /// a walk never chases what is appended after it began.
    left: u64,
    /// The consumer reported nothing more pending.
    done: bool,
}

impl<'a> Walk<'a> {
    async fn start(
        topic: &'a str,
        stream: &'a Stream,
        from: DeliverPolicy,
        limit: u64,
    ) -> Result<Self, StoreError> {
        let mut consumer: PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: from,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| read_failed(topic, e))?;
        let pending = match consumer.info().await {
            Ok(info) => info.num_pending,
            Err(e) => {
                let walk = Self {
                    topic,
                    stream,
                    consumer,
                    left: 0,
                    done: true,
                };
                walk.finish().await;
                return Err(read_failed(topic, e));
            }
        };
        let left = pending.min(limit);
        Ok(Self {
            topic,
            stream,
            consumer,
            left,
            done: left == 0,
        })
    }

    /// The next entries; `None` at the end.
    async fn next(&mut self) -> Result<Option<Vec<LogEntry>>, StoreError> {
        let topic = self.topic;
        if self.done || self.left == 0 {
            return Ok(None);
        }
        let want = self.left.min(BATCH) as usize;
        let started = Instant::now();
        for _ in 0..=(REQUEST_TIMEOUT.as_millis() / EMPTY_BATCH_PAUSE.as_millis()) {
            let (entries, got, last_pending) = self.batch(want).await?;
            if got > 0 {
                self.left = self.left.saturating_sub(got);
                self.done = last_pending == Some(0);
                return Ok(Some(entries));
            }
            // Nothing came: the end of the log (entries counted at the start may have aged
            // out since), unless the consumer still counts some.
            let pending = self
                .consumer
                .info()
                .await
                .map_err(|e| read_failed(topic, e))?
                .num_pending;
            if pending == 0 {
                self.done = true;
                return Ok(None);
            }
            if started.elapsed() >= REQUEST_TIMEOUT {
                return Err(read_failed(
                    topic,
                    format_args!(
                        "no entry came in {REQUEST_TIMEOUT:?} while the reader counted {pending} more"
                    ),
                ));
            }
            tokio::time::sleep(EMPTY_BATCH_PAUSE).await;
        }
        Err(read_failed(
            topic,
            format_args!("no entry came in {REQUEST_TIMEOUT:?}"),
        ))
    }

    /// One fetch of up to `want` entries, without waiting for entries that are not there:
    /// the entries updraft wrote, how many came, and how many the last one said were left.
    async fn batch(
        &mut self,
        want: usize,
    ) -> Result<(Vec<LogEntry>, u64, Option<u64>), StoreError> {
        let topic = self.topic;
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(want)
            .messages()
            .await
            .map_err(|e| read_failed(topic, e))?;
        let mut entries = Vec::with_capacity(want);
        let mut got = 0u64;
        let mut last_pending = None;
        for _ in 0..=want {
            let Some(m) = tokio::time::timeout(REQUEST_TIMEOUT, batch.next())
                .await
                .map_err(|_| read_failed(topic, "the server did not answer in time"))?
            else {
                break;
            };
            let m = m.map_err(|e| read_failed(topic, e))?;
            let info = m.info().map_err(|e| read_failed(topic, e))?;
            let (position, appended_us) = (info.stream_sequence, info.published.timestamp_micros());
            got += 1;
            last_pending = Some(info.pending);
            match decode::<Envelope>(&m.payload) {
                Some((envelope, data)) => entries.push(LogEntry {
                    position: i64::try_from(position).unwrap_or(i64::MAX),
                    appended_us,
                    event: envelope.event(data),
                }),
                None => {
                    tracing::warn!(
                        topic,
                        position,
                        "skipping a topic entry updraft did not write"
                    )
                }
            }
        }
        Ok((entries, got, last_pending))
    }

    /// Removes the consumer (it would expire by itself a minute later).
    async fn finish(self) {
        let name = self.consumer.cached_info().name.clone();
        if let Err(e) = self.stream.delete_consumer(&name).await {
            tracing::debug!(
                topic = self.topic,
                "cannot remove a reader of the topic (it expires): {e}"
            );
        }
    }
}

fn read_failed(topic: &str, e: impl std::fmt::Display) -> StoreError {
    backend(format_args!("cannot read topic `{topic}`"), e)
}

#[async_trait]
impl TopicStore for NatsTopics {
    async fn publish(
        &self,
        topic: &str,
        event: Event,
        subscriptions: &[Subscription],
        dedup_window_us: i64,
        now_us: i64,
    ) -> Result<Option<i64>, StoreError> {
        let window = Duration::from_micros(u64::try_from(dedup_window_us).unwrap_or(0).max(1000));
        let stream = self.stream(topic, window).await?;
        let stream_name = stream.cached_info().config.name.clone();
        let subject = stream
            .cached_info()
            .config
            .subjects
            .first()
            .cloned()
            .unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(
            MSG_ID_HEADER,
            hashed("e:", &[&event.source, &event.id]).as_str(),
        );
        let failed = |e: &dyn std::fmt::Display| {
            backend(format_args!("cannot publish to topic `{topic}`"), e)
        };
        let ack = self
            .inner
            .js
            .publish_with_headers(
                subject,
                headers,
                encode(&Envelope::new(&event, now_us), &event.data)?,
            )
            .await
            .map_err(|e| failed(&e))?
            .await
            .map_err(|e| failed(&e))?;
        // Also for a duplicate: completes a fan-out an earlier attempt may have cut short.
        self.fan_out(&stream_name, ack.sequence, &event, subscriptions, now_us)
            .await?;
        if ack.duplicate {
            return Ok(None);
        }
        Ok(Some(i64::try_from(ack.sequence).unwrap_or(i64::MAX)))
    }

    async fn read(&self, topic: &str, after: i64, limit: u32) -> Result<Vec<LogEntry>, StoreError> {
        let Some(stream) = self.existing(topic).await? else {
            return Ok(Vec::new());
        };
        let start = u64::try_from(after.saturating_add(1)).unwrap_or(1).max(1);
        let mut walk = Walk::start(
            topic,
            &stream,
            DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            u64::from(limit.clamp(1, 10_000)),
        )
        .await?;
        let mut out = Vec::new();
        let result = loop {
            match walk.next().await {
                Ok(Some(entries)) => out.extend(entries),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        walk.finish().await;
        result?;
        Ok(out)
    }

    async fn replay(
        &self,
        topic: &str,
        subscription: &Subscription,
        from: ReplayFrom,
        now_us: i64,
    ) -> Result<u64, StoreError> {
        let Some(stream) = self.existing(topic).await? else {
            return Ok(0);
        };
        let from = match from {
            ReplayFrom::Position(p) => DeliverPolicy::ByStartSequence {
                start_sequence: u64::try_from(p).unwrap_or(1).max(1),
            },
            ReplayFrom::Time(t) => DeliverPolicy::ByStartTime {
                start_time: chrono::DateTime::from_timestamp_micros(t).unwrap_or_default(),
            },
        };
        let mut walk = Walk::start(topic, &stream, from, u64::MAX).await?;
        // Each copy is deduplicated per replay, so a batch sent twice enqueues once.
        let replay_id = uuid::Uuid::now_v7().simple().to_string();
        let mut n = 0u64;
        let result = loop {
            let entries = match walk.next().await {
                Ok(Some(entries)) => entries,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let messages: Vec<(NewMessage, Option<String>)> = entries
                .into_iter()
                .filter(|e| subscription.accepts(&e.event))
                .map(|e| {
                    let msg_id = format!("r:{replay_id}:{}", e.position);
                    let message = NewMessage {
                        event: e.event,
                        available_us: now_us,
                        idempotency_key: None,
                    };
                    (message, Some(msg_id))
                })
                .collect();
            match self
                .queues
                .put(&subscription.queue, &messages, None, now_us)
                .await
            {
                Ok(stored) => n += u64::from(stored),
                Err(e) => break Err(e),
            }
        };
        walk.finish().await;
        result?;
        Ok(n)
    }
}
