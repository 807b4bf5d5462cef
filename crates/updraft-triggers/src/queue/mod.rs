//! `[[trigger.queue]]`: an event function consuming a `[queue.<name>]` on the shared worker
//! loop, with the queue's delivery settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use updraft_manifest::{LoadedManifest, ManifestError, QueueDecl, declared, unknown_function};

use crate::worker::{self, Delivery, EventConsumer};
use crate::{At, InfoContext, StartContext, Trigger, TriggerInfo};

/// One `[[trigger.queue]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The `[queue.<name>]` to consume.
    pub queue: String,
    /// The event function that handles its messages.
    pub function: String,
    /// Messages per invocation (default 1).
    #[serde(default)]
    pub batch: Option<u32>,
    /// Invocations at once (default: the function's `max_concurrency`).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

/// A checked queue trigger.
pub struct Queue {
    queue: String,
    work: EventWork,
}

/// What every trigger that runs an event function off a queue has: the function, the
/// delivery settings of the declared `[queue]` or `[topic]`, its batch and concurrency.
pub(crate) struct EventWork {
    pub(crate) function: String,
    decl: QueueDecl,
    batch: Option<u32>,
    max_concurrency: Option<u32>,
}

impl EventWork {
    /// Checks that `name` is among `decls` (the manifest's `[<field>.*]` tables), that the
    /// function is declared, and that the numbers are sound.
    pub(crate) fn check(
        app: &LoadedManifest,
        at: At,
        (field, decls): (&str, &BTreeMap<String, QueueDecl>),
        name: &str,
        function: &str,
        batch: Option<u32>,
        max_concurrency: Option<u32>,
    ) -> Result<Self, ManifestError> {
        let Some(decl) = decls.get(name) else {
            return Err(at.invalid(
                field,
                format!(
                    "{field} `{name}` is not declared; add a `[{field}.{name}]` table{}",
                    declared(decls.keys())
                ),
            ));
        };
        if !app.manifest.function.contains_key(function) {
            return Err(unknown_function(
                &app.manifest,
                at.key("function"),
                function,
            ));
        }
        if batch == Some(0) || max_concurrency == Some(0) {
            return Err(ManifestError::invalid(
                at.table(),
                "`batch` and `max_concurrency` must be at least 1",
            ));
        }
        Ok(Self {
            function: function.to_owned(),
            decl: decl.clone(),
            batch,
            max_concurrency,
        })
    }

    /// Runs the function off `queue` on the shared worker loop until the node drains.
    pub(crate) fn start(
        &self,
        at: At,
        node: &StartContext<'_>,
        queue: &str,
        trigger: &'static str,
    ) -> anyhow::Result<()> {
        let function = node.event_function(at, &self.function)?;
        let handle = node
            .queues
            .get(queue)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("`{}`: queue `{queue}` is not open", at.table()))?;
        let delivery = Delivery::declared(
            &self.decl,
            self.batch.unwrap_or(1),
            self.max_concurrency
                .unwrap_or(function.spec().max_concurrency),
            trigger,
        );
        let consumer = Arc::new(EventConsumer { function, trigger });
        worker::spawn(handle, consumer, delivery, node.stop.clone());
        Ok(())
    }

    /// Its settings, for the admin API.
    pub(crate) fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "batch": self.batch.unwrap_or(1),
            "max_concurrency": self.max_concurrency,
            "max_attempts": self.decl.attempts(),
        })
    }
}

impl Trigger for Queue {
    const KIND: &'static str = "queue";
    type Config = QueueConfig;

    fn new(config: QueueConfig, app: &LoadedManifest, at: At) -> Result<Self, ManifestError> {
        let work = EventWork::check(
            app,
            at,
            ("queue", &app.manifest.queue),
            &config.queue,
            &config.function,
            config.batch,
            config.max_concurrency,
        )?;
        Ok(Self {
            queue: config.queue,
            work,
        })
    }

    fn function(&self) -> Option<&str> {
        Some(&self.work.function)
    }

    fn start(&self, at: At, node: &mut StartContext<'_>) -> anyhow::Result<()> {
        self.work.start(at, node, &self.queue, Self::KIND)
    }

    fn describe(&self) -> Option<String> {
        Some(format!("queue `{}`", self.queue))
    }

    async fn info(&self, _node: &InfoContext<'_>) -> anyhow::Result<TriggerInfo> {
        let mut details = self.work.details();
        details["queue"] = self.queue.clone().into();
        Ok(TriggerInfo {
            kind: Self::KIND.to_owned(),
            summary: format!("queue `{}`", self.queue),
            details,
        })
    }
}
