//! `updraft dlq ls|show|redrive`: dead letters of queues and topic subscriptions.

use updraft_server::api::{DeadLetterInfo, QueueInfo, Redriven};

use crate::commands::client::{Client, ClientArgs, Output, check};

#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Queues (and topic subscriptions, as `<topic>.<subscription>`) with their depths.
    Ls,
    /// The dead letters of one queue.
    Show {
        /// The queue, or `<topic>.<subscription>`.
        queue: String,
    },
    /// Make dead letters deliverable again, with fresh attempts.
    Redrive {
        /// The queue, or `<topic>.<subscription>`.
        queue: String,
        /// Only this message (default: all of them).
        #[arg(long)]
        id: Option<String>,
    },
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.client).await?;
    let json = args.client.output == Output::Json;
    match args.command {
        DlqCommand::Ls => {
            let queues: Vec<QueueInfo> = client.get("/queues").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&queues)?);
            } else {
                println!(
                    "{:<32} {:>8} {:>8} {:>8}",
                    "QUEUE", "READY", "WAITING", "DEAD"
                );
                for q in &queues {
                    println!(
                        "{:<32} {:>8} {:>8} {:>8}",
                        q.name, q.ready, q.waiting, q.dead
                    );
                }
            }
        }
        DlqCommand::Show { queue } => {
            let dead: Vec<DeadLetterInfo> =
                client.get(&format!("/queues/{queue}/dead-letters")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&dead)?);
            } else {
                for d in &dead {
                    println!(
                        "{}  event {} ({})  attempts {}  at {}\n    error: {}\n    data: {}",
                        d.id,
                        d.event_id,
                        d.event_type,
                        d.attempts,
                        d.dead_at,
                        d.last_error.as_deref().unwrap_or("-"),
                        d.data
                    );
                }
                if dead.is_empty() {
                    println!("no dead letters in `{queue}`");
                }
            }
        }
        DlqCommand::Redrive { queue, id } => {
            let mut req =
                client.request(reqwest::Method::POST, &format!("/queues/{queue}/redrive"));
            if let Some(id) = id {
                req = req.query(&[("id", id)]);
            }
            let v: Redriven = check(client.send(req).await?).await?.json().await?;
            if json {
                println!("{}", serde_json::to_string(&v)?);
            } else {
                println!("redrove {} message(s) of `{queue}`", v.redriven);
            }
        }
    }
    Ok(())
}
