//! Opens what an app declares: the platform state file (kv namespaces) and one SQLite file
//! per `[sql.<label>]`, with its migrations applied.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Notify;
use updraft_manifest::{Function, LoadedManifest};
use updraft_runtime::{QueueHandle, Resources};
use updraft_store::sqlite::{Db, SqliteKv, SqliteQueues, SqliteSql, state};
use updraft_store::{KvStore, Migration, QueueStore, SqlStore};

/// How long idempotency keys are remembered (DESIGN §9: 10 min).
const DEDUP_WINDOW_US: i64 = 10 * 60 * 1_000_000;

/// The app's open stores.
#[derive(Clone)]
pub struct AppStores {
    /// `.updraft/state.db`.
    pub state: Db,
    /// Each `[kv.<label>]`.
    pub kv: BTreeMap<String, Arc<dyn KvStore>>,
    /// Each `[sql.<label>]`.
    pub sql: BTreeMap<String, Arc<dyn SqlStore>>,
    /// Each `[queue.<name>]`, with the store it lives in and its wake-up.
    pub queues: BTreeMap<String, Arc<QueueHandle>>,
    /// Migrations applied at this start, as `label/name`.
    pub applied: Vec<String>,
}

impl AppStores {
    /// Opens every store `manifest` declares and applies pending migrations.
    pub async fn open(manifest: &LoadedManifest) -> anyhow::Result<Self> {
        let state_path = manifest.state_dir().join("state.db");
        let state = state::open(&state_path).with_context(|| {
            format!("cannot open the platform state `{}`", state_path.display())
        })?;
        let kv = manifest
            .manifest
            .kv
            .keys()
            .map(|label| {
                (
                    label.clone(),
                    Arc::new(SqliteKv::new(state.clone(), label)) as Arc<dyn KvStore>,
                )
            })
            .collect();
        let queue_store: Arc<dyn QueueStore> = Arc::new(SqliteQueues::new(state.clone()));
        let queues = manifest
            .manifest
            .queue
            .keys()
            .map(|name| {
                let handle = QueueHandle {
                    name: name.clone(),
                    store: queue_store.clone(),
                    notify: Arc::new(Notify::new()),
                    dedup_window_us: DEDUP_WINDOW_US,
                };
                (name.clone(), Arc::new(handle))
            })
            .collect();
        let mut sql = BTreeMap::new();
        let mut applied = Vec::new();
        for (label, decl) in &manifest.manifest.sql {
            let path = match &decl.path {
                Some(p) => manifest.resolve(p),
                None => manifest.state_dir().join("sql").join(format!("{label}.db")),
            };
            let db = SqliteSql::open(label, &path)?;
            if let Some(dir) = &decl.migrations {
                let migrations = read_migrations(label, &manifest.resolve(dir))?;
                for name in db.migrate(migrations).await? {
                    applied.push(format!("{label}/{name}"));
                }
            }
            sql.insert(label.clone(), Arc::new(db) as Arc<dyn SqlStore>);
        }
        Ok(Self {
            state,
            kv,
            sql,
            queues,
            applied,
        })
    }

    /// What `function` may open: every declared label, with a store only where it is listed.
    pub fn resources_for(&self, function: &Function) -> Resources {
        Resources {
            kv: self
                .kv
                .iter()
                .map(|(label, store)| {
                    (
                        label.clone(),
                        function.kv.contains(label).then(|| store.clone()),
                    )
                })
                .collect(),
            sql: self
                .sql
                .iter()
                .map(|(label, store)| {
                    (
                        label.clone(),
                        function.sql.contains(label).then(|| store.clone()),
                    )
                })
                .collect(),
            queues: self
                .queues
                .iter()
                .map(|(name, q)| {
                    (
                        name.clone(),
                        function.enqueue.contains(name).then(|| q.clone()),
                    )
                })
                .collect(),
        }
    }
}

fn read_migrations(label: &str, dir: &Path) -> anyhow::Result<Vec<Migration>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "sql `{label}`: cannot read the migrations folder `{}`; create it or fix `migrations`",
            dir.display()
        )
    })?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let sql = std::fs::read_to_string(&path)
                .with_context(|| format!("sql `{label}`: cannot read `{}`", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(Migration { name, sql })
        })
        .collect()
}
