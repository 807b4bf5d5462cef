use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use updraft_manifest::{HumanDuration, Manifest};
use updraft_runtime::CacheOutcome;
use updraft_server::{AppPlan, AppStores, NodeOptions, Variables, builder};

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
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.dir)?;
    if !args.no_build {
        let stale: Vec<_> = builder::build_steps(&manifest)?
            .into_iter()
            .filter(|s| s.stale.is_some())
            .collect();
        super::build::build_all(stale).await?;
    }
    let variables = Variables::resolve(&manifest)?;
    let app_name = manifest.manifest.app.name.clone();
    let stores = AppStores::open(&manifest).await?;
    for migration in &stores.applied {
        println!("  applied migration {migration}");
    }
    let plan = AppPlan::new(manifest, &variables, &stores)?;
    let options = NodeOptions {
        listen: args.listen,
        grace: args.grace.0,
        ..NodeOptions::default()
    };
    let observer = Arc::new(updraft_server::metrics::NodeObserver);
    updraft_server::metrics::handle();
    let node = updraft_server::start(plan, options, observer).await?;

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
    for (methods, pattern, target) in &node.routes {
        println!(
            "  {methods:<12} http://{}{pattern}  ->  {target}",
            node.addr
        );
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
