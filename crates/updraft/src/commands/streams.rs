//! `updraft streams ls|dlq|replay`: a running app's streams, each consumer's lag per
//! partition, the records consumers gave up on, and replay.

use updraft_server::api::{StreamDeadLetterInfo, StreamInfo, StreamReplayed};

use crate::commands::client::{Client, ClientArgs, Output, check};

#[derive(Debug, clap::Args)]
pub struct StreamsArgs {
    #[command(subcommand)]
    pub command: StreamsCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum StreamsCommand {
    /// Each stream: events kept, and each consumer's lag per partition.
    Ls,
    /// Records a consumer gave up on, with their partition, offset and error.
    Dlq {
        /// The stream.
        stream: String,
        /// Only this consumer's (a function id, unless its trigger names a `consumer`).
        #[arg(long)]
        function: Option<String>,
    },
    /// Process a stream's events again: move a consumer back to an offset or a time.
    Replay {
        /// The stream.
        stream: String,
        /// The consumer (a function id, unless its trigger names a `consumer`).
        #[arg(long)]
        function: String,
        /// Only this partition (default: all).
        #[arg(long)]
        partition: Option<u32>,
        /// From this offset.
        #[arg(long, conflicts_with = "since", required_unless_present = "since")]
        from_offset: Option<u64>,
        /// From events stored at or after this time (RFC 3339, `2026-01-31T12:00:00Z`).
        #[arg(long)]
        since: Option<String>,
    },
}

pub async fn run(args: StreamsArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.client).await?;
    let json = args.client.output == Output::Json;
    match args.command {
        StreamsCommand::Ls => {
            let streams: Vec<StreamInfo> = client.get("/streams").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&streams)?);
                return Ok(());
            }
            if streams.is_empty() {
                println!("no streams; declare one with a `[stream.<name>]` table");
            }
            for s in &streams {
                println!(
                    "stream `{}`: {} partitions, {} events, {} bytes",
                    s.name, s.partitions, s.events, s.bytes
                );
                for c in &s.consumers {
                    let behind: Vec<String> = c
                        .partitions
                        .iter()
                        .filter(|p| p.lag > 0)
                        .map(|p| format!("p{}:{}", p.partition, p.lag))
                        .collect();
                    println!(
                        "  consumer `{}`: lag {}{}, {} dead letters",
                        c.name,
                        c.lag,
                        if behind.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", behind.join(" "))
                        },
                        c.dead_letters
                    );
                }
            }
        }
        StreamsCommand::Dlq { stream, function } => {
            let mut path = format!("/streams/{stream}/dead-letters");
            if let Some(f) = &function {
                path.push_str(&format!("?consumer={f}"));
            }
            let dead: Vec<StreamDeadLetterInfo> = client.get(&path).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&dead)?);
                return Ok(());
            }
            println!(
                "{:<12} {:>9} {:>10}  {:<27} ERROR",
                "CONSUMER", "PARTITION", "OFFSET", "DEAD AT"
            );
            for d in &dead {
                println!(
                    "{:<12} {:>9} {:>10}  {:<27} {}",
                    d.consumer, d.partition, d.offset, d.dead_at, d.error
                );
            }
        }
        StreamsCommand::Replay {
            stream,
            function,
            partition,
            from_offset,
            since,
        } => {
            let mut query = vec![("consumer", function.clone())];
            query.extend(partition.map(|p| ("partition", p.to_string())));
            query.extend(from_offset.map(|o| ("from_offset", o.to_string())));
            query.extend(since.map(|s| ("since", s)));
            let req = client
                .request(reqwest::Method::POST, &format!("/streams/{stream}/replay"))
                .query(&query);
            let done: StreamReplayed = check(client.send(req).await?).await?.json().await?;
            if json {
                println!("{}", serde_json::to_string(&done)?);
            } else {
                println!(
                    "consumer `{function}` of stream `{stream}` goes back over {} events in {} partitions",
                    done.events,
                    done.partitions.len()
                );
            }
        }
    }
    Ok(())
}
