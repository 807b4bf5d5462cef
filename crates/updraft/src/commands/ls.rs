//! `updraft ls`: the functions of the running app, their routes and their other triggers
//! (cron triggers with the last and next run), and what each may reach.

use updraft_server::api::FunctionInfo;

use crate::commands::client::{Client, ClientArgs, Output};

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: LsArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.client).await?;
    let functions: Vec<FunctionInfo> = client.get("/functions").await?;
    if args.client.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&functions)?);
        return Ok(());
    }
    println!(
        "{:<24} {:>9} {:>10} {:>6}  ROUTES",
        "FUNCTION", "TIMEOUT", "MEMORY", "MAX"
    );
    for f in &functions {
        let routes: Vec<String> = f
            .routes
            .iter()
            .map(|r| format!("{} {}", r.methods.join(","), r.route))
            .collect();
        println!(
            "{:<24} {:>8}s {:>7} MiB {:>6}  {}",
            f.id,
            f.timeout_ms as f64 / 1000.0,
            f.memory_bytes >> 20,
            f.max_concurrency,
            if routes.is_empty() {
                "-".to_owned()
            } else {
                routes.join("  ")
            }
        );
        // Routes are in their column; every other trigger goes under it.
        for t in f.triggers.iter().filter(|t| t.kind != "http") {
            println!("{:55}{}", "", t.summary);
        }
        if let Some(reach) = reach(f) {
            println!("{:55}may use {reach}", "");
        }
    }
    Ok(())
}

/// `kv cache, sql orders, enqueue jobs`: the function's non-empty allow-lists.
fn reach(f: &FunctionInfo) -> Option<String> {
    let parts: Vec<String> = f
        .allow
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(key, names)| format!("{key} {}", names.join(",")))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}
