use std::net::SocketAddr;
use std::path::PathBuf;

use updraft_build::builder;
use updraft_manifest::HumanDuration;
use updraft_runtime::CacheOutcome;
use updraft_server::backends::RuntimeConfig;
use updraft_server::up::{self, Up, UpEvent, UpOptions};
use updraft_server::{TlsFiles, load_app};

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
    pub store: Option<String>,
    /// The runtime config (default: `runtime.toml` beside `updraft.toml`, if present).
    #[arg(long)]
    pub runtime_config: Option<PathBuf>,
    /// A host name `/_updraft/` answers besides IP addresses and `localhost` (repeatable);
    /// requests naming other hosts are refused, so a web page cannot reach the admin API
    /// through DNS rebinding.
    #[arg(long = "admin-host", value_name = "NAME")]
    pub admin_hosts: Vec<String>,
    /// Serve HTTPS: the certificate chain (PEM), with `--tls-key`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM), with `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

fn parse_store(value: &str) -> Result<String, String> {
    RuntimeConfig::default()
        .with_store(value)
        .map(|_| value.trim().to_owned())
        .map_err(|e| e.to_string())
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let (manifest, triggers) = load_app(&args.dir)?;
    let panels = manifest.manifest.dashboard.panel.len();
    if !args.no_build {
        let stale: Vec<_> = builder::build_steps(&manifest)?
            .into_iter()
            .filter(|s| s.stale.is_some())
            .collect();
        super::build::build_all(stale).await?;
    }
    let options = UpOptions {
        listen: args.listen,
        grace: args.grace.0,
        store: args.store,
        runtime_config: args.runtime_config,
        admin_hosts: args.admin_hosts,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
    };
    let Up {
        node,
        app: app_name,
        event_triggers,
    } = up::start(manifest, triggers, options, |event| match event {
        UpEvent::State(backend) => println!("state: {backend}"),
        UpEvent::Migration(name) => println!("  applied migration {name}"),
        UpEvent::AdminTokenCreated { path, token } => println!(
            "admin token (shown once; also in `{}`): {token}",
            path.display()
        ),
    })
    .await?;

    println!("engine: {}", node.engine);
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
        let target = r.describe_target();
        let host = r
            .host
            .as_ref()
            .map(|h| format!("  (host {h})"))
            .unwrap_or_default();
        println!(
            "  {:<12} {}://{}{}{host}  ->  {target}",
            r.methods.join(","),
            node.scheme,
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
    println!("dashboard: {}://{}/_updraft/", node.scheme, node.addr);
    if panels > 0 {
        println!(
            "  the app's panels: {}://{}/_updraft/apps/{app_name}/dashboard ({panels} panel(s))",
            node.scheme, node.addr
        );
    }
    println!("listening on {}://{}", node.scheme, node.addr);

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
