//! `updraft events publish|enqueue|replay`: topics and queues of a running updraft.

use std::time::{SystemTime, UNIX_EPOCH};

use updraft_server::api::{Enqueued, Published, Replayed};

use crate::commands::client::{Client, ClientArgs, Output, check};
use crate::commands::invoke::read_body;

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Publish one event to a topic.
    Publish {
        /// The topic.
        topic: String,
        #[command(flatten)]
        event: EventArgs,
    },
    /// Add one event to a queue (declared queues, or a subscription's `<topic>.<name>`).
    Enqueue {
        /// The queue.
        queue: String,
        #[command(flatten)]
        event: EventArgs,
        /// Deliver no earlier than this long from now, e.g. `30s`.
        #[arg(long)]
        delay: Option<String>,
    },
    /// Deliver a topic's log again to one subscription, from a position or a time.
    Replay {
        /// The topic.
        topic: String,
        /// The subscription (its name).
        #[arg(long)]
        subscription: String,
        /// From this log position.
        #[arg(long, conflicts_with = "since", required_unless_present = "since")]
        from_position: Option<i64>,
        /// From this time (RFC 3339, e.g. 2026-01-31T12:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
}

/// The event `publish` and `enqueue` send.
#[derive(Debug, clap::Args)]
pub struct EventArgs {
    /// The event type, e.g. `order.created`.
    #[arg(long = "type")]
    ty: String,
    /// The data: text, `@FILE`, or `-` for standard input.
    #[arg(long, short)]
    data: Option<String>,
    /// The subject.
    #[arg(long)]
    subject: Option<String>,
    /// The event id (default: generated); the same source and id within 10 minutes is
    /// stored once.
    #[arg(long)]
    id: Option<String>,
    /// The source.
    #[arg(long, default_value = "/cli")]
    source: String,
    /// The data's content type.
    #[arg(long, default_value = "application/json")]
    content_type: String,
}

impl EventArgs {
    /// A binary-mode CloudEvents request to `path`.
    fn request(self, client: &Client, path: &str) -> anyhow::Result<reqwest::RequestBuilder> {
        let id = self.id.unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("cli-{nanos:x}")
        });
        let mut req = client
            .request(reqwest::Method::POST, path)
            .header("ce-specversion", "1.0")
            .header("ce-id", &id)
            .header("ce-source", &self.source)
            .header("ce-type", &self.ty)
            .header(reqwest::header::CONTENT_TYPE, &self.content_type)
            .body(read_body(self.data.as_deref())?);
        if let Some(s) = self.subject {
            req = req.header("ce-subject", s);
        }
        Ok(req)
    }
}

pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.client).await?;
    let json = args.client.output == Output::Json;
    match args.command {
        EventsCommand::Publish { topic, event } => {
            let req = event.request(&client, &format!("/topics/{topic}/events"))?;
            let v: Published = check(client.send(req).await?).await?.json().await?;
            let text = format!(
                "published {} (duplicates {}) at {:?}",
                v.published, v.duplicates, v.positions
            );
            show(json, &v, text)
        }
        EventsCommand::Enqueue {
            queue,
            event,
            delay,
        } => {
            let mut req = event.request(&client, &format!("/queues/{queue}/messages"))?;
            if let Some(d) = delay {
                req = req.query(&[("delay", d)]);
            }
            let v: Enqueued = check(client.send(req).await?).await?.json().await?;
            let text = format!("enqueued {} (duplicates {})", v.enqueued, v.duplicates);
            show(json, &v, text)
        }
        EventsCommand::Replay {
            topic,
            subscription,
            from_position,
            since,
        } => {
            let mut query = vec![("subscription", subscription)];
            if let Some(p) = from_position {
                query.push(("from_position", p.to_string()));
            }
            if let Some(s) = since {
                query.push(("since", s));
            }
            let req = client
                .request(reqwest::Method::POST, &format!("/topics/{topic}/replay"))
                .query(&query);
            let v: Replayed = check(client.send(req).await?).await?.json().await?;
            let text = format!("replayed {}", v.replayed);
            show(json, &v, text)
        }
    }
}

/// Prints an answer of the API: pretty JSON under `--output json`, else `text`.
fn show<T: serde::Serialize>(json: bool, answer: &T, text: String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        println!("{text}");
    }
    Ok(())
}
