//! `updraft ls`: the functions of the running app, their routes and their other triggers
//! (cron triggers with the last and next run).

use crate::commands::client::{Client, ClientArgs, Output};

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: LsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let functions: Vec<serde_json::Value> = client.get("/functions").await?;
    if args.client.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&functions)?);
        return Ok(());
    }
    println!(
        "{:<24} {:>9} {:>10} {:>6}  ROUTES",
        "FUNCTION", "TIMEOUT", "MEMORY", "MAX"
    );
    for f in &functions {
        let routes: Vec<String> = f["routes"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| {
                        let methods: Vec<&str> = r["methods"]
                            .as_array()
                            .map(|m| m.iter().filter_map(|x| x.as_str()).collect())
                            .unwrap_or_default();
                        format!(
                            "{} {}",
                            methods.join(","),
                            r["route"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<24} {:>8}s {:>7} MiB {:>6}  {}",
            f["id"].as_str().unwrap_or(""),
            f["timeout_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
            f["memory_bytes"].as_u64().unwrap_or(0) >> 20,
            f["max_concurrency"].as_u64().unwrap_or(0),
            if routes.is_empty() {
                "-".to_owned()
            } else {
                routes.join("  ")
            }
        );
        // Routes are in their column; every other trigger goes under it.
        for t in f["triggers"].as_array().into_iter().flatten() {
            if t["kind"] != "http" {
                println!("{:55}{}", "", t["summary"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(())
}
