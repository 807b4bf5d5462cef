//! `updraft up`: one app in one process. From a loaded manifest to a serving node: resolve
//! variables, choose where state lives, open the stores (with the subscriptions the
//! triggers declare), plan, take or make the admin token off loopback, start the node.
//! What happens on the way is reported through [`UpEvent`]s, so the CLI only prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use updraft_manifest::LoadedManifest;
use updraft_triggers::AppTriggers;

use crate::backends::RuntimeConfig;
use crate::{AppPlan, AppStores, NodeOptions, RunningNode, TlsFiles, Variables, admin_token};

/// How `up` runs the app.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Where the gateway listens.
    pub listen: SocketAddr,
    /// How long in-flight work may take after a shutdown signal.
    pub grace: Duration,
    /// `--store`: `sqlite` or a NATS URL, in place of the runtime config's `[state]`.
    pub store: Option<String>,
    /// The runtime config file (default: `runtime.toml` beside the manifest, if present).
    pub runtime_config: Option<PathBuf>,
    /// Host names `/_updraft/` answers besides IP literals and `localhost`.
    pub admin_hosts: Vec<String>,
    /// Serve HTTPS with these PEM files.
    pub tls: Option<TlsFiles>,
}

/// Something `up` did on its way to serving, for the user to see.
#[derive(Debug, Clone)]
pub enum UpEvent {
    /// Where platform state lives (before the stores open, which may take a while).
    State(String),
    /// A migration was applied, as `label/file`.
    Migration(String),
    /// An admin token was made; it is shown once.
    AdminTokenCreated {
        /// The file it is kept in.
        path: PathBuf,
        /// The token.
        token: String,
    },
}

/// A serving app.
pub struct Up {
    /// The node serving it.
    pub node: RunningNode,
    /// `[app] name`.
    pub app: String,
    /// One line per trigger that is not a route (`queue `jobs`  ->  function `worker``).
    pub event_triggers: Vec<String>,
}

/// Starts `manifest`'s app with its parsed `triggers`.
pub async fn start(
    manifest: LoadedManifest,
    triggers: AppTriggers,
    options: UpOptions,
    mut report: impl FnMut(UpEvent),
) -> anyhow::Result<Up> {
    let variables = Variables::resolve(&manifest)?;
    let app = manifest.manifest.app.name.clone();
    let state_dir = manifest.state_dir();
    let mut runtime = RuntimeConfig::load(&manifest.dir, options.runtime_config.as_deref())?;
    if let Some(store) = &options.store {
        runtime = runtime.with_store(store)?;
    }
    report(UpEvent::State(runtime.describe_state()?));
    let stores = AppStores::open(&manifest, &runtime, &triggers.declarations.subscriptions).await?;
    for migration in &stores.applied {
        report(UpEvent::Migration(migration.clone()));
    }
    let mut event_triggers = triggers.describe();
    event_triggers.extend(updraft_triggers::ingest::describe(&manifest));
    let plan = AppPlan::new(manifest, triggers, &variables, &stores)?;
    let admin_token = if options.listen.ip().is_loopback() {
        None
    } else {
        let (token, created) = admin_token::load_or_create(&state_dir)?;
        if created {
            report(UpEvent::AdminTokenCreated {
                path: state_dir.join("admin-token"),
                token: token.clone(),
            });
        }
        Some(token)
    };
    let node_options = NodeOptions {
        listen: options.listen,
        grace: options.grace,
        admin_token,
        admin_hosts: options.admin_hosts,
        tls: options.tls,
        ..NodeOptions::default()
    };
    crate::metrics::handle();
    let node = crate::start(plan, &stores, node_options).await?;
    Ok(Up {
        node,
        app,
        event_triggers,
    })
}
