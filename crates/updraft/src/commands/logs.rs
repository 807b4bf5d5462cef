//! `updraft logs [-f]`: what functions printed, newest last.

use std::time::Duration;

use updraft_server::api::LogLine;

use crate::commands::client::{Client, ClientArgs, Output};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Only this function.
    #[arg(long)]
    pub function: Option<String>,
    /// Only this invocation.
    #[arg(long)]
    pub invocation: Option<String>,
    /// Keep printing new lines as they arrive.
    #[arg(long, short)]
    pub follow: bool,
    /// How many recent lines to start with.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.client).await?;
    let mut after: Option<i64> = None;
    loop {
        let mut query = vec![format!(
            "limit={}",
            if after.is_some() { 1000 } else { args.limit }
        )];
        if let Some(f) = &args.function {
            query.push(format!("function={f}"));
        }
        if let Some(i) = &args.invocation {
            query.push(format!("invocation={i}"));
        }
        if let Some(a) = after {
            query.push(format!("after={a}"));
        }
        let lines: Vec<LogLine> = client.get(&format!("/logs?{}", query.join("&"))).await?;
        for line in &lines {
            print_line(line, args.client.output)?;
            after = Some(line.seq);
        }
        if !args.follow {
            return Ok(());
        }
        after = after.or(Some(0));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn print_line(line: &LogLine, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string(line)?),
        Output::Text => println!(
            "{} {} {} {}: {}",
            line.time, line.function, line.invocation, line.stream, line.line
        ),
    }
    Ok(())
}
