//! `StreamStore` on JetStream: a stream per partition, so a partition's offsets are its
//! stream's sequence numbers (offset = sequence − 1) and JetStream keeps them in order.
//!
//! * **Partitions.** `updraft-<ns>-s-<stream>-<p>`, subject `updraft.<ns>.s.<stream>.<p>`,
//!   limits retention with the stream's `retention` as `max_age` and `max_bytes` per
//!   partition (the server drops the oldest itself, so [`StreamStore::prune`] does nothing
//!   here), file storage, direct gets allowed. Created on the first append.
//! * **Append.** Each event is published to its partition with `Nats-Msg-Id` = a hash of
//!   its source and id, the publishes of one call pipelined and their acknowledgements
//!   awaited in order, so one call's events keep their order. Unlike the embedded backend a
//!   call is not one transaction: if it fails part way, the events acknowledged so far stay,
//!   and a retry of the whole call stores them once (within the 2-minute duplicate window).
//!   `appended_us` is the server's timestamp.
//! * **Read** fetches a batch in one round trip from an ephemeral consumer per partition
//!   (no acks, in memory, gone after a minute unused), kept while reads go on from where
//!   the last one ended and made anew when a read starts elsewhere (a replay, a retry);
//!   gaps left by the server's limits are skipped.
//! * **Checkpoints** are KV bucket `updraft-<ns>-s-<stream>-checkpoints`, key
//!   `<consumer>.<p>`; `commit` is a KV update on the revision it read.
//! * **Dead letters** go to `updraft-<ns>-s-<stream>-dlq` (14 days), a subject per consumer.
//! * **Claims**: a consumer's partition is processed by one node at a time; its claim is
//!   key `claim.<consumer>.<p>` of the checkpoint bucket (`{holder, until_us}`), taken or
//!   renewed with a KV update on the revision read, and free once `until_us` passed.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::kv::{Operation, UpdateErrorKind};
use async_nats::jetstream::stream::{
    self, DirectGetErrorKind, DiscardPolicy, RetentionPolicy, StorageType, Stream,
};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::names::{nonempty_token, token};
use super::queue::{Envelope, MSG_ID_HEADER, decode, encode, hashed};
use super::{Inner, REQUEST_TIMEOUT, backend};
use crate::StoreError;
use crate::queue::Event;
use crate::stream::{Checkpoint, PartitionState, StreamDeadLetter, StreamRecord, StreamStore};

/// How long dead letters are kept (DESIGN §9).
const DEAD_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);
/// How long a retried append is recognised as one.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A stream's layout on the server.
#[derive(Debug, Clone)]
pub struct NatsStreamConfig {
    /// How many partitions.
    pub partitions: u32,
    /// How long events are kept.
    pub retention: Duration,
    /// Most bytes per partition.
    pub max_bytes: u64,
}

/// One `[stream.<name>]` on JetStream (see the module doc).
pub struct NatsStream {
    inner: Arc<Inner>,
    name: String,
    token: String,
    config: NatsStreamConfig,
    parts: Vec<OnceCell<Stream>>,
    /// Per partition, the consumer reads go through and where it is.
    readers: Vec<tokio::sync::Mutex<Option<Reader>>>,
    checkpoints: OnceCell<async_nats::jetstream::kv::Store>,
    dead: OnceCell<Stream>,
}

/// An ephemeral consumer positioned at `next` (the offset its next message has, or a later
/// one when records were dropped).
struct Reader {
    next: u64,
    consumer: PullConsumer,
}

/// Who consumes a partition, until when.
#[derive(Serialize, Deserialize)]
struct Claim {
    holder: String,
    until_us: i64,
}

/// What a dead letter carries besides the event.
#[derive(Serialize, Deserialize)]
struct DeadEnvelope {
    consumer: String,
    partition: u32,
    offset: u64,
    appended_us: i64,
    error: String,
    dead_us: i64,
    event: Envelope,
}

impl NatsStream {
    pub(crate) fn new(
        inner: Arc<Inner>,
        name: &str,
        config: NatsStreamConfig,
    ) -> Result<Self, StoreError> {
        let token = nonempty_token("stream", name)?;
        Ok(Self {
            parts: (0..config.partitions).map(|_| OnceCell::new()).collect(),
            readers: (0..config.partitions)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            inner,
            name: name.to_owned(),
            token,
            config,
            checkpoints: OnceCell::new(),
            dead: OnceCell::new(),
        })
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        backend(format_args!("stream `{}`: cannot {what}", self.name), e)
    }

    fn partition_names(&self, p: u32) -> (String, String) {
        (
            self.inner.name(&format!("s-{}-{p}", self.token)),
            self.inner.subject(&format!("s.{}.{p}", self.token)),
        )
    }

    fn cell(&self, p: u32) -> Result<&OnceCell<Stream>, StoreError> {
        self.parts.get(p as usize).ok_or_else(|| {
            StoreError::Invalid(format!(
                "stream `{}` has {} partitions; {p} is not one",
                self.name, self.config.partitions
            ))
        })
    }

    /// Partition `p`'s stream, created when missing.
    async fn partition(&self, p: u32) -> Result<&Stream, StoreError> {
        self.cell(p)?
            .get_or_try_init(|| async {
                let (name, subject) = self.partition_names(p);
                self.inner
                    .js
                    .get_or_create_stream(stream::Config {
                        name,
                        subjects: vec![subject],
                        retention: RetentionPolicy::Limits,
                        discard: DiscardPolicy::Old,
                        storage: StorageType::File,
                        num_replicas: self.inner.replicas,
                        max_age: self.config.retention,
                        max_bytes: i64::try_from(self.config.max_bytes).unwrap_or(i64::MAX),
                        duplicate_window: DUPLICATE_WINDOW,
                        allow_direct: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| self.failed(&format!("open partition {p}"), e))
            })
            .await
    }

    /// Partition `p`'s stream if it exists (never creates one).
    async fn existing(&self, p: u32) -> Result<Option<Stream>, StoreError> {
        if let Some(s) = self.cell(p)?.get() {
            return Ok(Some(s.clone()));
        }
        let (name, _) = self.partition_names(p);
        match self.inner.js.get_stream(name).await {
            Ok(s) => Ok(Some(s)),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(self.failed(&format!("open partition {p}"), e)),
            },
        }
    }

    async fn checkpoint_bucket(&self) -> Result<&async_nats::jetstream::kv::Store, StoreError> {
        self.checkpoints
            .get_or_try_init(|| {
                self.inner.bucket(
                    self.inner.name(&format!("s-{}-checkpoints", self.token)),
                    Duration::ZERO,
                )
            })
            .await
    }

    async fn dead_stream(&self) -> Result<&Stream, StoreError> {
        self.dead
            .get_or_try_init(|| async {
                self.inner
                    .js
                    .get_or_create_stream(stream::Config {
                        name: self.inner.name(&format!("s-{}-dlq", self.token)),
                        subjects: vec![self.inner.subject(&format!("sdlq.{}.*", self.token))],
                        retention: RetentionPolicy::Limits,
                        storage: StorageType::File,
                        num_replicas: self.inner.replicas,
                        max_age: DEAD_RETENTION,
                        allow_direct: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| self.failed("open the dead letters", e))
            })
            .await
    }

    fn dead_subject(&self, consumer: &str) -> String {
        self.inner
            .subject(&format!("sdlq.{}.{}", self.token, token(consumer)))
    }

    /// The message at or after `sequence` in `stream`, if any.
    async fn next_at(
        &self,
        stream: &Stream,
        subject: &str,
        sequence: u64,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, StoreError> {
        match stream
            .direct_get_next_for_subject(subject, Some(sequence.max(1)))
            .await
        {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.failed("read", e)),
        }
    }

    /// A consumer of `stream` starting at offset `from`.
    async fn reader(&self, stream: &Stream, from: u64) -> Result<Reader, StoreError> {
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from + 1,
                },
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| self.failed("read", e))?;
        Ok(Reader {
            next: from,
            consumer,
        })
    }

    /// Up to `max` records from `reader`, without waiting for records that are not there.
    async fn fetch(
        &self,
        reader: &mut Reader,
        partition: u32,
        max: u32,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        use futures::StreamExt;
        let want = max.clamp(1, 10_000) as usize;
        let mut batch = reader
            .consumer
            .fetch()
            .max_messages(want)
            .messages()
            .await
            .map_err(|e| self.failed("read", e))?;
        let mut out = Vec::with_capacity(want);
        for _ in 0..=want {
            let Some(m) = tokio::time::timeout(REQUEST_TIMEOUT, batch.next())
                .await
                .map_err(|_| self.failed("read", "the server did not answer in time"))?
            else {
                break;
            };
            let m = m.map_err(|e| self.failed("read", e))?;
            let info = m.info().map_err(|e| self.failed("read", e))?;
            let (sequence, appended_us) = (info.stream_sequence, info.published.timestamp_micros());
            reader.next = sequence;
            let Some((envelope, data)) = decode::<Envelope>(&m.payload) else {
                tracing::warn!(stream = %self.name, partition, sequence, "skipping a record updraft did not write");
                continue;
            };
            out.push(StreamRecord {
                partition,
                offset: sequence - 1,
                appended_us,
                event: envelope.event(data),
            });
        }
        Ok(out)
    }

    fn key(consumer: &str, partition: u32) -> String {
        format!("{}.{partition}", token(consumer))
    }
}

fn micros(t: &chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

/// Reverses [`token`].
fn untoken(t: &str) -> String {
    let bytes = t.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_'
            && let Some(b) = t
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[async_trait]
impl StreamStore for NatsStream {
    async fn append(&self, events: Vec<(u32, Event)>, now_us: i64) -> Result<Vec<u64>, StoreError> {
        let mut acks = Vec::with_capacity(events.len());
        for (p, event) in &events {
            self.partition(*p).await?;
            let (_, subject) = self.partition_names(*p);
            let mut headers = HeaderMap::new();
            headers.insert(
                MSG_ID_HEADER,
                hashed("e:", &[&event.source, &event.id]).as_str(),
            );
            let ack = self
                .inner
                .js
                .publish_with_headers(
                    subject,
                    headers,
                    encode(&Envelope::new(event, now_us), &event.data)?,
                )
                .await
                .map_err(|e| self.failed("append", e))?;
            acks.push(ack);
        }
        let mut offsets = Vec::with_capacity(acks.len());
        for ack in acks {
            let ack = ack.await.map_err(|e| self.failed("append", e))?;
            offsets.push(ack.sequence.saturating_sub(1));
        }
        Ok(offsets)
    }

    async fn read(
        &self,
        partition: u32,
        from: u64,
        max: u32,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        let Some(stream) = self.existing(partition).await? else {
            return Ok(Vec::new());
        };
        let Some(slot) = self.readers.get(partition as usize) else {
            return Ok(Vec::new());
        };
        let mut slot = slot.lock().await;
        // A consumer the server dropped (unused for a minute) is made anew, once.
        for attempt in 0..2 {
            if slot.as_ref().is_none_or(|r| r.next != from) {
                if let Some(old) = slot.take() {
                    let _ = stream
                        .delete_consumer(&old.consumer.cached_info().name)
                        .await;
                }
                *slot = Some(self.reader(&stream, from).await?);
            }
            let Some(reader) = slot.as_mut() else {
                continue;
            };
            match self.fetch(reader, partition, max).await {
                Ok(records) => return Ok(records),
                Err(e) if attempt == 0 => {
                    tracing::debug!(stream = %self.name, partition, "reader lost, making another: {e}");
                    *slot = None;
                }
                Err(e) => {
                    *slot = None;
                    return Err(e);
                }
            }
        }
        Ok(Vec::new())
    }

    async fn partitions(&self) -> Result<Vec<PartitionState>, StoreError> {
        let mut out = Vec::new();
        for p in 0..self.config.partitions {
            let Some(stream) = self.existing(p).await? else {
                continue;
            };
            let info = stream
                .get_info()
                .await
                .map_err(|e| self.failed(&format!("read partition {p}"), e))?;
            let state = info.state;
            if state.last_sequence == 0 {
                continue;
            }
            out.push(PartitionState {
                partition: p,
                first: if state.messages == 0 {
                    state.last_sequence
                } else {
                    state.first_sequence.saturating_sub(1)
                },
                next: state.last_sequence,
                bytes: state.bytes,
            });
        }
        Ok(out)
    }

    async fn offset_at(&self, partition: u32, time_us: i64) -> Result<u64, StoreError> {
        let Some(stream) = self.existing(partition).await? else {
            return Ok(0);
        };
        let (_, subject) = self.partition_names(partition);
        let info = stream
            .get_info()
            .await
            .map_err(|e| self.failed("read the partition", e))?;
        // Binary search over sequences by the time of the record at or after each.
        let (mut lo, mut hi) = (
            info.state.first_sequence.max(1),
            info.state.last_sequence + 1,
        );
        for _ in 0..64 {
            if lo >= hi {
                break;
            }
            let mid = lo + (hi - lo) / 2;
            match self.next_at(&stream, &subject, mid).await? {
                Some(m) if micros(&m.time) >= time_us => hi = mid,
                Some(m) => lo = m.sequence + 1,
                None => hi = mid,
            }
        }
        Ok(lo.saturating_sub(1).min(info.state.last_sequence))
    }

    async fn checkpoint(&self, consumer: &str, partition: u32) -> Result<Option<u64>, StoreError> {
        let bucket = self.checkpoint_bucket().await?;
        let entry = bucket
            .entry(Self::key(consumer, partition))
            .await
            .map_err(|e| self.failed("read a checkpoint", e))?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .and_then(|e| std::str::from_utf8(&e.value).ok()?.parse().ok()))
    }

    async fn commit(
        &self,
        consumer: &str,
        partition: u32,
        expected: Option<u64>,
        next: u64,
    ) -> Result<bool, StoreError> {
        let bucket = self.checkpoint_bucket().await?;
        let key = Self::key(consumer, partition);
        let entry = bucket
            .entry(key.as_str())
            .await
            .map_err(|e| self.failed("read a checkpoint", e))?;
        let (current, revision) = match entry {
            Some(e) if e.operation == Operation::Put => (
                std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok()),
                e.revision,
            ),
            Some(e) => (None, e.revision),
            None => (None, 0),
        };
        if current != expected {
            return Ok(false);
        }
        match bucket
            .update(key.as_str(), Bytes::from(next.to_string()), revision)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(self.failed("write a checkpoint", e)),
        }
    }

    async fn set_checkpoint(
        &self,
        consumer: &str,
        partition: u32,
        next: u64,
    ) -> Result<(), StoreError> {
        self.checkpoint_bucket()
            .await?
            .put(
                Self::key(consumer, partition),
                Bytes::from(next.to_string()),
            )
            .await
            .map(drop)
            .map_err(|e| self.failed("write a checkpoint", e))
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        use futures::StreamExt;
        let bucket = self.checkpoint_bucket().await?;
        let mut keys = match bucket.keys().await {
            Ok(k) => k,
            Err(e) => return Err(self.failed("list checkpoints", e)),
        };
        let mut out = Vec::new();
        // Bounded by the bucket's keys: one per consumer and partition.
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| self.failed("list checkpoints", e))?;
            if key.starts_with("claim.") {
                continue;
            }
            let Some((consumer, partition)) = key.rsplit_once('.') else {
                continue;
            };
            let (consumer, Ok(partition)) = (untoken(consumer), partition.parse::<u32>()) else {
                continue;
            };
            if let Some(next) = self.checkpoint(&consumer, partition).await? {
                out.push(Checkpoint {
                    consumer,
                    partition,
                    next,
                });
            }
        }
        out.sort_by(|a, b| (&a.consumer, a.partition).cmp(&(&b.consumer, b.partition)));
        Ok(out)
    }

    async fn dead_letter(
        &self,
        consumer: &str,
        record: &StreamRecord,
        error: &str,
        now_us: i64,
    ) -> Result<(), StoreError> {
        self.dead_stream().await?;
        let envelope = DeadEnvelope {
            consumer: consumer.to_owned(),
            partition: record.partition,
            offset: record.offset,
            appended_us: record.appended_us,
            error: error.to_owned(),
            dead_us: now_us,
            event: Envelope::new(&record.event, record.appended_us),
        };
        self.inner
            .js
            .publish(
                self.dead_subject(consumer),
                encode(&envelope, &record.event.data)?,
            )
            .await
            .map_err(|e| self.failed("dead-letter a record", e))?
            .await
            .map(drop)
            .map_err(|e| self.failed("dead-letter a record", e))
    }

    async fn dead_letters(
        &self,
        consumer: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StreamDeadLetter>, StoreError> {
        let stream = self.dead_stream().await?;
        let info = stream
            .get_info()
            .await
            .map_err(|e| self.failed("read the dead letters", e))?;
        let mut out = Vec::new();
        let mut sequence = info.state.last_sequence;
        let first = info.state.first_sequence.max(1);
        // Newest first, bounded by what the stream holds.
        while sequence >= first && out.len() < limit as usize {
            match stream.direct_get(sequence).await {
                Ok(m) => {
                    if let Some((d, data)) = decode::<DeadEnvelope>(&m.payload)
                        && consumer.is_none_or(|c| c == d.consumer)
                    {
                        out.push(StreamDeadLetter {
                            consumer: d.consumer,
                            record: StreamRecord {
                                partition: d.partition,
                                offset: d.offset,
                                appended_us: d.appended_us,
                                event: d.event.event(data),
                            },
                            error: d.error,
                            dead_us: d.dead_us,
                        });
                    }
                }
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
                Err(e) => return Err(self.failed("read the dead letters", e)),
            }
            sequence -= 1;
        }
        Ok(out)
    }

    async fn claim(
        &self,
        consumer: &str,
        partition: u32,
        holder: &str,
        now_us: i64,
        ttl_us: i64,
    ) -> Result<bool, StoreError> {
        let bucket = self.checkpoint_bucket().await?;
        let key = format!("claim.{}", Self::key(consumer, partition));
        let entry = bucket
            .entry(key.as_str())
            .await
            .map_err(|e| self.failed("read a partition claim", e))?;
        let revision = match entry {
            Some(e) if e.operation == Operation::Put => {
                let claim: Option<Claim> = serde_json::from_slice(&e.value).ok();
                if let Some(c) = claim
                    && c.holder != holder
                    && c.until_us > now_us
                {
                    return Ok(false);
                }
                e.revision
            }
            Some(e) => e.revision,
            None => 0,
        };
        let claim = Claim {
            holder: holder.to_owned(),
            until_us: now_us.saturating_add(ttl_us),
        };
        let value = serde_json::to_vec(&claim).map_err(|e| self.failed("claim a partition", e))?;
        match bucket.update(key.as_str(), value.into(), revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(self.failed("claim a partition", e)),
        }
    }

    async fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        use futures::TryStreamExt;
        let stream = self.dead_stream().await?;
        let prefix = self.inner.subject(&format!("sdlq.{}.", self.token));
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(format!("{prefix}*"))
            .await
            .map_err(|e| self.failed("count the dead letters", e))?
            .try_collect()
            .await
            .map_err(|e| self.failed("count the dead letters", e))?;
        let mut out: Vec<(String, u64)> = subjects
            .into_iter()
            .filter_map(|(subject, n)| Some((untoken(subject.strip_prefix(&prefix)?), n as u64)))
            .collect();
        out.sort();
        Ok(out)
    }
}
