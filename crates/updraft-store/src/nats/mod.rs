//! The cluster backends: platform state on NATS JetStream (DESIGN §3), so several nodes, and
//! several apps, share one NATS.
//!
//! [`NatsState::connect`] opens one connection for one app; its namespace (the app name) is
//! part of every stream, bucket and subject name, escaped into `[A-Za-z0-9_]` (`names.rs`),
//! so apps never see each other's state. Everything is created on first use with file
//! storage and the configured number of replicas.
//!
//! | trait | JetStream |
//! |---|---|
//! | [`KvStore`] (per `[kv.<label>]`) | KV bucket `updraft-<ns>-kv-<label>`, history 1; keys escaped order-preservingly into one subject token each |
//! | [`ScheduleStore`] | KV bucket `updraft-<ns>-schedules`: a claim is a `create` of `<trigger>.<occurrence>`, and `<trigger>` holds the latest claim (raised by compare-and-swap) |
//! | [`QueueStore`] | a work-queue stream per queue (`updraft-<ns>-q-<queue>`, subject `updraft.<ns>.q.<queue>`) with one durable pull consumer (explicit ack, unlimited deliveries, `ack_wait` = the lease); dead letters in `updraft-<ns>-dlq`, a subject per queue; lease bookkeeping in the KV bucket `updraft-<ns>-leases` |
//! | [`TopicStore`] | a limits stream per topic (`updraft-<ns>-t-<topic>`, 7 days), fanned out at publish into the subscriptions' queues |
//! | [`StreamStore`](crate::StreamStore) (per `[stream.<name>]`) | a limits stream per partition (`updraft-<ns>-s-<stream>-<p>`), offset = sequence − 1; checkpoints in KV bucket `updraft-<ns>-s-<stream>-checkpoints`; dead letters in `updraft-<ns>-s-<stream>-dlq` |
//!
//! Each module's doc says how its trait's methods map, and where JetStream makes them differ
//! from the embedded backend. Durability is the server's: an acknowledged write is stored
//! on the server (flushed to disk per its `sync_interval`; on a cluster, on a quorum of
//! replicas).
//!
//! The server's `max_payload` bounds a value or an event: a 1 MiB kv value (the limit every
//! backend shares) plus headers needs `max_payload` above the default 1 MB, e.g. `2MB`.

mod kv;
pub(crate) mod names;
mod queue;
mod schedule;
mod stream;
mod topic;

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

pub use kv::NatsKv;
pub use queue::NatsQueues;
pub use schedule::NatsSchedules;
pub use stream::{NatsStream, NatsStreamConfig};
pub use topic::NatsTopics;

use crate::{KvStore, QueueStore, ScheduleStore, StoreError, TopicStore};

/// How long one request to the server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the state is laid out on the server.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Replicas of every stream and bucket (1 on a single server; 3 on a cluster).
    pub replicas: usize,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self { replicas: 1 }
    }
}

/// One app's platform state on a NATS server or cluster. Cheap to clone; every store it
/// hands out shares its connection.
#[derive(Clone)]
pub struct NatsState {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    /// The namespace as a name token.
    pub(crate) ns: String,
    pub(crate) replicas: usize,
    pub(crate) queues: queue::Registry,
    pub(crate) topics: topic::Registry,
}

impl NatsState {
    /// Connects to `url` (`nats://host:port`) for the app `namespace`, with one replica.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, namespace, NatsOptions::default()).await
    }

    /// [`NatsState::connect`] with options.
    pub async fn connect_with(
        url: &str,
        namespace: &str,
        options: NatsOptions,
    ) -> Result<Self, StoreError> {
        let ns = names::nonempty_token("namespace", namespace)?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("updraft {namespace}"))
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(url)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to nats at `{url}`: {e}"))
            })?;
        let js = jetstream::new(client.clone());
        tracing::debug!(url, namespace, "connected to nats");
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                js,
                ns,
                replicas: options.replicas.max(1),
                queues: queue::Registry::default(),
                topics: topic::Registry::default(),
            }),
        })
    }

    /// The kv namespace `label` (its bucket is created on first use).
    pub async fn kv(&self, label: &str) -> Result<NatsKv, StoreError> {
        NatsKv::open(self.inner.clone(), label).await
    }

    /// [`NatsState::kv`] as a trait object.
    pub async fn kv_store(&self, label: &str) -> Result<Arc<dyn KvStore>, StoreError> {
        Ok(Arc::new(self.kv(label).await?))
    }

    /// The cron claims.
    pub async fn schedules(&self) -> Result<NatsSchedules, StoreError> {
        NatsSchedules::open(self.inner.clone()).await
    }

    /// [`NatsState::schedules`] as a trait object.
    pub async fn schedule_store(&self) -> Result<Arc<dyn ScheduleStore>, StoreError> {
        Ok(Arc::new(self.schedules().await?))
    }

    /// The queues (each created on first use).
    pub fn queues(&self) -> NatsQueues {
        NatsQueues::new(self.inner.clone())
    }

    /// [`NatsState::queues`] as a trait object.
    pub fn queue_store(&self) -> Arc<dyn QueueStore> {
        Arc::new(self.queues())
    }

    /// The topics, fanning out into [`NatsState::queues`].
    pub fn topics(&self) -> NatsTopics {
        NatsTopics::new(self.inner.clone())
    }

    /// The stream `name` (its partitions are created on first append).
    pub fn stream(&self, name: &str, config: NatsStreamConfig) -> Result<NatsStream, StoreError> {
        NatsStream::new(self.inner.clone(), name, config)
    }

    /// Messages this node has sent the server so far (publishes, requests, acks): what a
    /// round-trip count is made of.
    pub fn messages_sent(&self) -> u64 {
        self.inner
            .client
            .statistics()
            .out_messages
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`NatsState::topics`] as a trait object.
    pub fn topic_store(&self) -> Arc<dyn TopicStore> {
        Arc::new(self.topics())
    }
}

impl Inner {
    /// `updraft-<ns>-<kind>`: a stream or bucket name of this namespace.
    pub(crate) fn name(&self, kind: &str) -> String {
        format!("updraft-{}-{kind}", self.ns)
    }

    /// `updraft.<ns>.<kind>`: a subject of this namespace.
    pub(crate) fn subject(&self, kind: &str) -> String {
        format!("updraft.{}.{kind}", self.ns)
    }

    /// Opens the KV bucket `bucket`, creating it when missing.
    pub(crate) async fn bucket(
        &self,
        bucket: String,
        max_age: Duration,
    ) -> Result<jetstream::kv::Store, StoreError> {
        if let Ok(store) = self.js.get_key_value(bucket.as_str()).await {
            return Ok(store);
        }
        self.js
            .create_key_value(jetstream::kv::Config {
                bucket: bucket.clone(),
                history: 1,
                max_age,
                storage: jetstream::stream::StorageType::File,
                num_replicas: self.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| backend(format_args!("cannot open the kv bucket `{bucket}`"), e))
    }
}

/// A publish that failed: [`StoreError::Unavailable`] when the server did not answer in time
/// or the connection broke (try again later), else [`StoreError::Backend`].
pub(crate) fn publish_failed(
    what: impl Display,
    e: &async_nats::jetstream::context::PublishError,
) -> StoreError {
    use async_nats::jetstream::context::PublishErrorKind;
    match e.kind() {
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            StoreError::Unavailable(format!("{what}: {e}"))
        }
        _ => backend(what, e),
    }
}

/// A [`StoreError::Backend`] saying what could not be done, and why.
pub(crate) fn backend(what: impl Display, e: impl Display) -> StoreError {
    StoreError::Backend(format!("{what}: {e}"))
}
