//! `[[trigger.stream]]`: an event function consuming a `[stream.<name>]`, one partition
//! after another in order and the partitions in parallel (up to `max_concurrency`).
//!
//! Each partition runs its own loop ([`consume`]): read a batch from the consumer's
//! checkpoint, run the function, and move the checkpoint past the batch once it succeeds,
//! so a crash redelivers at most the batch in hand. A failing batch is retried with
//! backoff, then split in halves until the record that fails alone is found; that record
//! is dead-lettered with its partition and offset and the partition goes on. A partition
//! idle for the stream's `tick` gets an `updraft.stream.tick` event, so windows close on
//! quiet keys.

mod consume;

use std::time::Duration;

use serde::Deserialize;
use updraft_manifest::{
    HumanDuration, LoadedManifest, ManifestError, declared, is_id, unknown_function,
};

use crate::{At, InfoContext, StartContext, Trigger, TriggerInfo};

pub use consume::TICK_TYPE;

/// Records per invocation when the trigger does not say.
const DEFAULT_BATCH: u32 = 100;
/// Most records per invocation.
const MAX_BATCH: u32 = 10_000;
/// Tries of a whole batch, and of a lone record, before giving up on it.
const DEFAULT_ATTEMPTS: u32 = 3;

/// One `[[trigger.stream]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The `[stream.<name>]`.
    pub stream: String,
    /// The event function that handles its events.
    pub function: String,
    /// The consumer's name (default: the function id): its checkpoints and dead letters.
    #[serde(default)]
    pub consumer: Option<String>,
    /// How records are grouped per invocation.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// Partitions processed at once (default: all of them).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Where a consumer that has no checkpoint yet starts.
    #[serde(default)]
    pub start: Start,
    /// Tries of a failing batch, and of the lone record found by splitting it, before the
    /// record is dead-lettered (default 3).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The first retry's delay (default 1s; doubling, at most 30s).
    #[serde(default)]
    pub backoff: Option<HumanDuration>,
}

/// `batch = { max = 100, wait = "50ms" }`
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most records per invocation (default 100).
    #[serde(default)]
    pub max: Option<u32>,
    /// How long to wait for a fuller batch after the first record arrives (default: no
    /// wait).
    #[serde(default)]
    pub wait: Option<HumanDuration>,
}

/// Where a new consumer starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// With events stored from now on.
    #[default]
    Latest,
    /// With the oldest event kept.
    Earliest,
}

/// A checked stream trigger.
pub struct Stream {
    config: StreamConfig,
    consumer: String,
    settings: consume::Settings,
}

impl Trigger for Stream {
    const KIND: &'static str = "stream";
    type Config = StreamConfig;

    fn new(config: StreamConfig, app: &LoadedManifest, at: At) -> Result<Self, ManifestError> {
        let m = &app.manifest;
        let Some(decl) = m.stream.get(&config.stream) else {
            return Err(at.invalid(
                "stream",
                format!(
                    "stream `{}` is not declared; add a `[stream.{}]` table{}",
                    config.stream,
                    config.stream,
                    declared(m.stream.keys())
                ),
            ));
        };
        if !m.function.contains_key(&config.function) {
            return Err(unknown_function(m, at.key("function"), &config.function));
        }
        let consumer = config
            .consumer
            .clone()
            .unwrap_or_else(|| config.function.clone());
        if !is_id(&consumer) {
            return Err(at.invalid(
                "consumer",
                "consumer names use lowercase letters, digits and `-`, starting with a letter",
            ));
        }
        let batch = config.batch.and_then(|b| b.max).unwrap_or(DEFAULT_BATCH);
        if batch == 0 || batch > MAX_BATCH {
            return Err(at.invalid(
                "batch.max",
                format!("{batch} records per batch: give between 1 and {MAX_BATCH}"),
            ));
        }
        if config.max_concurrency == Some(0) || config.max_attempts == Some(0) {
            return Err(ManifestError::invalid(
                at.table(),
                "`max_concurrency` and `max_attempts` must be at least 1",
            ));
        }
        let settings = consume::Settings {
            batch,
            wait: config.batch.and_then(|b| b.wait).map(|w| w.0),
            max_attempts: config.max_attempts.unwrap_or(DEFAULT_ATTEMPTS),
            backoff: config.backoff.map_or(Duration::from_secs(1), |b| b.0),
            tick: decl.tick_interval(),
            start: config.start,
            concurrency: config
                .max_concurrency
                .unwrap_or(decl.partition_count())
                .min(decl.partition_count()),
        };
        Ok(Self {
            config,
            consumer,
            settings,
        })
    }

    fn function(&self) -> Option<&str> {
        Some(&self.config.function)
    }

    fn start(&self, at: At, node: &mut StartContext<'_>) -> anyhow::Result<()> {
        let function = node.event_function(at, &self.config.function)?;
        let stream = node
            .streams
            .get(&self.config.stream)
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "`{}`: stream `{}` is not open",
                    at.table(),
                    self.config.stream
                )
            })?;
        consume::spawn(
            stream,
            function,
            self.consumer.clone(),
            node.claimant.clone(),
            self.settings.clone(),
            node.stop.clone(),
        );
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        Some(format!(
            "stream `{}` consumer `{}`",
            self.config.stream, self.consumer
        ))
    }

    async fn info(&self, _node: &InfoContext<'_>) -> anyhow::Result<TriggerInfo> {
        Ok(TriggerInfo {
            kind: Self::KIND.to_owned(),
            summary: self.describe().unwrap_or_default(),
            details: serde_json::json!({
                "stream": self.config.stream,
                "consumer": self.consumer,
                "batch": self.settings.batch,
                "max_concurrency": self.settings.concurrency,
                "max_attempts": self.settings.max_attempts,
                "start": match self.settings.start { Start::Latest => "latest", Start::Earliest => "earliest" },
            }),
        })
    }
}
