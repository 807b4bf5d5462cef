//! `[[trigger.topic]]`: a subscription of an event function to a `[topic.<name>]`. It
//! declares a delivery queue `<topic>.<subscription>` that the topic fills at publish time
//! (filtered on the event's type and subject), and consumes it on the shared worker loop.

use serde::Deserialize;
use updraft_manifest::{LoadedManifest, ManifestError, is_id};
use updraft_store::Subscription;

use crate::queue::EventWork;
use crate::{At, Declarations, InfoContext, StartContext, TopicSubscription, Trigger, TriggerInfo};

/// One `[[trigger.topic]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// The `[topic.<name>]`.
    pub topic: String,
    /// The subscription's name (default: the function id); its deliveries and dead letters
    /// go through the queue `<topic>.<subscription>`.
    #[serde(default)]
    pub subscription: Option<String>,
    /// Which events it receives.
    #[serde(default)]
    pub filter: Option<TopicFilter>,
    /// The event function that handles them.
    pub function: String,
    /// Events per invocation (default 1).
    #[serde(default)]
    pub batch: Option<u32>,
    /// Invocations at once (default: the function's `max_concurrency`).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
}

/// `filter = { type = "order.", subject_prefix = "eu/" }`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicFilter {
    /// The event type: exact, or a prefix when it ends in `.`.
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    /// A prefix of the event subject.
    #[serde(default)]
    pub subject_prefix: Option<String>,
}

/// The queue a topic subscription delivers through.
pub fn subscription_queue(topic: &str, subscription: &str) -> String {
    format!("{topic}.{subscription}")
}

/// A checked topic subscription.
pub struct Topic {
    config: TopicConfig,
    subscription: String,
    work: EventWork,
}

impl Topic {
    fn queue(&self) -> String {
        subscription_queue(&self.config.topic, &self.subscription)
    }

    fn filter_text(&self) -> String {
        let filter = self.config.filter.clone().unwrap_or_default();
        let mut only = Vec::new();
        if let Some(ty) = &filter.ty {
            only.push(format!("type {ty}"));
        }
        if let Some(p) = &filter.subject_prefix {
            only.push(format!("subject {p}*"));
        }
        if only.is_empty() {
            String::new()
        } else {
            format!(" ({})", only.join(", "))
        }
    }
}

impl Trigger for Topic {
    const KIND: &'static str = "topic";
    type Config = TopicConfig;

    fn new(config: TopicConfig, app: &LoadedManifest, at: At) -> Result<Self, ManifestError> {
        let work = EventWork::check(
            app,
            at,
            ("topic", &app.manifest.topic),
            &config.topic,
            &config.function,
            config.batch,
            config.max_concurrency,
        )?;
        let subscription = config
            .subscription
            .clone()
            .unwrap_or_else(|| config.function.clone());
        if !is_id(&subscription) {
            return Err(at.invalid(
                "subscription",
                "subscription names use lowercase letters, digits and `-`, starting with a letter",
            ));
        }
        if app
            .manifest
            .queue
            .contains_key(&subscription_queue(&config.topic, &subscription))
        {
            return Err(at.invalid(
                "subscription",
                "its delivery queue name is taken by a `[queue]`",
            ));
        }
        Ok(Self {
            work,
            subscription,
            config,
        })
    }

    fn function(&self) -> Option<&str> {
        Some(&self.work.function)
    }

    fn declare(&self, at: At, app: &mut Declarations) -> Result<(), ManifestError> {
        let queue = self.queue();
        if app
            .subscriptions
            .iter()
            .any(|s| s.subscription.queue == queue)
        {
            return Err(at.invalid(
                "subscription",
                format!(
                    "topic `{}` already has a subscription `{}`; give this trigger its own `subscription = \"...\"`",
                    self.config.topic, self.subscription
                ),
            ));
        }
        let filter = self.config.filter.clone().unwrap_or_default();
        app.subscriptions.push(TopicSubscription {
            topic: self.config.topic.clone(),
            subscription: Subscription {
                queue,
                type_filter: filter.ty,
                subject_prefix: filter.subject_prefix,
            },
        });
        Ok(())
    }

    fn start(&self, at: At, node: &mut StartContext<'_>) -> anyhow::Result<()> {
        self.work.start(at, node, &self.queue(), Self::KIND)
    }

    fn describe(&self) -> Option<String> {
        Some(format!(
            "topic `{}` subscription `{}`{}",
            self.config.topic,
            self.subscription,
            self.filter_text()
        ))
    }

    async fn info(&self, _node: &InfoContext<'_>) -> anyhow::Result<TriggerInfo> {
        let filter = self.config.filter.clone().unwrap_or_default();
        let mut details = self.work.details();
        details["topic"] = self.config.topic.clone().into();
        details["subscription"] = self.subscription.clone().into();
        details["queue"] = self.queue().into();
        details["filter"] =
            serde_json::json!({ "type": filter.ty, "subject_prefix": filter.subject_prefix });
        Ok(TriggerInfo {
            kind: Self::KIND.to_owned(),
            summary: self.describe().unwrap_or_default(),
            details,
        })
    }
}
