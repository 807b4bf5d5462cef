//! `updraft events publish|replay`: topics of a running updraft.

use std::time::{SystemTime, UNIX_EPOCH};

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
        /// The event type, e.g. `order.created`.
        #[arg(long = "type")]
        ty: String,
        /// The data: text, `@FILE`, or `-` for standard input.
        #[arg(long, short)]
        data: Option<String>,
        /// The subject.
        #[arg(long)]
        subject: Option<String>,
        /// The event id (default: generated); the same id within 10 minutes is stored once.
        #[arg(long)]
        id: Option<String>,
        /// The source.
        #[arg(long, default_value = "/cli")]
        source: String,
        /// The data's content type.
        #[arg(long, default_value = "application/json")]
        content_type: String,
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

pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let response = match args.command {
        EventsCommand::Publish {
            topic,
            ty,
            data,
            subject,
            id,
            source,
            content_type,
        } => {
            let id = id.unwrap_or_else(|| {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                format!("cli-{nanos:x}")
            });
            let mut req = client
                .request(reqwest::Method::POST, &format!("/topics/{topic}/events"))
                .header("ce-specversion", "1.0")
                .header("ce-id", &id)
                .header("ce-source", &source)
                .header("ce-type", &ty)
                .header(reqwest::header::CONTENT_TYPE, &content_type)
                .body(read_body(data.as_deref())?);
            if let Some(s) = subject {
                req = req.header("ce-subject", s);
            }
            check(client.send(req).await?).await?
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
            check(client.send(req).await?).await?
        }
    };
    let value: serde_json::Value = response.json().await?;
    match args.client.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&value)?),
        Output::Text => {
            if let Some(n) = value.get("published") {
                println!(
                    "published {n} (duplicates {}) at {}",
                    value["duplicates"], value["positions"]
                );
            } else {
                println!("replayed {}", value["replayed"]);
            }
        }
    }
    Ok(())
}
