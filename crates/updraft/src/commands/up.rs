use std::net::SocketAddr;
use std::path::PathBuf;

use updraft_build::builder;
use updraft_manifest::{HumanDuration, StateBackend, load_runtime_config};
use updraft_runtime::CacheOutcome;
use updraft_server::{AppPlan, AppStores, NodeOptions, Variables, admin_token, load_app};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The app folder (or its updraft.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where the gateway listens; `127.0.0.1:0` picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080", env = "UPDRAFT_LISTEN")]
    pub listen: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value = "30s")]
    pub grace: HumanDuration,
    /// Serve the components as they are, without running stale builds.
    #[arg(long)]
    pub no_build: bool,
    /// Where platform state (kv, queues, topics, cron claims) lives: `sqlite` (the
    /// default, `.updraft/state.db`) or `nats://HOST:PORT` (JetStream, shared by every
    /// node of the app). Overrides `[state]` in the runtime config.
    #[arg(long, env = "UPDRAFT_STORE", value_parser = parse_store)]
    pub store: Option<StateBackend>,
    /// The runtime config (default: `runtime.toml` beside `updraft.toml`, if present).
    #[arg(long)]
    pub runtime_config: Option<PathBuf>,
    /// A host name `/_updraft/` answers besides IP addresses and `localhost` (repeatable);
    /// requests naming other hosts are refused, so a web page cannot reach the admin API
    /// through DNS rebinding.
    #[arg(long = "admin-host", value_name = "NAME")]
    pub admin_hosts: Vec<String>,
}

fn parse_store(value: &str) -> Result<StateBackend, String> {
    StateBackend::parse(value)
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let (manifest, triggers) = load_app(&args.dir)?;
    if !args.no_build {
        let stale: Vec<_> = builder::build_steps(&manifest)?
            .into_iter()
            .filter(|s| s.stale.is_some())
            .collect();
        super::build::build_all(stale).await?;
    }
    let variables = Variables::resolve(&manifest)?;
    let app_name = manifest.manifest.app.name.clone();
    let state_dir = manifest.state_dir();
    let backend = match args.store {
        Some(b) => b,
        None => load_runtime_config(&manifest.dir, args.runtime_config.as_deref())
            .map_err(anyhow::Error::msg)?,
    };
    println!("state: {}", backend.describe());
    let stores = AppStores::open(&manifest, &backend, &triggers.declarations.subscriptions).await?;
    for migration in &stores.applied {
        println!("  applied migration {migration}");
    }
    let event_triggers = triggers.describe();
    let plan = AppPlan::new(manifest, triggers, &variables, &stores)?;
    let admin_token = if args.listen.ip().is_loopback() {
        None
    } else {
        let (token, created) = admin_token::load_or_create(&state_dir)?;
        if created {
            println!(
                "admin token (shown once; also in `{}`): {token}",
                state_dir.join("admin-token").display()
            );
        }
        Some(token)
    };
    let options = NodeOptions {
        listen: args.listen,
        grace: args.grace.0,
        admin_token,
        admin_hosts: args.admin_hosts,
        ..NodeOptions::default()
    };
    updraft_server::metrics::handle();
    let node = updraft_server::start(plan, &stores, options).await?;

    println!("app `{app_name}`");
    for report in &node.loaded {
        match report.outcome {
            CacheOutcome::Compiled { ms } => {
                println!("  function `{}`: compiled in {ms} ms", report.function)
            }
            CacheOutcome::Cached { ms } => println!(
                "  function `{}`: loaded from cache in {ms} ms",
                report.function
            ),
        }
    }
    println!("routes:");
    for r in &node.routes {
        let target = match (&r.function, &r.static_dir) {
            (Some(f), _) => format!("function `{f}`"),
            (None, Some(dir)) => format!("static `{dir}`"),
            (None, None) => String::new(),
        };
        println!(
            "  {:<12} http://{}{}  ->  {target}",
            r.methods.join(","),
            node.addr,
            r.route
        );
    }
    if !event_triggers.is_empty() {
        println!("event triggers:");
        for line in &event_triggers {
            println!("  {line}");
        }
    }
    println!("listening on http://{}", node.addr);

    wait_for_signal().await;
    eprintln!("shutting down: finishing in-flight requests");
    if node.shutdown().await {
        eprintln!("stopped");
    } else {
        eprintln!("stopped; some requests were cut off at the end of the grace period");
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
