//! `updraft keys create|ls|revoke`: API keys for gateway routes with `auth`.

use updraft_server::api::{CreatedKey, KeyInfo, NewKey};

use crate::commands::client::{Client, ClientArgs, Output, check};

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a key; it is printed once and stored only hashed.
    Create {
        /// What it is for (`partner-a`).
        #[arg(long)]
        name: String,
        /// A `[[gateway.route]] name` it may call (repeat for several; default: every route
        /// that takes API keys).
        #[arg(long = "route")]
        routes: Vec<String>,
        /// How long it works (`30d`, `12h`; default: until revoked).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// The keys, without their secrets.
    Ls,
    /// Refuse a key from now on.
    Revoke {
        /// The key's id (or the whole key).
        id: String,
    },
}

pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.client).await?;
    let json = args.client.output == Output::Json;
    match args.command {
        KeysCommand::Create {
            name,
            routes,
            expires_in,
        } => {
            let req = client
                .request(reqwest::Method::POST, "/keys")
                .json(&NewKey {
                    name,
                    routes,
                    expires_in,
                });
            let made: CreatedKey = check(client.send(req).await?).await?.json().await?;
            if json {
                println!("{}", serde_json::to_string(&made)?);
            } else {
                println!("{}", made.key);
                eprintln!(
                    "API key `{}` ({}) made; this is the only time it is shown",
                    made.info.id, made.info.name
                );
            }
        }
        KeysCommand::Ls => {
            let keys: Vec<KeyInfo> = client.get("/keys").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!("{:<14} {:<20} {:<10} ROUTES", "ID", "NAME", "STATE");
                for k in &keys {
                    let state = if k.revoked {
                        "revoked"
                    } else if k.expires_at.is_some_and(|at| at <= now_secs()) {
                        "expired"
                    } else {
                        "active"
                    };
                    let routes = if k.routes.is_empty() {
                        "(all with auth)".to_owned()
                    } else {
                        k.routes.join(", ")
                    };
                    println!("{:<14} {:<20} {:<10} {routes}", k.id, k.name, state);
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let req = client.request(reqwest::Method::DELETE, &format!("/keys/{id}"));
            let k: KeyInfo = check(client.send(req).await?).await?.json().await?;
            if json {
                println!("{}", serde_json::to_string(&k)?);
            } else {
                println!("revoked API key `{}` ({})", k.id, k.name);
            }
        }
    }
    Ok(())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
