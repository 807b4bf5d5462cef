//! `QueueStore` on JetStream: a work-queue stream per queue with one durable pull consumer.
//!
//! * **Messages.** Stream `updraft-<ns>-q-<queue>` (work-queue retention, file storage,
//!   `duplicate_window` = the dedup window of the latest `enqueue`), subject
//!   `updraft.<ns>.q.<queue>`. The payload is a length-prefixed JSON of the event's attributes
//!   followed by its data bytes; headers carry the message id (`Updraft-Id`) and
//!   `Updraft-Available-Us`. An idempotency key becomes `Nats-Msg-Id` (`k:` + its SHA-256),
//!   so JetStream's deduplication skips a repeat within the window.
//! * **Leases.** One durable pull consumer `worker` per queue: explicit ack, unlimited
//!   deliveries (attempts, backoff and dead letters are ours), `ack_wait` = the lease (set
//!   from the `lease_us` of the latest `lease`: a lease length is per queue). `lease` fetches
//!   without waiting; a fetched message whose `available_us` is still ahead is NAK'd with the
//!   remaining delay and not returned. The token is the delivery's ack subject, which names
//!   the stream sequence and the delivery count. If something fails part way through a
//!   `lease`, every fetched delivery it does not return is given back like a release (NAK'd
//!   until due, its attempt not counted, best effort within [`REQUEST_TIMEOUT`]); what was
//!   leased before the failure is returned (and the failure logged), else the error.
//! * **Stale tokens.** JetStream acks a pending message whichever of its deliveries the ack
//!   comes from, so the store checks a token itself: the message must still be in the stream
//!   (with the same id), and the delivery must be the current one. A first delivery that was
//!   leased normally leaves no trace; every other delivery, and every retry or release,
//!   writes a small record `{delivery, attempts, open}` under `<queue>.<sequence>` in the KV
//!   bucket `updraft-<ns>-leases` (written by compare-and-swap against the revision the
//!   token was checked with). The record also counts attempts, since NAKs for delays and
//!   releases are deliveries JetStream counts and we do not.
//! * **Fast path.** The server delivers a message again only once its lease ran out (or it
//!   was NAK'd, which only its holder does). So while this process holds a delivery it
//!   leased, and less than the lease (less a fifth, for the ack's way there) has passed
//!   since it asked for it or last extended it, the token is current without asking: `ack`,
//!   `extend`, `retry` and `release` then skip the check (a direct get and a KV read) and
//!   cost one round trip. Tokens from elsewhere, late ones, and `dead_letter` (which needs
//!   the message) are checked as above. What is held is forgotten when the queue's lease
//!   changes, since it was reckoned with the old one.
//! * **Waiting.** `lease_waiting` is one no-wait pull request with an expiry: the server
//!   answers at once with what is there, or keeps it open for the wait and answers the
//!   moment something arrives, from whichever node, so workers need not poll.
//! * **Settling.** `ack` is a double ack (`+ACK`, answered by the server); `extend` is an
//!   in-progress ack (`+WPI`); `retry(at)` and `release(at)` are a NAK with the delay to `at`
//!   (at most 100 years: [`MAX_NAK_DELAY`]; a release also takes the attempt back); `dead_letter` publishes a copy with the
//!   attempts, the error and the time to `updraft.<ns>.dlq.<queue>` in the stream
//!   `updraft-<ns>-dlq` (14 days, deduplicated by queue and sequence), then terminates the
//!   original (`+TERM`). `redrive` walks the dead letters one at a time, publishing each
//!   (all, or those listed: the walk stops once every listed id is done) back with fresh
//!   attempts and the same id, then deleting it from the dead-letter stream.
//!
//! Where this differs from the embedded backend:
//! * `extend(until)` restarts the lease at the queue's lease length from now (JetStream
//!   has no per-message deadline), which is what the worker asks for; it also cannot revive a
//!   lease that already expired on the server (the message comes back once more).
//! * `depth`: `ready` is what the consumer has not delivered yet (counted from the stream's
//!   sequences past the consumer's delivered point, which are exact as soon as a publish is
//!   acknowledged; the consumer's own `num_pending` lags) and `waiting` what it has
//!   delivered and not settled (leased, backing off, or delayed once a `lease` has seen it);
//!   an expired lease counts as `waiting` until it is delivered again, and a delayed message
//!   counts as `ready` until a `lease` has seen it.
//! * Checking a token and acting on it are two steps, so a lease that expires in between can
//!   be settled by its previous holder: the message was still handled at least once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{self, AckPolicy, PullConsumer};
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::kv::{Operation, UpdateErrorKind};
use async_nats::jetstream::stream::{
    self, DirectGetErrorKind, RetentionPolicy, StorageType, Stream,
};
use async_nats::jetstream::{self, message::StreamMessage};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::names::nonempty_token;
use super::{Inner, REQUEST_TIMEOUT, backend, publish_failed};
use crate::StoreError;
use crate::queue::{DeadLetter, Event, Leased, NewMessage, QueueDepth, QueueStore};

/// The durable consumer every node leases through.
const CONSUMER: &str = "worker";
/// The lease before the first `lease` sets one (DESIGN §4).
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The dedup window before the first `enqueue` sets one (DESIGN §9).
const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// How long dead letters are kept (DESIGN §9).
const DEAD_LETTER_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);
/// How long a lease record outlives its last write (a message delayed longer than this
/// counts its earlier deliveries as attempts).
const LEASE_RECORD_AGE: Duration = Duration::from_secs(14 * 24 * 3600);
/// Most messages one `lease` hands out.
const MAX_LEASE: u32 = 1024;
/// Held deliveries past which expired ones are swept out.
const HELD_SWEEP: usize = 4 * MAX_LEASE as usize;
/// Most dead letters one `redrive` or `dead_letters` walks.
const MAX_DEAD_WALK: u64 = 1_000_000;
/// How long one `redrive` or `dead_letters` may walk the dead letters.
const DEAD_WALK_TIME: Duration = Duration::from_secs(300);
/// The longest delay a NAK carries. The server takes an `i64` of nanoseconds and adds it to
/// the current time as nanoseconds since 1970 (an `i64` too, good until 2262): a delay it
/// cannot read, or one that wraps that sum, is a plain NAK and redelivers at once. 100 years
/// stays clear of both.
const MAX_NAK_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub(crate) const ID_HEADER: &str = "Updraft-Id";
const AVAILABLE_HEADER: &str = "Updraft-Available-Us";
pub(crate) const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// The streams, consumers and buckets this process has opened.
#[derive(Default)]
pub(crate) struct Registry {
    queues: Mutex<HashMap<String, Arc<Handle>>>,
    dead: OnceCell<Stream>,
    leases: OnceCell<jetstream::kv::Store>,
}

/// One queue's stream and consumer.
pub(crate) struct Handle {
    name: String,
    stream: Stream,
    stream_name: String,
    subject: String,
    consumer: PullConsumer,
    dead_subject: String,
    settings: Mutex<Settings>,
    /// Deliveries this process leased and still holds, by stream sequence.
    held: Mutex<HashMap<u64, Held>>,
}

impl Handle {
    /// The delivery this process holds under `token` for message `id`, while it is surely
    /// current.
    fn held(&self, id: &str, token: &str) -> Option<Current> {
        let (_, _, _, sequence) = parse_token(token)?;
        let map = self.held.lock().ok()?;
        let held = map.get(&sequence)?;
        (held.token == token && held.id == id && Instant::now() < held.until)
            .then_some(held.current)
    }

    /// Remembers a delivery this process leased (replacing any earlier one of its message).
    fn hold(&self, held: Held) {
        if let Ok(mut map) = self.held.lock() {
            // Deliveries nobody settled (their worker gave up on them) go once their lease
            // has run out, so the map stays as small as what is in flight.
            if map.len() >= HELD_SWEEP {
                let now = Instant::now();
                map.retain(|_, h| h.until > now);
            }
            map.insert(held.current.sequence, held);
        }
    }

    /// Moves a held delivery's end to `until` (an in-progress ack reached the server).
    fn hold_until(&self, sequence: u64, token: &str, until: Instant) {
        if let Ok(mut map) = self.held.lock()
            && let Some(held) = map.get_mut(&sequence)
            && held.token == token
        {
            held.until = until;
        }
    }

    fn forget_held(&self, sequence: u64) {
        if let Ok(mut map) = self.held.lock() {
            map.remove(&sequence);
        }
    }

    fn forget_all_held(&self) {
        if let Ok(mut map) = self.held.lock() {
            map.clear();
        }
    }

    /// The queue's lease as the server applies it.
    fn lease(&self) -> Duration {
        self.settings
            .lock()
            .map(|s| s.lease)
            .unwrap_or(DEFAULT_LEASE)
    }
}

#[derive(Clone, Copy, PartialEq)]
struct Settings {
    lease: Duration,
    dedup_window: Duration,
}

/// Durable queues on NATS JetStream (see the module doc).
#[derive(Clone)]
pub struct NatsQueues {
    inner: Arc<Inner>,
}

/// The event's attributes and the message's bookkeeping, before the data in the payload.
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope {
    id: String,
    source: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    extensions: Vec<(String, String)>,
    enqueued_us: i64,
    /// Dead letters only: deliveries made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    /// Dead letters only: the last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    /// Dead letters only: when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dead_us: Option<i64>,
}

impl Envelope {
    pub(crate) fn new(event: &Event, enqueued_us: i64) -> Self {
        Self {
            id: event.id.clone(),
            source: event.source.clone(),
            ty: event.ty.clone(),
            subject: event.subject.clone(),
            time: event.time.clone(),
            datacontenttype: event.datacontenttype.clone(),
            extensions: event.extensions.clone(),
            enqueued_us,
            attempts: None,
            last_error: None,
            dead_us: None,
        }
    }

    pub(crate) fn event(&self, data: Vec<u8>) -> Event {
        Event {
            id: self.id.clone(),
            source: self.source.clone(),
            ty: self.ty.clone(),
            subject: self.subject.clone(),
            time: self.time.clone(),
            datacontenttype: self.datacontenttype.clone(),
            data,
            extensions: self.extensions.clone(),
        }
    }
}

/// `u32` length of the JSON envelope, the envelope, the data.
pub(crate) fn encode(envelope: &impl Serialize, data: &[u8]) -> Result<Bytes, StoreError> {
    let json = serde_json::to_vec(envelope)
        .map_err(|e| StoreError::Backend(format!("cannot encode an event: {e}")))?;
    let len = u32::try_from(json.len())
        .map_err(|_| StoreError::Invalid("an event's attributes are over 4 GiB".into()))?;
    let mut out = Vec::with_capacity(4 + json.len() + data.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    Ok(out.into())
}

/// Reverses [`encode`].
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Option<(T, Vec<u8>)> {
    let len = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let json = payload.get(4..4 + len)?;
    let envelope = serde_json::from_slice(json).ok()?;
    Some((envelope, payload[4 + len..].to_vec()))
}

/// What the lease record of a delivered message says.
#[derive(Serialize, Deserialize, Clone, Copy)]
struct Record {
    /// The delivery (JetStream's count) this record is about.
    delivery: u64,
    /// Attempts counted so far, that delivery's included when it was a lease.
    attempts: u32,
    /// Whether that delivery is still held by its token.
    open: bool,
}

/// A current delivery: which one it is, its attempts, its record's revision (0: none).
#[derive(Clone, Copy)]
struct Current {
    sequence: u64,
    delivery: u64,
    attempts: u32,
    revision: u64,
    had_record: bool,
}

/// A checked token: the message and the delivery it proves.
struct Proof {
    message: StreamMessage,
    current: Current,
}

/// A delivery this process leased and has not settled: its token, its message id, and
/// until when the server cannot have delivered it again (see "Fast path" in the module doc).
struct Held {
    token: String,
    id: String,
    current: Current,
    until: Instant,
}

/// How long before the server's lease ends a held delivery stops counting as current: an
/// ack sent just before the end can reach the server after it.
fn margin(lease: Duration) -> Duration {
    lease / 5
}

/// What an ack subject says: stream, consumer, delivery count, stream sequence.
fn parse_token(token: &str) -> Option<(&str, &str, u64, u64)> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() < 9 || parts[0] != "$JS" || parts[1] != "ACK" {
        return None;
    }
    // v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
    // v2: $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.… (≥ 11)
    let at = match parts.len() {
        9 => 2,
        n if n >= 11 => 4,
        _ => return None,
    };
    Some((
        parts[at],
        parts[at + 1],
        parts[at + 2].parse().ok()?,
        parts[at + 3].parse().ok()?,
    ))
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}

/// A delay until `at_us` as the server wants it (never negative).
fn delay_until(at_us: i64, now_us: i64) -> Duration {
    Duration::from_micros(u64::try_from(at_us.saturating_sub(now_us)).unwrap_or(0))
}

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn hashed(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(prefix.len() + 64);
    out.push_str(prefix);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl NatsQueues {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The stream and consumer of `queue`, created (or brought to these settings) on first use.
    pub(crate) async fn handle(
        &self,
        queue: &str,
        dedup_window: Option<Duration>,
        lease: Option<Duration>,
    ) -> Result<Arc<Handle>, StoreError> {
        let cached = self
            .inner
            .queues
            .queues
            .lock()
            .ok()
            .and_then(|m| m.get(queue).cloned());
        let handle = match cached {
            Some(h) => h,
            None => {
                let h = Arc::new(self.open(queue, dedup_window, lease).await?);
                if let Ok(mut m) = self.inner.queues.queues.lock() {
                    m.insert(queue.to_owned(), h.clone());
                }
                h
            }
        };
        self.adjust(&handle, dedup_window, lease).await?;
        Ok(handle)
    }

    async fn open(
        &self,
        queue: &str,
        dedup_window: Option<Duration>,
        lease: Option<Duration>,
    ) -> Result<Handle, StoreError> {
        let q = nonempty_token("queue", queue)?;
        let stream_name = self.inner.name(&format!("q-{q}"));
        let subject = self.inner.subject(&format!("q.{q}"));
        let failed =
            |e: &dyn std::fmt::Display| backend(format_args!("cannot open queue `{queue}`"), e);
        let stream = self
            .inner
            .js
            .get_or_create_stream(stream::Config {
                name: stream_name.clone(),
                subjects: vec![subject.clone()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                num_replicas: self.inner.replicas,
                duplicate_window: dedup_window.unwrap_or(DEFAULT_DEDUP_WINDOW),
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(&e))?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                CONSUMER,
                consumer_config(lease.unwrap_or(DEFAULT_LEASE), self.inner.replicas),
            )
            .await
            .map_err(|e| failed(&e))?;
        let info = stream.cached_info();
        let settings = Settings {
            lease: consumer.cached_info().config.ack_wait,
            dedup_window: info.config.duplicate_window,
        };
        Ok(Handle {
            name: queue.to_owned(),
            stream_name,
            subject,
            dead_subject: self.inner.subject(&format!("dlq.{q}")),
            stream,
            consumer,
            settings: Mutex::new(settings),
            held: Mutex::default(),
        })
    }

    /// Brings the stream's dedup window and the consumer's lease to what the caller uses.
    async fn adjust(
        &self,
        h: &Handle,
        dedup_window: Option<Duration>,
        lease: Option<Duration>,
    ) -> Result<(), StoreError> {
        let Ok(current) = h.settings.lock().map(|s| *s) else {
            return Ok(());
        };
        let mut wanted = current;
        if let Some(w) = dedup_window {
            wanted.dedup_window = w;
        }
        if let Some(l) = lease {
            wanted.lease = l;
        }
        if wanted == current {
            return Ok(());
        }
        let failed = |e: &dyn std::fmt::Display| {
            backend(format_args!("cannot configure queue `{}`", h.name), e)
        };
        if wanted.dedup_window != current.dedup_window {
            let mut config = h.stream.cached_info().config.clone();
            config.duplicate_window = wanted.dedup_window;
            self.inner
                .js
                .update_stream(config)
                .await
                .map_err(|e| failed(&e))?;
            tracing::debug!(queue = %h.name, window = ?wanted.dedup_window, "queue dedup window changed");
        }
        if wanted.lease != current.lease {
            // What is held was reckoned with the old lease, which may be the longer one.
            h.forget_all_held();
            h.stream
                .update_consumer(consumer_config(wanted.lease, self.inner.replicas))
                .await
                .map_err(|e| failed(&e))?;
            tracing::debug!(queue = %h.name, lease = ?wanted.lease, "queue lease changed");
        }
        if let Ok(mut s) = h.settings.lock() {
            *s = wanted;
        }
        Ok(())
    }

    async fn dead_stream(&self) -> Result<&Stream, StoreError> {
        self.inner
            .queues
            .dead
            .get_or_try_init(|| async {
                let name = self.inner.name("dlq");
                self.inner
                    .js
                    .get_or_create_stream(stream::Config {
                        name: name.clone(),
                        subjects: vec![self.inner.subject("dlq.>")],
                        retention: RetentionPolicy::Limits,
                        storage: StorageType::File,
                        num_replicas: self.inner.replicas,
                        max_age: DEAD_LETTER_RETENTION,
                        duplicate_window: DEFAULT_DEDUP_WINDOW,
                        allow_direct: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| backend(format_args!("cannot open the dead letters `{name}`"), e))
            })
            .await
    }

    async fn leases(&self) -> Result<&jetstream::kv::Store, StoreError> {
        self.inner
            .queues
            .leases
            .get_or_try_init(|| {
                self.inner
                    .bucket(self.inner.name("leases"), LEASE_RECORD_AGE)
            })
            .await
    }

    fn record_key(h: &Handle, sequence: u64) -> String {
        format!("{}.{sequence}", h.stream_name)
    }

    /// The record of `sequence` and its revision (0 when there is none).
    async fn record(&self, h: &Handle, sequence: u64) -> Result<(Option<Record>, u64), StoreError> {
        let entry = self
            .leases()
            .await?
            .entry(Self::record_key(h, sequence))
            .await
            .map_err(|e| backend(format_args!("cannot read a lease of queue `{}`", h.name), e))?;
        Ok(match entry {
            Some(e) if e.operation == Operation::Put => {
                (serde_json::from_slice(&e.value).ok(), e.revision)
            }
            Some(e) => (None, e.revision),
            None => (None, 0),
        })
    }

    /// Writes a record; with `revision`, only if the record is still there. The record's new
    /// revision, or `None` if it moved.
    async fn write_record(
        &self,
        h: &Handle,
        sequence: u64,
        record: Record,
        revision: Option<u64>,
    ) -> Result<Option<u64>, StoreError> {
        let leases = self.leases().await?;
        let key = Self::record_key(h, sequence);
        let value = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
        let failed = |e: &dyn std::fmt::Display| {
            backend(
                format_args!("cannot write a lease of queue `{}`", h.name),
                e,
            )
        };
        match revision {
            None => leases
                .put(key, value)
                .await
                .map(Some)
                .map_err(|e| failed(&e)),
            Some(r) => match leases.update(key, value, r).await {
                Ok(revision) => Ok(Some(revision)),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(failed(&e)),
            },
        }
    }

    async fn forget_record(&self, h: &Handle, sequence: u64) {
        if let Ok(leases) = self.leases().await
            && let Err(e) = leases.delete(Self::record_key(h, sequence)).await
        {
            // Harmless: the message is gone, so the record proves nothing; it ages out.
            tracing::debug!(queue = %h.name, sequence, "cannot remove a lease record: {e}");
        }
    }

    /// Checks that `token` is the current delivery of message `id`; `None` if it is not.
    async fn check(&self, h: &Handle, id: &str, token: &str) -> Result<Option<Proof>, StoreError> {
        let Some((stream, consumer, delivery, sequence)) = parse_token(token) else {
            return Ok(None);
        };
        if stream != h.stream_name || consumer != CONSUMER || delivery == 0 {
            return Ok(None);
        }
        let (message, record) =
            tokio::join!(h.stream.direct_get(sequence), self.record(h, sequence));
        let message = match message {
            Ok(m) if header(Some(&m.headers), ID_HEADER) == Some(id) => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(backend(
                    format_args!("cannot read a message of queue `{}`", h.name),
                    e,
                ));
            }
        };
        let (record, revision) = record?;
        let attempts = match record {
            Some(r) if r.delivery == delivery && r.open => r.attempts,
            Some(_) => return Ok(None),
            // No record: only a first delivery leased normally.
            None if delivery == 1 => 1,
            None => return Ok(None),
        };
        Ok(Some(Proof {
            message,
            current: Current {
                sequence,
                delivery,
                attempts,
                revision,
                had_record: record.is_some(),
            },
        }))
    }

    /// Sends `body` to a delivery's ack subject and waits for the server's answer.
    async fn settle(&self, h: &Handle, token: &str, body: String) -> Result<(), StoreError> {
        self.inner
            .client
            .request(token.to_owned(), body.into())
            .await
            .map(drop)
            .map_err(|e| {
                backend(
                    format_args!("cannot settle a message of queue `{}`", h.name),
                    e,
                )
            })
    }

    /// NAKs a delivery so it comes back after `delay` (at most [`MAX_NAK_DELAY`]).
    async fn nak(&self, h: &Handle, token: &str, delay: Duration) -> Result<(), StoreError> {
        let nanos = delay.min(MAX_NAK_DELAY).as_nanos();
        self.settle(h, token, format!("-NAK {{\"delay\": {nanos}}}"))
            .await
    }

    /// Closes a delivery's record (so its token stops working) with `attempts`, then NAKs it.
    async fn give_back(
        &self,
        h: &Handle,
        current: Current,
        token: &str,
        attempts: u32,
        delay: Duration,
    ) -> Result<bool, StoreError> {
        let record = Record {
            delivery: current.delivery,
            attempts,
            open: false,
        };
        let written = self
            .write_record(h, current.sequence, record, Some(current.revision))
            .await?;
        h.forget_held(current.sequence);
        if written.is_none() {
            return Ok(false);
        }
        self.nak(h, token, delay).await?;
        Ok(true)
    }

    /// The current delivery `token` proves for message `id`: from what this process holds
    /// while the server cannot have delivered it again, else asked of the server.
    async fn current(
        &self,
        h: &Handle,
        id: &str,
        token: &str,
    ) -> Result<Option<Current>, StoreError> {
        if let Some(current) = h.held(id, token) {
            return Ok(Some(current));
        }
        Ok(self.check(h, id, token).await?.map(|p| p.current))
    }

    /// The first dead letter of `queue` at or after stream sequence `from`, with its id;
    /// `None` past the last.
    async fn next_dead(
        &self,
        h: &Handle,
        from: u64,
    ) -> Result<Option<(StreamMessage, String)>, StoreError> {
        let dead = self.dead_stream().await?;
        match dead
            .direct_get_next_for_subject(h.dead_subject.as_str(), Some(from))
            .await
        {
            Ok(m) => {
                let id = header(Some(&m.headers), ID_HEADER)
                    .unwrap_or_default()
                    .to_owned();
                Ok(Some((m, id)))
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(backend(
                format_args!("cannot read the dead letters of queue `{}`", h.name),
                e,
            )),
        }
    }

    /// Dead letters of `queue`, oldest first; at most `limit`.
    async fn walk_dead(&self, h: &Handle, limit: u64) -> Result<Vec<DeadLetter>, StoreError> {
        let deadline = Instant::now() + DEAD_WALK_TIME;
        let mut out = Vec::new();
        let mut from = 1;
        for _ in 0..MAX_DEAD_WALK {
            if out.len() as u64 >= limit {
                break;
            }
            if Instant::now() > deadline {
                return Err(StoreError::Unavailable(format!(
                    "reading the dead letters of queue `{}` took over {DEAD_WALK_TIME:?}",
                    h.name
                )));
            }
            let Some((m, id)) = self.next_dead(h, from).await? else {
                break;
            };
            from = m.sequence + 1;
            match decode::<Envelope>(&m.payload) {
                Some((envelope, data)) => out.push(DeadLetter {
                    id,
                    attempts: envelope.attempts.unwrap_or(0),
                    last_error: envelope.last_error.clone(),
                    dead_us: envelope.dead_us.unwrap_or(0),
                    event: envelope.event(data),
                }),
                None => {
                    tracing::warn!(queue = %h.name, sequence = m.sequence, "skipping a dead letter updraft did not write")
                }
            }
        }
        Ok(out)
    }

    /// Publishes the dead letter `m` (message `id`) back to its queue with fresh attempts,
    /// then removes it from the dead letters; false if updraft did not write it (it stays).
    async fn redrive_one(
        &self,
        h: &Handle,
        dead: &Stream,
        m: &StreamMessage,
        id: &str,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let Some((mut envelope, data)) = decode::<Envelope>(&m.payload) else {
            tracing::warn!(queue = %h.name, sequence = m.sequence, "skipping a dead letter updraft did not write");
            return Ok(false);
        };
        envelope.attempts = None;
        envelope.last_error = None;
        envelope.dead_us = None;
        let mut headers = HeaderMap::new();
        headers.insert(ID_HEADER, id);
        headers.insert(AVAILABLE_HEADER, now_us.to_string().as_str());
        // Redriving again after a failure part way publishes each dead letter once.
        headers.insert(MSG_ID_HEADER, format!("r:{}", m.sequence).as_str());
        self.publish(
            &format!("redrive a dead letter of queue `{}`", h.name),
            &h.subject,
            headers,
            encode(&envelope, &data)?,
        )
        .await?;
        dead.delete_message(m.sequence).await.map_err(|e| {
            backend(
                format_args!("cannot remove a redriven dead letter of queue `{}`", h.name),
                e,
            )
        })?;
        Ok(true)
    }

    /// What `lease` does with one fetched delivery: the lease, or `None` when it was not
    /// for now (delayed again, or not updraft's and terminated). A lease is held until
    /// `until` (see [`Held`]).
    async fn take(
        &self,
        h: &Handle,
        m: &jetstream::Message,
        now_us: i64,
        until: Instant,
    ) -> Result<Option<Leased>, StoreError> {
        let queue = h.name.as_str();
        let failed = |e: &dyn std::fmt::Display| {
            backend(format_args!("cannot lease from queue `{queue}`"), e)
        };
        let (sequence, delivery) = match m.info() {
            Ok(info) => (
                info.stream_sequence,
                u64::try_from(info.delivered).unwrap_or(1),
            ),
            Err(e) => return Err(failed(&e)),
        };
        let Some(token) = m.reply.as_ref().map(|r| r.to_string()) else {
            return Ok(None);
        };
        let headers = m.headers.as_ref();
        let id = header(headers, ID_HEADER).map(str::to_owned);
        let available_us: i64 = header(headers, AVAILABLE_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (Some(id), Some((envelope, data))) = (id, decode::<Envelope>(&m.payload)) else {
            tracing::error!(
                queue,
                sequence,
                "dropping a queue message updraft did not write"
            );
            self.settle(h, &token, "+TERM not an updraft message".into())
                .await?;
            return Ok(None);
        };
        // Attempts counted before this delivery: the record's, or every earlier delivery.
        let (record, _) = if delivery > 1 {
            self.record(h, sequence).await?
        } else {
            (None, 0)
        };
        let before = match record {
            Some(r) => r.attempts,
            None => u32::try_from(delivery - 1).unwrap_or(u32::MAX),
        };
        if available_us > now_us {
            // Not yet: back to the server until it is due, without counting an attempt.
            let r = Record {
                delivery,
                attempts: before,
                open: false,
            };
            self.write_record(h, sequence, r, None).await?;
            self.nak(h, &token, delay_until(available_us, now_us))
                .await?;
            return Ok(None);
        }
        let attempts = before.saturating_add(1);
        let mut revision = 0;
        if delivery > 1 {
            let r = Record {
                delivery,
                attempts,
                open: true,
            };
            revision = self.write_record(h, sequence, r, None).await?.unwrap_or(0);
        }
        h.hold(Held {
            token: token.clone(),
            id: id.clone(),
            current: Current {
                sequence,
                delivery,
                attempts,
                revision,
                had_record: delivery > 1,
            },
            until,
        });
        Ok(Some(Leased {
            id,
            event: envelope.event(data),
            attempts,
            token,
            enqueued_us: envelope.enqueued_us,
        }))
    }

    /// Gives fetched deliveries that `lease` will not return back to the server, as a
    /// release does: redelivered when due, without counting an attempt. Best effort (the
    /// server may be what failed): a delivery whose record cannot be written is still NAK'd
    /// (it then counts an attempt); within [`REQUEST_TIMEOUT`] in all, after which the rest
    /// come back when their lease runs out.
    async fn give_back_fetched(
        &self,
        h: &Handle,
        messages: impl Iterator<Item = jetstream::Message>,
        now_us: i64,
    ) {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut left = 0usize;
        for m in messages {
            if Instant::now() > deadline {
                left += 1;
                continue;
            }
            let Some(token) = m.reply.as_ref().map(|r| r.to_string()) else {
                continue;
            };
            let available_us: i64 = header(m.headers.as_ref(), AVAILABLE_HEADER)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if let Ok(info) = m.info() {
                let (sequence, delivery) = (
                    info.stream_sequence,
                    u64::try_from(info.delivered).unwrap_or(1),
                );
                let before = if delivery > 1 {
                    match self.record(h, sequence).await {
                        // `take` opened it (counting this delivery) before failing later.
                        Ok((Some(r), _)) if r.delivery == delivery && r.open => {
                            Some(r.attempts.saturating_sub(1))
                        }
                        Ok((Some(r), _)) => Some(r.attempts),
                        Ok((None, _)) => Some(u32::try_from(delivery - 1).unwrap_or(u32::MAX)),
                        Err(e) => {
                            tracing::warn!(queue = %h.name, sequence, "giving a message back counts an attempt: {e}");
                            None
                        }
                    }
                } else {
                    Some(0)
                };
                if let Some(attempts) = before {
                    let r = Record {
                        delivery,
                        attempts,
                        open: false,
                    };
                    if let Err(e) = self.write_record(h, sequence, r, None).await {
                        tracing::warn!(queue = %h.name, sequence, "giving a message back counts an attempt: {e}");
                    }
                }
            }
            if let Err(e) = self.nak(h, &token, delay_until(available_us, now_us)).await {
                tracing::warn!(queue = %h.name, "cannot give a message back (it comes back when its lease runs out): {e}");
            }
        }
        if left > 0 {
            tracing::warn!(queue = %h.name, left, "giving messages back took too long; the rest come back when their lease runs out");
        }
    }

    /// Publishes to `subject` and waits for the stream's ack; true unless it was a duplicate.
    async fn publish(
        &self,
        what: &str,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<bool, StoreError> {
        let failed = |e: &PublishError| publish_failed(format_args!("cannot {what}"), e);
        let ack = self
            .inner
            .js
            .publish_with_headers(subject.to_owned(), headers, payload)
            .await
            .map_err(|e| failed(&e))?
            .await
            .map_err(|e| failed(&e))?;
        Ok(!ack.duplicate)
    }

    /// Stores `messages` in `queue`, each under `msg_ids[i]` (when given) for dedup; returns
    /// how many were new. Shared with topic fan-out.
    pub(crate) async fn put(
        &self,
        queue: &str,
        messages: &[(NewMessage, Option<String>)],
        dedup_window: Option<Duration>,
        now_us: i64,
    ) -> Result<u32, StoreError> {
        if messages.is_empty() {
            return Ok(0);
        }
        let h = self.handle(queue, dedup_window, None).await?;
        let failed =
            |e: &PublishError| publish_failed(format_args!("cannot enqueue to queue `{queue}`"), e);
        // Send them all, then wait for the acks: one round trip for the batch.
        let mut acks = Vec::with_capacity(messages.len());
        for (m, msg_id) in messages {
            let mut headers = HeaderMap::new();
            headers.insert(
                ID_HEADER,
                uuid::Uuid::now_v7().simple().to_string().as_str(),
            );
            headers.insert(AVAILABLE_HEADER, m.available_us.to_string().as_str());
            if let Some(msg_id) = msg_id {
                headers.insert(MSG_ID_HEADER, msg_id.as_str());
            }
            let payload = encode(&Envelope::new(&m.event, now_us), &m.event.data)?;
            acks.push(
                self.inner
                    .js
                    .publish_with_headers(h.subject.clone(), headers, payload)
                    .await
                    .map_err(|e| failed(&e))?,
            );
        }
        let mut stored = 0;
        for ack in acks {
            if !ack.await.map_err(|e| failed(&e))?.duplicate {
                stored += 1;
            }
        }
        Ok(stored)
    }
}

fn consumer_config(lease: Duration, replicas: usize) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(CONSUMER.to_owned()),
        description: Some("updraft queue workers".to_owned()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: lease,
        max_deliver: -1,
        max_ack_pending: -1,
        num_replicas: replicas,
        ..Default::default()
    }
}

#[async_trait]
impl QueueStore for NatsQueues {
    async fn enqueue(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        dedup_window_us: i64,
        now_us: i64,
    ) -> Result<u32, StoreError> {
        let window = Duration::from_micros(u64::try_from(dedup_window_us).unwrap_or(0).max(1000));
        let messages: Vec<(NewMessage, Option<String>)> = messages
            .into_iter()
            .map(|m| {
                let msg_id = m.idempotency_key.as_deref().map(|k| hashed("k:", &[k]));
                (m, msg_id)
            })
            .collect();
        self.put(queue, &messages, Some(window), now_us).await
    }

    async fn lease(
        &self,
        queue: &str,
        max: u32,
        lease_us: i64,
        now_us: i64,
    ) -> Result<Vec<Leased>, StoreError> {
        self.lease_from(queue, max, lease_us, now_us, None).await
    }

    async fn lease_waiting(
        &self,
        queue: &str,
        max: u32,
        lease_us: i64,
        now_us: i64,
        wait_us: i64,
    ) -> Result<Vec<Leased>, StoreError> {
        let wait = Duration::from_micros(u64::try_from(wait_us).unwrap_or(0));
        let wait = (!wait.is_zero()).then_some(wait);
        self.lease_from(queue, max, lease_us, now_us, wait).await
    }

    fn waits(&self) -> bool {
        true
    }

    async fn extend(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        _until_us: i64,
    ) -> Result<bool, StoreError> {
        let h = self.handle(queue, None, None).await?;
        let Some(current) = self.current(&h, id, token).await? else {
            return Ok(false);
        };
        // The server restarts the lease when the ack arrives, which is after it was sent.
        let sent = Instant::now();
        self.settle(&h, token, "+WPI".into()).await?;
        let lease = h.lease();
        h.hold_until(current.sequence, token, sent + lease - margin(lease));
        Ok(true)
    }

    async fn ack(&self, queue: &str, id: &str, token: &str) -> Result<bool, StoreError> {
        let h = self.handle(queue, None, None).await?;
        let Some(current) = self.current(&h, id, token).await? else {
            return Ok(false);
        };
        self.settle(&h, token, "+ACK".into()).await?;
        h.forget_held(current.sequence);
        if current.had_record {
            self.forget_record(&h, current.sequence).await;
        }
        Ok(true)
    }

    async fn retry(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        at_us: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let h = self.handle(queue, None, None).await?;
        let Some(current) = self.current(&h, id, token).await? else {
            return Ok(false);
        };
        tracing::debug!(
            queue,
            message = id,
            attempts = current.attempts,
            "retrying: {error}"
        );
        let delay = delay_until(at_us, now_us());
        self.give_back(&h, current, token, current.attempts, delay)
            .await
    }

    async fn release(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        at_us: i64,
    ) -> Result<bool, StoreError> {
        let h = self.handle(queue, None, None).await?;
        let Some(current) = self.current(&h, id, token).await? else {
            return Ok(false);
        };
        let delay = delay_until(at_us, now_us());
        let attempts = current.attempts.saturating_sub(1);
        self.give_back(&h, current, token, attempts, delay).await
    }

    async fn dead_letter(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        error: &str,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let h = self.handle(queue, None, None).await?;
        let Some(proof) = self.check(&h, id, token).await? else {
            return Ok(false);
        };
        let Some((mut envelope, data)) = decode::<Envelope>(&proof.message.payload) else {
            return Ok(false);
        };
        let current = proof.current;
        envelope.attempts = Some(current.attempts);
        envelope.last_error = Some(error.to_owned());
        envelope.dead_us = Some(now_us);
        let mut headers = HeaderMap::new();
        headers.insert(ID_HEADER, id);
        headers.insert(
            MSG_ID_HEADER,
            format!("{}:{}", h.stream_name, current.sequence).as_str(),
        );
        self.dead_stream().await?;
        self.publish(
            &format!("dead-letter a message of queue `{queue}`"),
            &h.dead_subject,
            headers,
            encode(&envelope, &data)?,
        )
        .await?;
        self.settle(&h, token, "+TERM dead-lettered".into()).await?;
        h.forget_held(current.sequence);
        if current.had_record {
            self.forget_record(&h, current.sequence).await;
        }
        Ok(true)
    }

    async fn depth(&self, queue: &str, _now_us: i64) -> Result<QueueDepth, StoreError> {
        let h = self.handle(queue, None, None).await?;
        let failed = |e: &dyn std::fmt::Display| {
            backend(
                format_args!("cannot count the messages of queue `{queue}`"),
                e,
            )
        };
        let mut consumer = h.consumer.clone();
        let info = consumer.info().await.map_err(|e| failed(&e))?.clone();
        let mut stream = h.stream.clone();
        let state = stream.info().await.map_err(|e| failed(&e))?.state.clone();
        // The server counts a consumer's `num_pending` in the background, so right after a
        // publish was acknowledged it can still miss that message. A work queue only removes
        // messages the consumer was given, so everything past the delivered point is still
        // there and undelivered: count it from the stream's sequences instead.
        let delivered = info
            .delivered
            .stream_sequence
            .max(state.first_sequence.saturating_sub(1));
        let ready = state
            .last_sequence
            .saturating_sub(delivered)
            .min(state.messages);
        let waiting = info.num_ack_pending as u64;
        let oldest_us = (state.messages > 0).then(|| state.first_timestamp.timestamp_micros());
        let dead_stream = self.dead_stream().await?;
        let mut subjects = dead_stream
            .info_with_subjects(h.dead_subject.as_str())
            .await
            .map_err(|e| failed(&e))?;
        let mut dead = 0;
        while let Some(entry) = subjects.next().await {
            let (_, count) = entry.map_err(|e| failed(&e))?;
            dead += count as u64;
        }
        Ok(QueueDepth {
            ready,
            waiting,
            dead,
            in_flight: waiting,
            oldest_us,
        })
    }

    async fn dead_letters(&self, queue: &str, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let h = self.handle(queue, None, None).await?;
        self.walk_dead(&h, u64::from(limit)).await
    }

    async fn delete_dead(&self, queue: &str, ids: Option<Vec<String>>) -> Result<u32, StoreError> {
        self.each_dead(queue, ids, DeadAction::Delete).await
    }

    async fn redrive(
        &self,
        queue: &str,
        ids: Option<Vec<String>>,
        now_us: i64,
    ) -> Result<u32, StoreError> {
        self.each_dead(queue, ids, DeadAction::Redrive { now_us })
            .await
    }
}

impl NatsQueues {
    /// Leases up to `max`: what is deliverable now, or with `wait`, the first to arrive
    /// within it.
    async fn lease_from(
        &self,
        queue: &str,
        max: u32,
        lease_us: i64,
        now_us: i64,
        wait: Option<Duration>,
    ) -> Result<Vec<Leased>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let lease = Duration::from_micros(u64::try_from(lease_us).unwrap_or(0).max(1000));
        let h = self.handle(queue, None, Some(lease)).await?;
        let failed = |e: &dyn std::fmt::Display| {
            backend(format_args!("cannot lease from queue `{queue}`"), e)
        };
        // The server starts each lease when it delivers, after this.
        let until = Instant::now() + lease - margin(lease);
        let max = max.min(MAX_LEASE) as usize;
        // A no-wait pull: what is there now. With an expiry too, the server holds it open
        // until something arrives (from any node) and answers as soon as anything is there,
        // in one request either way.
        let fetch = h.consumer.fetch().max_messages(max);
        let fetch = match wait {
            Some(wait) => fetch.expires(wait),
            None => fetch,
        };
        let mut batch = fetch.messages().await.map_err(|e| failed(&e))?;
        let mut fetched = Vec::new();
        let mut failure = None;
        let mut answer_within = REQUEST_TIMEOUT + wait.unwrap_or_default();
        for _ in 0..=MAX_LEASE {
            let next = tokio::time::timeout(answer_within, batch.next()).await;
            answer_within = REQUEST_TIMEOUT;
            match next {
                Ok(Some(Ok(m))) => fetched.push(m),
                Ok(Some(Err(e))) => {
                    failure = Some(failed(&e));
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    failure = Some(failed(&"the server did not answer in time"));
                    break;
                }
            }
        }
        // Whatever goes wrong from here, every fetched delivery is either returned or given
        // back: one that is dropped stays hidden until its lease runs out, then comes back
        // with an attempt counted for a run that never happened.
        let mut leased = Vec::with_capacity(fetched.len());
        let mut rest = fetched.into_iter();
        while let Some(m) = rest.next() {
            // What arrived while waiting is judged by the clock when it came.
            let now_us = if wait.is_some() {
                now_us.max(self::now_us())
            } else {
                now_us
            };
            match self.take(&h, &m, now_us, until).await {
                Ok(Some(l)) => leased.push(l),
                Ok(None) => {}
                Err(e) => {
                    self.give_back_fetched(&h, std::iter::once(m).chain(rest.by_ref()), now_us)
                        .await;
                    failure = Some(e);
                    break;
                }
            }
        }
        match failure {
            None => Ok(leased),
            Some(e) if leased.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(
                    queue,
                    leased = leased.len(),
                    "returning the messages leased before a failure: {e}"
                );
                Ok(leased)
            }
        }
    }
}

/// What [`NatsQueues::each_dead`] does to each dead letter.
#[derive(Debug, Clone, Copy)]
enum DeadAction {
    Delete,
    Redrive { now_us: i64 },
}

impl NatsQueues {
    /// Walks `queue`'s dead letters one at a time (never the whole set in memory), doing
    /// `action` to each (all, or those listed: the walk stops once every listed id is
    /// done); how many it did.
    async fn each_dead(
        &self,
        queue: &str,
        ids: Option<Vec<String>>,
        action: DeadAction,
    ) -> Result<u32, StoreError> {
        let h = self.handle(queue, None, None).await?;
        let dead = self.dead_stream().await?.clone();
        // The listed ids not done yet; the walk ends once none is left.
        let mut wanted: Option<HashSet<String>> = ids.map(|ids| ids.into_iter().collect());
        let deadline = Instant::now() + DEAD_WALK_TIME;
        let mut done = 0u32;
        let mut from = 1;
        for _ in 0..MAX_DEAD_WALK {
            if wanted.as_ref().is_some_and(HashSet::is_empty) {
                break;
            }
            if Instant::now() > deadline {
                let doing = match action {
                    DeadAction::Delete => "deleting",
                    DeadAction::Redrive { .. } => "redriving",
                };
                return Err(StoreError::Unavailable(format!(
                    "{doing} the dead letters of queue `{queue}` took over {DEAD_WALK_TIME:?} \
                     ({done} done); ask again for the rest"
                )));
            }
            let Some((m, id)) = self.next_dead(&h, from).await? else {
                break;
            };
            from = m.sequence + 1;
            if let Some(wanted) = wanted.as_mut()
                && !wanted.remove(&id)
            {
                continue;
            }
            let did = match action {
                DeadAction::Redrive { now_us } => {
                    self.redrive_one(&h, &dead, &m, &id, now_us).await?
                }
                DeadAction::Delete => {
                    dead.delete_message(m.sequence).await.map_err(|e| {
                        backend(
                            format_args!("cannot delete a dead letter of queue `{queue}`"),
                            e,
                        )
                    })?;
                    true
                }
            };
            if did {
                done += 1;
            }
        }
        Ok(done)
    }
}
