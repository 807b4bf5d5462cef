//! `[[trigger.file]]`: an event function run once per finished change of an object in a
//! `[bucket.<name>]` (DESIGN §9 "Files").
//!
//! A scanner per trigger ([`scan`]) lists the bucket, compares the listing with a persisted
//! index (name → size, etag, modified) and enqueues one event per change on the trigger's
//! own queue `<bucket>.<function>` (dead letters: `<bucket>.<function>.dlq`), which the
//! shared worker loop consumes with retries and backoff. The index is written only after
//! the event is durably enqueued (with an idempotency key of the change), so a crash in
//! between repeats nothing and loses nothing. A folder bucket is watched (inotify), so a
//! file closed after writing or renamed into place fires at once; any other change fires
//! once it has not changed for `settle`. Remote buckets are listed every `poll`.

mod scan;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use updraft_manifest::{HumanDuration, LoadedManifest, ManifestError, declared, unknown_function};

use crate::worker::{self, Delivery, EventConsumer};
use crate::{At, InfoContext, StartContext, Trigger, TriggerInfo};

/// `settle` when not given (DESIGN §9).
const DEFAULT_SETTLE: Duration = Duration::from_secs(1);
/// `poll` when not given (DESIGN §9: S3 every 5 s). A watched folder is also re-listed this
/// often, to catch what the watch missed.
const DEFAULT_POLL: Duration = Duration::from_secs(5);

/// What kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// A new object.
    Created,
    /// An object rewritten (its etag changed).
    Modified,
    /// An object gone.
    Deleted,
}

impl Change {
    /// The event type, `updraft.file.<change>`.
    pub fn event_type(self) -> &'static str {
        match self {
            Change::Created => "updraft.file.created",
            Change::Modified => "updraft.file.modified",
            Change::Deleted => "updraft.file.deleted",
        }
    }
}

/// What the trigger does with objects already there on its first start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Existing {
    /// They fire as created (default).
    #[default]
    Fire,
    /// They are recorded without firing.
    Skip,
}

/// One `[[trigger.file]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The `[bucket.<name>]` to watch.
    pub bucket: String,
    /// The event function run per change.
    pub function: String,
    /// Only names starting with this (`incoming/`).
    #[serde(default)]
    pub prefix: String,
    /// Only names ending with this (`.csv`).
    #[serde(default)]
    pub suffix: String,
    /// Which changes fire (default `["created", "modified"]`).
    #[serde(default)]
    pub events: Option<Vec<Change>>,
    /// Events per invocation (default 1).
    #[serde(default)]
    pub batch: Option<u32>,
    /// Invocations at once (default: the function's `max_concurrency`).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Objects present at the first start: `"fire"` (default) or `"skip"`.
    #[serde(default)]
    pub existing: Existing,
    /// How long a change not seen to close must stay unchanged before it fires (default 1 s).
    #[serde(default)]
    pub settle: Option<HumanDuration>,
    /// How often the bucket is listed (default 5 s).
    #[serde(default)]
    pub poll: Option<HumanDuration>,
    /// Deliveries per event before it is dead-lettered (default 5).
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// A checked file trigger.
pub struct File {
    config: FileConfig,
    events: Vec<Change>,
    status: Arc<scan::Status>,
}

impl File {
    /// The queue its events go through: `<bucket>.<function>`.
    fn queue(&self) -> String {
        format!("{}.{}", self.config.bucket, self.config.function)
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "file `{}/{}*{}`",
            self.config.bucket, self.config.prefix, self.config.suffix
        );
        let names: Vec<&str> = self
            .events
            .iter()
            .map(|e| e.event_type().trim_start_matches("updraft.file."))
            .collect();
        s.push_str(&format!(" ({})", names.join(", ")));
        s
    }
}

impl Trigger for File {
    const KIND: &'static str = "file";
    type Config = FileConfig;

    fn new(config: FileConfig, app: &LoadedManifest, at: At) -> Result<Self, ManifestError> {
        if !app.manifest.bucket.contains_key(&config.bucket) {
            return Err(at.invalid(
                "bucket",
                format!(
                    "bucket `{}` is not declared; add a `[bucket.{}]` table{}",
                    config.bucket,
                    config.bucket,
                    declared(app.manifest.bucket.keys())
                ),
            ));
        }
        if !app.manifest.function.contains_key(&config.function) {
            return Err(unknown_function(
                &app.manifest,
                at.key("function"),
                &config.function,
            ));
        }
        if config.batch == Some(0)
            || config.max_concurrency == Some(0)
            || config.max_attempts == Some(0)
        {
            return Err(ManifestError::invalid(
                at.table(),
                "`batch`, `max_concurrency` and `max_attempts` must be at least 1",
            ));
        }
        let events = config
            .events
            .clone()
            .unwrap_or_else(|| vec![Change::Created, Change::Modified]);
        if events.is_empty() {
            return Err(at.invalid(
                "events",
                "give at least one of \"created\", \"modified\", \"deleted\"",
            ));
        }
        if config
            .poll
            .is_some_and(|p| p.0 < Duration::from_millis(100))
        {
            return Err(at.invalid("poll", "poll at most every 100ms"));
        }
        Ok(Self {
            config,
            events,
            status: Arc::default(),
        })
    }

    fn function(&self) -> Option<&str> {
        Some(&self.config.function)
    }

    fn start(&self, at: At, node: &mut StartContext<'_>) -> anyhow::Result<()> {
        let function = node.event_function(at, &self.config.function)?;
        let bucket = node
            .buckets
            .get(&self.config.bucket)
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "`{}`: bucket `{}` is not open",
                    at.table(),
                    self.config.bucket
                )
            })?;
        let queue = (node.platform_queue)(&self.queue());
        // Listed with the app's queues, so `updraft dlq` reaches its dead letters.
        node.queues.insert(queue.name.clone(), queue.clone());
        let concurrency = self
            .config
            .max_concurrency
            .unwrap_or(function.spec().max_concurrency);
        let delivery = Delivery {
            max_attempts: self.config.max_attempts.unwrap_or(5),
            lease: Duration::from_secs(30),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            batch: self.config.batch.unwrap_or(1),
            concurrency,
            trigger: Self::KIND,
        };
        let consumer = Arc::new(EventConsumer {
            function,
            trigger: Self::KIND,
        });
        worker::spawn(queue.clone(), consumer, delivery, node.stop.clone());
        let key = format!(
            "{}:{}:{}:{}",
            self.config.bucket, self.config.function, self.config.prefix, self.config.suffix
        );
        let plan = scan::Plan {
            bucket_name: self.config.bucket.clone(),
            function: self.config.function.clone(),
            key: key.clone(),
            prefix: self.config.prefix.clone(),
            suffix: self.config.suffix.clone(),
            events: self.events.clone(),
            existing: self.config.existing,
            settle: self.config.settle.map_or(DEFAULT_SETTLE, |d| d.0),
            poll: self.config.poll.map_or(DEFAULT_POLL, |d| d.0),
        };
        let index = (node.internal_kv)(&format!("updraft.files.{key}"));
        scan::spawn(
            plan,
            bucket,
            index,
            queue,
            self.status.clone(),
            node.writers.clone(),
            node.stop.clone(),
        );
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        Some(self.summary())
    }

    async fn info(&self, _node: &InfoContext<'_>) -> anyhow::Result<TriggerInfo> {
        Ok(TriggerInfo {
            kind: Self::KIND.to_owned(),
            summary: self.summary(),
            details: serde_json::json!({
                "bucket": self.config.bucket,
                "prefix": self.config.prefix,
                "suffix": self.config.suffix,
                "events": self.events.iter().map(|e| e.event_type()).collect::<Vec<_>>(),
                "queue": self.queue(),
                "batch": self.config.batch.unwrap_or(1),
                "watching": self.status.ready.load(std::sync::atomic::Ordering::Relaxed),
                "indexed": self.status.indexed.load(std::sync::atomic::Ordering::Relaxed),
            }),
        })
    }
}
