//! Where an app's state lives: `runtime.toml` (beside `updraft.toml`, or
//! `--runtime-config FILE`) binds each label to a backend by `type`, Spin-style:
//!
//! ```toml
//! [state]                      # kv, queues, topics and cron claims
//! type = "nats"                # "sqlite" (default: .updraft/state.db) or "nats"
//! url = "nats://127.0.0.1:4222"
//! replicas = 3
//! [sql.orders]
//! type = "postgres"            # "sqlite" (default: .updraft/sql/<label>.db) or "postgres"
//! url = "postgres://app@db:5432/orders"   # password in UPDRAFT_SQL_ORDERS_PASSWORD
//! [bucket.uploads]
//! type = "s3"                  # "fs" (default: the manifest's folder) or "s3"
//! endpoint = "http://127.0.0.1:9000"
//! region = "us-east-1"
//! bucket = "uploads"
//! ```
//!
//! `updraft up --store nats://HOST:PORT` is a shortcut for `[state]` and wins over the file.
//!
//! Each backend is a type implementing [`StateBackend`] or [`LabelBackend`] (a backend of
//! one kind of labelled resource: sql databases, buckets), with its own config struct
//! parsed from its table (unknown keys are errors naming the table). To add one: a module
//! (or a crate) with the type, and one line in [`STATE_BACKENDS`], [`SQL_BACKENDS`] or
//! [`BUCKET_BACKENDS`].

mod buckets;
mod nats;
mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use updraft_manifest::{BucketDecl, LoadedManifest, SqlDecl};
use updraft_store::blob::BlobStore;
use updraft_store::sqlite::Db;
use updraft_store::{KvStore, QueueStore, ScheduleStore, SqlStore, TopicStore};

/// The file `updraft up` reads beside `updraft.toml`, if it exists.
pub const RUNTIME_FILE: &str = "runtime.toml";

/// The stores of platform state on one backend.
pub struct PlatformState {
    /// Each `[kv.<label>]`.
    pub kv: BTreeMap<String, Arc<dyn KvStore>>,
    /// Queues (declared, subscriptions', updraft's own).
    pub queues: Arc<dyn QueueStore>,
    /// Topic logs.
    pub topics: Arc<dyn TopicStore>,
    /// Cron claims.
    pub schedules: Arc<dyn ScheduleStore>,
    /// Each `[stream.<name>]`.
    pub streams: BTreeMap<String, Arc<dyn updraft_store::StreamStore>>,
}

/// What a state backend gets to open an app's platform state.
pub struct StateContext<'a> {
    /// The app.
    pub app: &'a LoadedManifest,
    /// The node's own `.updraft/state.db` (records and async jobs live there whatever the
    /// backend; the SQLite backend keeps everything there).
    pub local: &'a Db,
}

/// Where platform state lives. Implement it and list the type in [`STATE_BACKENDS`].
pub trait StateBackend: 'static {
    /// `[state] type = "<TYPE>"`.
    const TYPE: &'static str;
    /// The rest of the `[state]` table; use `#[serde(deny_unknown_fields)]`.
    type Config: DeserializeOwned + Send;
    /// How it is shown to the user (`state: …` at start), checking the config.
    fn describe(config: &Self::Config) -> anyhow::Result<String>;
    /// Opens the app's platform state.
    fn open(
        config: Self::Config,
        node: &StateContext<'_>,
    ) -> impl Future<Output = anyhow::Result<PlatformState>> + Send;
}

/// A backend of one kind of labelled resource (`[sql.<label>]`, `[bucket.<label>]`).
/// Implement it and list it in [`SQL_BACKENDS`] or [`BUCKET_BACKENDS`].
pub trait LabelBackend: 'static {
    /// `[<table>.<label>] type = "<TYPE>"`.
    const TYPE: &'static str;
    /// What the manifest declares about the resource.
    type Decl: Sync + 'static;
    /// The store it opens (`dyn SqlStore`, `dyn BlobStore`).
    type Store: ?Sized + 'static;
    /// The rest of the runtime config's table; use `#[serde(deny_unknown_fields)]`.
    type Config: DeserializeOwned + Send;
    /// Opens resource `label` as the manifest declares it (`decl`).
    fn open(
        label: &str,
        decl: &Self::Decl,
        config: Self::Config,
        app: &LoadedManifest,
    ) -> impl Future<Output = anyhow::Result<Arc<Self::Store>>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A registered state backend.
pub struct StateKind {
    /// Its `type`.
    pub name: &'static str,
    describe: fn(&BackendTable) -> anyhow::Result<String>,
    open: for<'a> fn(
        &'a BackendTable,
        &'a StateContext<'a>,
    ) -> BoxFuture<'a, anyhow::Result<PlatformState>>,
}

/// A registered backend of labelled resources that declare `D` and open an `S`.
pub struct LabelKind<D: 'static, S: ?Sized + 'static> {
    /// Its `type`.
    pub name: &'static str,
    #[allow(clippy::type_complexity)]
    open: for<'a> fn(
        &'a str,
        &'a D,
        &'a BackendTable,
        &'a LoadedManifest,
    ) -> BoxFuture<'a, anyhow::Result<Arc<S>>>,
}

const fn state_kind<B: StateBackend>() -> StateKind {
    StateKind {
        name: B::TYPE,
        describe: |table| B::describe(&table.config::<B::Config>()?),
        open: |table, node| {
            Box::pin(async move {
                let config = table.config::<B::Config>()?;
                B::open(config, node).await
            })
        },
    }
}

const fn label_kind<B: LabelBackend>() -> LabelKind<B::Decl, B::Store> {
    LabelKind {
        name: B::TYPE,
        open: |label, decl, table, app| {
            Box::pin(async move {
                let config = table.config::<B::Config>()?;
                B::open(label, decl, config, app).await
            })
        },
    }
}

/// Every state backend. To add one, add a line.
pub const STATE_BACKENDS: &[StateKind] = &[
    state_kind::<sqlite::SqliteState>(),
    state_kind::<nats::NatsState>(),
];

/// Every sql backend. To add one, add a line.
pub const SQL_BACKENDS: &[LabelKind<SqlDecl, dyn SqlStore>] = &[
    label_kind::<sqlite::SqliteDatabase>(),
    label_kind::<postgres::PostgresDatabase>(),
];

/// Every bucket backend. To add one, add a line.
pub const BUCKET_BACKENDS: &[LabelKind<BucketDecl, dyn BlobStore>] = &[
    label_kind::<buckets::FolderBucket>(),
    label_kind::<buckets::S3Bucket>(),
];

/// One backend table of the runtime config: its `type` and the rest of its keys.
#[derive(Debug, Clone)]
pub struct BackendTable {
    /// `[state]` or `[sql.<label>]`, for messages.
    pub key: String,
    /// `type`.
    pub kind: String,
    rest: toml::Table,
    /// The runtime config file, for messages.
    file: Option<PathBuf>,
}

impl BackendTable {
    fn new(key: String, mut table: toml::Table, file: Option<&Path>) -> anyhow::Result<Self> {
        let kind = match table.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            Some(_) => anyhow::bail!("{}: `{key} type` must be a string", shown(file)),
            None => anyhow::bail!(
                "{}: `{key}` needs a `type` (such as \"sqlite\")",
                shown(file)
            ),
        };
        Ok(Self {
            key,
            kind,
            rest: table,
            file: file.map(Path::to_path_buf),
        })
    }

    fn default_of(key: String, kind: &str) -> Self {
        Self {
            key,
            kind: kind.to_owned(),
            rest: toml::Table::new(),
            file: None,
        }
    }

    /// Its keys as the backend's config struct; errors name the file and the table.
    pub fn config<C: DeserializeOwned>(&self) -> anyhow::Result<C> {
        toml::Value::Table(self.rest.clone())
            .try_into()
            .map_err(|e| anyhow::anyhow!("{}: `{}`: {e}", shown(self.file.as_deref()), self.key))
    }

    /// An error about this table, naming the file.
    pub fn invalid(&self, message: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("{}: {message}", shown(self.file.as_deref()))
    }
}

fn shown(file: Option<&Path>) -> String {
    match file {
        Some(f) => format!("runtime config `{}`", f.display()),
        None => "runtime config".to_owned(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeFile {
    #[serde(default)]
    state: Option<toml::Table>,
    #[serde(default)]
    sql: BTreeMap<String, toml::Table>,
    #[serde(default)]
    bucket: BTreeMap<String, toml::Table>,
}

/// The runtime config of an app: which backend holds each label.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `[state]`.
    pub state: BackendTable,
    /// `[sql.<label>]`.
    pub sql: BTreeMap<String, BackendTable>,
    /// `[bucket.<label>]`.
    pub bucket: BTreeMap<String, BackendTable>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            state: BackendTable::default_of("[state]".to_owned(), "sqlite"),
            sql: BTreeMap::new(),
            bucket: BTreeMap::new(),
        }
    }
}

impl RuntimeConfig {
    /// `file` if given, else `runtime.toml` beside the manifest if it exists, else the
    /// defaults (everything in SQLite).
    pub fn load(dir: &Path, file: Option<&Path>) -> anyhow::Result<Self> {
        let path = match file {
            Some(f) => f.to_path_buf(),
            None => {
                let beside = dir.join(RUNTIME_FILE);
                if !beside.exists() {
                    return Ok(Self::default());
                }
                beside
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the runtime config `{}`", path.display()))?;
        Self::parse(&text, Some(&path))
    }

    /// Parses runtime config text that comes from no file (the fuzz target and properties).
    pub fn parse_str(text: &str) -> anyhow::Result<Self> {
        Self::parse(text, None)
    }

    fn parse(text: &str, file: Option<&Path>) -> anyhow::Result<Self> {
        let parsed: RuntimeFile =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", shown(file)))?;
        let mut config = Self::default();
        if let Some(state) = parsed.state {
            config.state = BackendTable::new("[state]".to_owned(), state, file)?;
        }
        for (label, table) in parsed.sql {
            let key = format!("[sql.{label}]");
            config
                .sql
                .insert(label, BackendTable::new(key, table, file)?);
        }
        for (label, table) in parsed.bucket {
            let key = format!("[bucket.{label}]");
            config
                .bucket
                .insert(label, BackendTable::new(key, table, file)?);
        }
        Ok(config)
    }

    /// `--store`: `sqlite`, or a NATS URL, in place of `[state]`.
    pub fn with_store(mut self, store: &str) -> anyhow::Result<Self> {
        let store = store.trim();
        let mut table = toml::Table::new();
        if store == "sqlite" {
            table.insert("type".into(), "sqlite".into());
        } else if store.starts_with("nats://") || store.starts_with("tls://") {
            table.insert("type".into(), "nats".into());
            table.insert("url".into(), store.into());
        } else {
            anyhow::bail!(
                "unknown store `{store}`; use `sqlite` or a NATS URL such as `nats://127.0.0.1:4222`"
            );
        }
        self.state = BackendTable::new("[state]".to_owned(), table, None)?;
        Ok(self)
    }

    fn state_kind(&self) -> anyhow::Result<&'static StateKind> {
        STATE_BACKENDS
            .iter()
            .find(|k| k.name == self.state.kind)
            .ok_or_else(|| {
                self.state.invalid(format!(
                    "unknown `[state] type = \"{}\"`; use {}",
                    self.state.kind,
                    names(STATE_BACKENDS.iter().map(|k| k.name))
                ))
            })
    }

    /// How the state backend is shown at start; checks its config.
    pub fn describe_state(&self) -> anyhow::Result<String> {
        (self.state_kind()?.describe)(&self.state).map_err(|e| self.state.invalid(e))
    }

    /// Opens the platform state on the configured backend.
    pub async fn open_state(&self, node: &StateContext<'_>) -> anyhow::Result<PlatformState> {
        (self.state_kind()?.open)(&self.state, node).await
    }

    /// The backend type of `[sql.<label>]` (`sqlite` unless the runtime config says).
    pub fn sql_type(&self, label: &str) -> &str {
        self.sql.get(label).map_or("sqlite", |t| t.kind.as_str())
    }

    /// Opens `[sql.<label>]` on its configured backend (SQLite when the runtime config does
    /// not name one).
    pub async fn open_sql(
        &self,
        label: &str,
        decl: &SqlDecl,
        app: &LoadedManifest,
    ) -> anyhow::Result<Arc<dyn SqlStore>> {
        open_label("sql", "sqlite", SQL_BACKENDS, &self.sql, label, decl, app).await
    }

    /// Opens `[bucket.<label>]` on its configured backend (a folder when the runtime config
    /// does not name one).
    pub async fn open_bucket(
        &self,
        label: &str,
        decl: &BucketDecl,
        app: &LoadedManifest,
    ) -> anyhow::Result<Arc<dyn BlobStore>> {
        open_label(
            "bucket",
            "fs",
            BUCKET_BACKENDS,
            &self.bucket,
            label,
            decl,
            app,
        )
        .await
    }
}

/// Opens `[<table>.<label>]` on the backend its runtime-config table names, or on
/// `default` when there is none.
async fn open_label<D, S: ?Sized>(
    table_name: &str,
    default: &str,
    kinds: &[LabelKind<D, S>],
    tables: &BTreeMap<String, BackendTable>,
    label: &str,
    decl: &D,
    app: &LoadedManifest,
) -> anyhow::Result<Arc<S>> {
    let fallback = BackendTable::default_of(format!("[{table_name}.{label}]"), default);
    let table = tables.get(label).unwrap_or(&fallback);
    let kind = kinds.iter().find(|k| k.name == table.kind).ok_or_else(|| {
        table.invalid(format!(
            "unknown `{} type = \"{}\"`; use {}",
            table.key,
            table.kind,
            names(kinds.iter().map(|k| k.name))
        ))
    })?;
    (kind.open)(label, decl, table, app).await
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<String> {
        RuntimeConfig::parse(text, Some(Path::new("runtime.toml")))?.describe_state()
    }

    #[test]
    fn state_backends_and_their_errors() {
        assert_eq!(load("").unwrap(), "sqlite (.updraft/state.db)");
        assert_eq!(
            load("[state]\ntype = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n").unwrap(),
            "nats jetstream at nats://127.0.0.1:4222 (1 replica(s))"
        );
        assert_eq!(
            load("[state]\ntype = \"nats\"\nurl = \"nats://n1:4222\"\nreplicas = 3\n").unwrap(),
            "nats jetstream at nats://n1:4222 (3 replica(s))"
        );
        let e = |text: &str| format!("{:#}", load(text).unwrap_err());
        let many = e("[state]\ntype = \"nats\"\nurl = \"nats://n1:4222\"\nreplicas = 7\n");
        assert!(many.contains("1 to 5 copies"), "{many}");
        let missing = e("[state]\ntype = \"nats\"\n");
        assert!(
            missing.contains("`[state] type = \"nats\"` needs `url = \"nats://HOST:PORT\"`"),
            "{missing}"
        );
        let unknown = e("[state]\ntype = \"redis\"\n");
        assert!(
            unknown.contains("\"redis\"") && unknown.contains("\"sqlite\" or \"nats\""),
            "{unknown}"
        );
        let key = e("[state]\ntype = \"sqlite\"\npath = \"x\"\n");
        assert!(key.contains("path") && key.contains("[state]"), "{key}");
        let untyped = e("[state]\nurl = \"nats://n1:4222\"\n");
        assert!(untyped.contains("needs a `type`"), "{untyped}");
        let top = e("[bogus]\n");
        assert!(top.contains("bogus"), "{top}");
        let store = RuntimeConfig::default()
            .with_store("redis://x")
            .unwrap_err();
        assert!(
            store.to_string().contains("unknown store `redis://x`"),
            "{store}"
        );
        let nats = RuntimeConfig::default()
            .with_store("nats://127.0.0.1:4222")
            .unwrap();
        assert_eq!(nats.state.kind, "nats");
    }

    #[test]
    fn sql_databases_name_a_registered_backend() {
        let config = RuntimeConfig::parse("[sql.orders]\ntype = \"oracle\"\n", None).unwrap();
        let app = LoadedManifest {
            manifest: updraft_manifest::Manifest::parse("[app]\nname = \"a\"\n[sql.orders]\n")
                .unwrap(),
            path: "updraft.toml".into(),
            dir: ".".into(),
        };
        let decl = SqlDecl::default();
        let e = block_on(config.open_sql("orders", &decl, &app));
        let e = format!("{:#}", e.err().map(|e| e.to_string()).unwrap_or_default());
        assert!(
            e.contains("unknown `[sql.orders] type = \"oracle\"`; use \"sqlite\" or \"postgres\""),
            "{e}"
        );
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
