//! Opens what an app declares, on the backends its runtime config binds
//! ([`crate::backends`]): the platform state (kv namespaces, queues, topics and cron
//! claims), each `[sql.<label>]` with its migrations applied, and each `[bucket.<name>]`. Invocation records, logs
//! and async invocations stay in the node's own `.updraft/state.db`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Notify;
use updraft_manifest::{AllowList, Function, LoadedManifest, allow};
use updraft_runtime::host::Grants;
use updraft_runtime::{QueueHandle, Resources, StreamHandle, TopicHandle};
use updraft_store::blob::BlobStore;
use updraft_store::sqlite::{Db, SqliteAsyncJobs, SqliteKv, SqliteQueues, SqliteRecords, state};
use updraft_store::writers::{Attributed, Writers};
use updraft_store::{
    AsyncStore, KvStore, Migration, QueueStore, RecordStore, ScheduleStore, SqlStore, TopicStore,
};

use crate::backends::{RuntimeConfig, StateContext};
use updraft_triggers::TopicSubscription;
use updraft_triggers::async_jobs::RETENTION as RESULT_RETENTION;

/// How long idempotency keys are remembered (DESIGN §9: 10 min).
const DEDUP_WINDOW_US: i64 = 10 * 60 * 1_000_000;
const DAY_US: i64 = 24 * 60 * 60 * 1_000_000;
/// How long a topic's log is kept (DESIGN §9: 7 days).
const TOPIC_LOG_RETENTION_US: i64 = 7 * DAY_US;
/// How long dead letters are kept (DESIGN §9: 14 days).
const DEAD_LETTER_RETENTION_US: i64 = 14 * DAY_US;
/// How long cron claims are kept (each trigger's latest always stays).
const CRON_CLAIM_RETENTION_US: i64 = 7 * DAY_US;

/// The app's open stores.
#[derive(Clone)]
pub struct AppStores {
    /// This node's invocation records and captured logs.
    pub records: Arc<dyn RecordStore>,
    /// Each `[kv.<label>]`.
    pub kv: BTreeMap<String, Arc<dyn KvStore>>,
    /// Each `[sql.<label>]`.
    pub sql: BTreeMap<String, Arc<dyn SqlStore>>,
    /// Each `[bucket.<name>]`.
    pub buckets: BTreeMap<String, Arc<dyn BlobStore>>,
    /// Which function wrote what through its buckets (the file triggers' loop guard).
    pub writers: Arc<Writers>,
    /// Each `[queue.<name>]`, and each topic subscription's delivery queue
    /// (`<topic>.<subscription>`), with the store it lives in and its wake-up.
    pub queues: BTreeMap<String, Arc<QueueHandle>>,
    /// Each `[topic.<name>]`, with its subscriptions.
    pub topics: BTreeMap<String, Arc<TopicHandle>>,
    /// Each `[stream.<name>]`, with its retention.
    pub streams: BTreeMap<String, Arc<StreamHandle>>,
    /// Async invocations, and the internal queue they run through.
    pub async_jobs: Arc<dyn AsyncStore>,
    /// The internal queue of async invocations.
    pub async_queue: Arc<QueueHandle>,
    /// Claims of cron occurrences.
    pub schedules: Arc<dyn ScheduleStore>,
    /// Migrations applied at this start, as `label/name`.
    pub applied: Vec<String>,
    /// Every store that holds queues (platform and local), for retention.
    queue_stores: Vec<Arc<dyn QueueStore>>,
    /// Where updraft's own platform queues live (cron deliveries).
    platform_queues: Arc<dyn QueueStore>,
    /// The store of topic logs, for retention.
    topic_store: Arc<dyn TopicStore>,
    /// The node's own `.updraft/state.db`.
    local: Db,
    /// Each `[stream.<name>]` as declared (its retention).
    stream_decls: BTreeMap<String, updraft_manifest::StreamDecl>,
}

impl AppStores {
    /// Opens every store `manifest` declares on the backends `runtime` binds, with the topic
    /// subscriptions the triggers declared, and applies pending migrations.
    pub async fn open(
        manifest: &LoadedManifest,
        runtime: &RuntimeConfig,
        subscriptions: &[TopicSubscription],
    ) -> anyhow::Result<Self> {
        let state_path = manifest.state_dir().join("state.db");
        let state = state::open(&state_path).with_context(|| {
            format!("cannot open the platform state `{}`", state_path.display())
        })?;
        let local_queues: Arc<dyn QueueStore> = Arc::new(SqliteQueues::new(state.clone()));
        let platform = runtime
            .open_state(&StateContext {
                app: manifest,
                local: &state,
            })
            .await?;
        let kv = platform.kv.clone();
        let queue_store = platform.queues;
        let queue_stores = vec![queue_store.clone(), local_queues.clone()];
        let queue_handle = |name: &str| {
            Arc::new(QueueHandle {
                name: name.to_owned(),
                store: queue_store.clone(),
                notify: Arc::new(Notify::new()),
                dedup_window_us: DEDUP_WINDOW_US,
            })
        };
        let mut queues: BTreeMap<String, Arc<QueueHandle>> = manifest
            .manifest
            .queue
            .keys()
            .map(|name| (name.clone(), queue_handle(name)))
            .collect();
        let topic_store = platform.topics;
        let retained_topics = topic_store.clone();
        let mut topics = BTreeMap::new();
        for name in manifest.manifest.topic.keys() {
            let mut fans = Vec::new();
            for s in subscriptions.iter().filter(|s| &s.topic == name) {
                let handle = queue_handle(&s.subscription.queue);
                fans.push((s.subscription.clone(), handle.notify.clone()));
                queues.insert(s.subscription.queue.clone(), handle);
            }
            let topic = TopicHandle {
                name: name.clone(),
                store: topic_store.clone(),
                subscriptions: fans,
                dedup_window_us: DEDUP_WINDOW_US,
            };
            topics.insert(name.clone(), Arc::new(topic));
        }
        let mut sql = BTreeMap::new();
        let mut applied = Vec::new();
        for (label, decl) in &manifest.manifest.sql {
            let db = runtime.open_sql(label, decl, manifest).await?;
            if let Some(dir) = &decl.migrations {
                let folder = migrations_for(&manifest.resolve(dir), runtime.sql_type(label));
                let migrations = read_migrations(label, &folder)?;
                for name in db.migrate(migrations).await? {
                    applied.push(format!("{label}/{name}"));
                }
            }
            sql.insert(label.clone(), db);
        }
        let mut buckets = BTreeMap::new();
        for (name, decl) in &manifest.manifest.bucket {
            buckets.insert(
                name.clone(),
                runtime.open_bucket(name, decl, manifest).await?,
            );
        }
        let streams = stream_handles(manifest, &platform.streams);
        let async_jobs: Arc<dyn AsyncStore> = Arc::new(SqliteAsyncJobs::new(state.clone()));
        // Async invocations are stored and queued in one local commit, so their queue stays
        // in the node's own state whatever the backend.
        let async_queue = Arc::new(QueueHandle {
            name: updraft_triggers::async_jobs::QUEUE.to_owned(),
            store: local_queues,
            notify: Arc::new(Notify::new()),
            dedup_window_us: DEDUP_WINDOW_US,
        });
        Ok(Self {
            records: Arc::new(SqliteRecords::new(state.clone())),
            kv,
            sql,
            buckets,
            writers: Arc::default(),
            queues,
            topics,
            streams,
            async_jobs,
            async_queue,
            schedules: platform.schedules,
            applied,
            platform_queues: queue_store.clone(),
            local: state.clone(),
            queue_stores,
            topic_store: retained_topics,
            stream_decls: manifest.manifest.stream.clone(),
        })
    }

    /// A queue of updraft's own (not declared in the manifest) in the platform state,
    /// shared by every node of the app.
    pub fn internal_queue(&self, name: &str) -> Arc<QueueHandle> {
        Arc::new(QueueHandle {
            name: name.to_owned(),
            store: self.platform_queues.clone(),
            notify: Arc::new(Notify::new()),
            dedup_window_us: DEDUP_WINDOW_US,
        })
    }

    /// The buckets as function `id` reaches them: its writes are recorded in `writers`.
    fn buckets_of(&self, id: &str) -> BTreeMap<String, Arc<dyn BlobStore>> {
        self.buckets
            .iter()
            .map(|(name, store)| {
                let attributed: Arc<dyn BlobStore> = Arc::new(Attributed::new(
                    store.clone(),
                    name,
                    id,
                    self.writers.clone(),
                ));
                (name.clone(), attributed)
            })
            .collect()
    }

    /// A kv namespace of updraft's own (a file trigger's index) in the node's own state.
    pub fn internal_kv(&self, namespace: &str) -> Arc<dyn KvStore> {
        Arc::new(SqliteKv::new(self.local.clone(), namespace))
    }

    /// Drops what is past its retention (DESIGN §9): expired idempotency keys and event
    /// ids, topic log entries after 7 days, dead letters after 14, old cron claims, async
    /// results after 24 hours.
    /// Returns how many rows went.
    /// Each kind is pruned even when another fails; the failures are returned together.
    pub async fn prune(&self, now_us: i64) -> (u64, Vec<String>) {
        let mut results = Vec::new();
        for queues in &self.queue_stores {
            results.push((
                "queues",
                queues.prune(now_us, DEAD_LETTER_RETENTION_US).await,
            ));
        }
        results.push((
            "topic logs",
            self.topic_store.prune(now_us, TOPIC_LOG_RETENTION_US).await,
        ));
        results.push((
            "cron claims",
            self.schedules.prune(now_us - CRON_CLAIM_RETENTION_US).await,
        ));
        for (name, decl) in &self.stream_decls {
            if let Some(stream) = self.streams.get(name) {
                let retention =
                    i64::try_from(decl.retention_duration().as_micros()).unwrap_or(i64::MAX);
                results.push((
                    "streams",
                    stream
                        .store
                        .prune(
                            now_us,
                            retention,
                            decl.max_bytes_per_partition(),
                            DEAD_LETTER_RETENTION_US,
                        )
                        .await,
                ));
            }
        }
        let async_retention = i64::try_from(RESULT_RETENTION.as_micros()).unwrap_or(i64::MAX);
        results.push((
            "async results",
            self.async_jobs.prune(now_us - async_retention).await,
        ));
        let mut total = 0;
        let mut errors = Vec::new();
        for (what, result) in results {
            match result {
                Ok(n) => total += n,
                Err(e) => errors.push(format!("cannot prune {what}: {e}")),
            }
        }
        (total, errors)
    }

    /// What `function` may reach: every declared resource of each allow-list, with a
    /// handle only where the function lists it.
    pub fn resources_for(&self, id: &str, function: &Function) -> Resources {
        Resources::default()
            .with(grants(allow::KV, &self.kv, function))
            .with(grants(allow::SQL, &self.sql, function))
            .with(grants(allow::BUCKETS, &self.buckets_of(id), function))
            .with(grants(allow::ENQUEUE, &self.queues, function))
            .with(grants(allow::PUBLISH, &self.topics, function))
            .with(grants(allow::APPEND, &self.streams, function))
    }
}

/// A handle on each `[stream.<name>]` the state backend opened.
fn stream_handles(
    manifest: &LoadedManifest,
    stores: &BTreeMap<String, Arc<dyn updraft_store::StreamStore>>,
) -> BTreeMap<String, Arc<StreamHandle>> {
    manifest
        .manifest
        .stream
        .iter()
        .filter_map(|(name, decl)| {
            let store = stores.get(name)?.clone();
            let handle = StreamHandle::new(name, store, decl.partition_count(), decl.key_source());
            Some((name.clone(), Arc::new(handle)))
        })
        .collect()
}

fn grants<T: ?Sized>(
    list: AllowList,
    declared: &BTreeMap<String, Arc<T>>,
    function: &Function,
) -> Grants<T> {
    Grants::new(list, declared, function.allowed(&list))
}

/// `dir/<backend>/` when it exists (`migrations/postgres/` beside `migrations/sqlite/`, for
/// SQL that differs between them), else `dir` itself.
fn migrations_for(dir: &Path, backend: &str) -> std::path::PathBuf {
    let own = dir.join(backend);
    if own.is_dir() { own } else { dir.to_path_buf() }
}

fn read_migrations(label: &str, dir: &Path) -> anyhow::Result<Vec<Migration>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "sql `{label}`: cannot read the migrations folder `{}`; create it or fix `migrations`",
            dir.display()
        )
    })?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let sql = std::fs::read_to_string(&path)
                .with_context(|| format!("sql `{label}`: cannot read `{}`", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(Migration { name, sql })
        })
        .collect()
}
