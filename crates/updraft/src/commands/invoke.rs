//! `updraft invoke <fn>`: call a function through the admin API, bypassing routes.

use std::io::Read;

use anyhow::Context;

use crate::commands::client::{Client, ClientArgs, Output, check};

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// The function id.
    pub function: String,
    /// The request body: text, `@FILE`, or `-` for standard input.
    #[arg(long, short)]
    pub data: Option<String>,
    /// The method the function sees.
    #[arg(long, short = 'X', default_value = "POST")]
    pub method: String,
    /// The path (and query) the function sees.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Content type of the body.
    #[arg(long, default_value = "application/octet-stream")]
    pub content_type: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A request body from `--data`: text, `@FILE`, or `-` for standard input.
pub fn read_body(data: Option<&str>) -> anyhow::Result<Vec<u8>> {
    Ok(match data {
        None => Vec::new(),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the body from standard input")?;
            buf
        }
        Some(d) if d.starts_with('@') => std::fs::read(&d[1..])
            .with_context(|| format!("cannot read the body from `{}`", &d[1..]))?,
        Some(text) => text.as_bytes().to_vec(),
    })
}

pub async fn run(args: InvokeArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.client).await?;
    let path = format!("/functions/{}/invoke", args.function);
    let request = client
        .request(reqwest::Method::POST, &path)
        .query(&[
            ("method", args.method.as_str()),
            ("path", args.path.as_str()),
        ])
        .header(reqwest::header::CONTENT_TYPE, &args.content_type)
        .body(read_body(args.data.as_deref())?);
    let response = client.send(request).await?;
    let invocation = response
        .headers()
        .get("updraft-invocation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // No invocation id: the API itself refused (unknown function, bad token...).
    let Some(invocation) = invocation else {
        check(response).await?;
        anyhow::bail!("the server answered without an invocation id");
    };
    let status = response.status();
    let headers: serde_json::Map<String, serde_json::Value> = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    let bytes = response
        .bytes()
        .await
        .context("the function's answer broke off")?;
    match args.client.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "invocation_id": invocation,
                "status": status.as_u16(),
                "headers": headers,
                "body": String::from_utf8_lossy(&bytes),
            }))?
        ),
        Output::Text => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
            eprintln!("status {} · invocation {invocation}", status.as_u16());
        }
    }
    if status.is_client_error() || status.is_server_error() {
        anyhow::bail!("function `{}` answered {status}", args.function);
    }
    Ok(())
}
