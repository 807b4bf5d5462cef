//! The embedded backends: platform state in the node's `.updraft/state.db`, each
//! `[stream.<name>]` in its own file (`.updraft/streams/<name>.db`), and each
//! `[sql.<label>]` in its own SQLite file (`.updraft/sql/<label>.db`, or the manifest's
//! `path`).

use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use updraft_manifest::{LoadedManifest, SqlDecl};
use updraft_store::sqlite::{
    SqliteKv, SqliteQueues, SqliteSchedules, SqliteSql, SqliteStream, SqliteTopics,
};
use updraft_store::{KvStore, SqlLimits, SqlStore, StreamStore};

use super::{LabelBackend, PlatformState, StateBackend, StateContext};

/// `[state] type = "sqlite"` (the default).
pub struct SqliteState;

/// `[state] type = "sqlite"` takes no other keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoConfig {}

impl StateBackend for SqliteState {
    const TYPE: &'static str = "sqlite";
    type Config = NoConfig;

    fn describe(_config: &NoConfig) -> anyhow::Result<String> {
        Ok("sqlite (.updraft/state.db)".to_owned())
    }

    async fn open(_config: NoConfig, node: &StateContext<'_>) -> anyhow::Result<PlatformState> {
        let state = node.local;
        Ok(PlatformState {
            kv: node
                .app
                .manifest
                .kv
                .keys()
                .map(|label| {
                    let store: Arc<dyn KvStore> = Arc::new(SqliteKv::new(state.clone(), label));
                    (label.clone(), store)
                })
                .collect(),
            queues: Arc::new(SqliteQueues::new(state.clone())),
            topics: Arc::new(SqliteTopics::new(state.clone())),
            schedules: Arc::new(SqliteSchedules::new(state.clone())),
            streams: open_streams(node.app)?,
        })
    }
}

/// Each `[stream.<name>]` in its own file under `.updraft/streams/`, never `state.db`.
fn open_streams(
    app: &LoadedManifest,
) -> anyhow::Result<std::collections::BTreeMap<String, Arc<dyn StreamStore>>> {
    let dir = app.state_dir().join("streams");
    app.manifest
        .stream
        .keys()
        .map(|name| {
            let path = dir.join(format!("{name}.db"));
            let store: Arc<dyn StreamStore> =
                Arc::new(SqliteStream::open(&path).with_context(|| {
                    format!("stream `{name}`: cannot open `{}`", path.display())
                })?);
            Ok((name.clone(), store))
        })
        .collect()
}

/// `[sql.<label>] type = "sqlite"` (the default): a SQLite file of its own.
pub struct SqliteDatabase;

impl LabelBackend for SqliteDatabase {
    const TYPE: &'static str = "sqlite";
    type Decl = SqlDecl;
    type Store = dyn SqlStore;
    type Config = NoConfig;

    async fn open(
        label: &str,
        decl: &SqlDecl,
        _config: NoConfig,
        app: &LoadedManifest,
    ) -> anyhow::Result<Arc<dyn SqlStore>> {
        let path = match &decl.path {
            Some(p) => app.resolve(p),
            None => app.state_dir().join("sql").join(format!("{label}.db")),
        };
        let defaults = SqlLimits::default();
        let db = SqliteSql::open(label, &path)?.with_limits(SqlLimits {
            max_rows: decl.max_rows.unwrap_or(defaults.max_rows),
            max_bytes: decl.max_bytes.map_or(defaults.max_bytes, |b| b.0),
        });
        Ok(Arc::new(db))
    }
}
