//! The manifest's tables, as serde types. Unknown keys are errors everywhere.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::values::{AllowedHost, ByteSize, HumanDuration, Template};

/// Default HTTP function timeout (DESIGN §9).
pub const DEFAULT_HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Default event function timeout (DESIGN §9).
pub const DEFAULT_EVENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Default memory cap per instance.
pub const DEFAULT_MEMORY: u64 = 128 * 1024 * 1024;
/// Default number of concurrent instances of one function.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;

/// `updraft.toml`: resources, then functions, then triggers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `[app]`
    pub app: App,
    /// `[variables]`: app variables, filled from `UPDRAFT_VAR_<NAME>` or `.env`.
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    /// `[kv.<label>]`: key-value stores.
    #[serde(default)]
    pub kv: BTreeMap<String, KvDecl>,
    /// `[sql.<label>]`: SQL databases.
    #[serde(default)]
    pub sql: BTreeMap<String, SqlDecl>,
    /// `[bucket.<name>]`: object storage (a folder, or S3 through the runtime config).
    #[serde(default)]
    pub bucket: BTreeMap<String, BucketDecl>,
    /// `[queue.<name>]`: durable queues.
    #[serde(default)]
    pub queue: BTreeMap<String, QueueDecl>,
    /// `[topic.<name>]`: topics, with the delivery settings of their subscriptions.
    #[serde(default)]
    pub topic: BTreeMap<String, QueueDecl>,
    /// `[stream.<name>]`: partitioned event streams, ordered per key.
    #[serde(default)]
    pub stream: BTreeMap<String, crate::StreamDecl>,
    /// `[ingest]`: routes (and later brokers) that feed streams.
    #[serde(default)]
    pub ingest: crate::Ingest,
    /// `[async]`: how async invocations (`Prefer: respond-async`) report completion.
    #[serde(default, rename = "async")]
    pub async_: AsyncDecl,
    /// `[function.<id>]`
    #[serde(default)]
    pub function: BTreeMap<String, Function>,
    /// `[[trigger.<kind>]]`
    #[serde(default)]
    pub trigger: Triggers,
    /// `[dashboard]` and its `[[dashboard.panel]]`s: the app's own analytics page.
    #[serde(default)]
    pub dashboard: Dashboard,
    /// `[gateway]`: routes with policies, and the policies they name.
    #[serde(default)]
    pub gateway: crate::Gateway,
}

/// `[dashboard]`: charts of the app's own data, declared next to its functions (DESIGN §9).
/// Served at `/_updraft/apps/<app>/dashboard`, and on `route` when it is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// The page's heading (default: the app's name).
    #[serde(default)]
    pub title: Option<String>,
    /// A user route that also serves the page, public (`"/reports"`).
    #[serde(default)]
    pub route: Option<String>,
    /// `[[dashboard.panel]]`, in page order.
    #[serde(default)]
    pub panel: Vec<Panel>,
}

/// `[[dashboard.panel]]`: one read-only query of a declared sql database, drawn as a chart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// What the panel shows, as its heading.
    pub title: String,
    /// The `[sql.<label>]` the query reads.
    pub sql: String,
    /// A read-only statement (`SELECT …`); a statement that writes is refused.
    pub query: String,
    /// How it is drawn (default `table`).
    #[serde(default)]
    pub chart: ChartKind,
    /// The column along the x axis (the slice label of a pie).
    #[serde(default)]
    pub x: Option<String>,
    /// The column(s) with the values: one series each.
    #[serde(default)]
    pub y: Option<OneOrMany>,
    /// A column whose values split one `y` into a series each.
    #[serde(default)]
    pub group: Option<String>,
    /// Redraw the panel this often while the page is open (`"30s"`).
    #[serde(default)]
    pub refresh: Option<HumanDuration>,
}

/// How a panel is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChartKind {
    /// Lines through the points, x in order.
    Line,
    /// Bars per x value (grouped when there are several series).
    Bar,
    /// Lines with the area below them filled.
    Area,
    /// Slices of one series.
    Pie,
    /// The rows as a table.
    #[default]
    Table,
}

impl ChartKind {
    /// Its name in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Line => "line",
            Self::Bar => "bar",
            Self::Area => "area",
            Self::Pie => "pie",
            Self::Table => "table",
        }
    }
}

/// A string or a list of strings (`y = "total"` or `y = ["units", "total"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    /// Every value, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(v) => vec![v.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// `[app]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The app's name, shown in logs and the CLI.
    pub name: String,
    /// A line about what the app does.
    #[serde(default)]
    pub description: Option<String>,
}

/// One entry of `[variables]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    /// Start fails when no value is given.
    #[serde(default)]
    pub required: bool,
    /// Never logged or shown.
    #[serde(default)]
    pub secret: bool,
    /// The value when none is given.
    #[serde(default)]
    pub default: Option<String>,
}

/// `[kv.<label>]`: a key-value store (a namespace of the platform state).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvDecl {}

/// `[bucket.<name>]`: a bucket of objects. Embedded, it is a plain folder other programs may
/// also drop files into; `runtime.toml` may put it on S3-compatible storage instead.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketDecl {
    /// The folder (relative to the manifest); default `.updraft/buckets/<name>`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Largest object (default `"5GiB"`).
    #[serde(default)]
    pub max_object_size: Option<ByteSize>,
}

/// `[sql.<label>]`: a SQL database of the app's own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlDecl {
    /// An existing SQLite file to use (relative to the manifest); default
    /// `.updraft/sql/<label>.db`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A folder of `*.sql` files applied in name order at start, each once.
    #[serde(default)]
    pub migrations: Option<PathBuf>,
    /// Most rows one query may return (default 100,000).
    #[serde(default)]
    pub max_rows: Option<u64>,
    /// Most bytes of values one query may return (default `"32MiB"`).
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
}

/// `[async]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncDecl {
    /// A `[topic.<name>]` that gets an `updraft.async.completed` event per finished
    /// async invocation.
    #[serde(default)]
    pub completion_topic: Option<String>,
    /// Hosts a client may name in a `Callback-URL` header; the outcome is POSTed there.
    #[serde(default)]
    pub callback_hosts: Vec<AllowedHost>,
}

/// `[queue.<name>]`: a durable queue and how its messages are delivered.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDecl {
    /// Deliveries in all, the first included (default 5); then the dead-letter queue.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// How long a delivery is hidden from other workers (default 30s; extended while the
    /// function runs).
    #[serde(default)]
    pub lease: Option<HumanDuration>,
    /// The first retry's delay (default 1s); it doubles per attempt, with full jitter.
    #[serde(default)]
    pub backoff: Option<HumanDuration>,
    /// The longest retry delay (default 5m).
    #[serde(default)]
    pub max_backoff: Option<HumanDuration>,
}

impl QueueDecl {
    /// Attempts in force.
    pub fn attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(5)
    }
    /// Lease in force.
    pub fn lease_duration(&self) -> std::time::Duration {
        self.lease
            .map_or(std::time::Duration::from_secs(30), |d| d.0)
    }
    /// First backoff in force.
    pub fn backoff_duration(&self) -> std::time::Duration {
        self.backoff
            .map_or(std::time::Duration::from_secs(1), |d| d.0)
    }
    /// Backoff cap in force.
    pub fn max_backoff_duration(&self) -> std::time::Duration {
        self.max_backoff
            .map_or(std::time::Duration::from_secs(300), |d| d.0)
    }
}

/// `[function.<id>]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// The component file, relative to the manifest.
    pub source: PathBuf,
    /// How to build the component.
    #[serde(default)]
    pub build: Option<Build>,
    /// The kv stores it may open, by label.
    #[serde(default)]
    pub kv: Vec<String>,
    /// The sql databases it may open, by label.
    #[serde(default)]
    pub sql: Vec<String>,
    /// The buckets it may read and write.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// The queues it may enqueue to.
    #[serde(default)]
    pub enqueue: Vec<String>,
    /// The topics it may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// The streams it may append to.
    #[serde(default)]
    pub append: Vec<String>,
    /// Hosts the function may send HTTP requests to: `scheme://host[:port]`, with `*`
    /// wildcards for a whole host, a subdomain prefix or the port.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<AllowedHost>,
    /// Variables the function sees through `wasi:config` and its environment: a literal
    /// or a template naming app variables (`"{{ greeting }}"`).
    #[serde(default)]
    pub variables: BTreeMap<String, Template>,
    /// Wall-clock limit for one invocation (`"30s"`, `"500ms"`).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Memory cap for one instance (`"128MiB"`).
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// How many instances may run at once; more requests get 503 + `Retry-After`.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Requests one instance of an HTTP function may serve before it is thrown away
    /// (default 1: a fresh instance per request). Above 1, an instance that answered and
    /// left no handle open serves the next request, keeping its memory and globals.
    #[serde(default)]
    pub reuse: Option<u32>,
    /// Whether `Prefer: respond-async` requests are stored and run later (202): `true`, or
    /// `{ max_queued, max_bytes, keep_headers }`. Without it the preference is ignored and
    /// the request runs at once.
    #[serde(default, rename = "async")]
    pub async_: Option<AsyncSetting>,
}

/// `async = true | { max_queued = 1000, max_bytes = "256MiB", keep_headers = [...] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AsyncSetting {
    /// `async = true` (the defaults) or `false`.
    On(bool),
    /// The caps and headers, spelled out.
    With(AsyncLimits),
}

/// Caps on a function's stored async invocations (DESIGN §9 defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncLimits {
    /// Invocations stored and not finished at most (default 1,000); past it, 503.
    #[serde(default)]
    pub max_queued: Option<u32>,
    /// Request bytes stored and not finished at most (default `"256MiB"`); past it, 503.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// Request headers kept with the stored request besides the usual ones; `authorization`
    /// and `cookie` are dropped unless listed here.
    #[serde(default)]
    pub keep_headers: Vec<String>,
}

/// What an async-enabled function allows, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncPolicy {
    /// Unfinished invocations at most.
    pub max_queued: u32,
    /// Unfinished request bytes at most.
    pub max_bytes: u64,
    /// Sensitive headers to keep, lowercase.
    pub keep_headers: Vec<String>,
}

impl Function {
    /// The timeout in force for HTTP invocations.
    pub fn http_timeout(&self) -> std::time::Duration {
        self.timeout.map_or(DEFAULT_HTTP_TIMEOUT, |t| t.0)
    }

    /// The memory cap in force.
    pub fn memory_bytes(&self) -> u64 {
        self.memory.map_or(DEFAULT_MEMORY, |m| m.0)
    }

    /// The concurrency cap in force.
    pub fn concurrency(&self) -> u32 {
        self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY)
    }

    /// Requests one instance may serve (1 unless `reuse` says more).
    pub fn reuse(&self) -> u32 {
        self.reuse.unwrap_or(1)
    }

    /// Its async policy, or `None` when `Prefer: respond-async` is to be ignored.
    pub fn async_policy(&self) -> Option<AsyncPolicy> {
        let limits = match &self.async_ {
            None | Some(AsyncSetting::On(false)) => return None,
            Some(AsyncSetting::On(true)) => AsyncLimits::default(),
            Some(AsyncSetting::With(limits)) => limits.clone(),
        };
        Some(AsyncPolicy {
            max_queued: limits.max_queued.unwrap_or(1_000),
            max_bytes: limits.max_bytes.map_or(256 << 20, |b| b.0),
            keep_headers: limits
                .keep_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        })
    }
}

/// `[function.<id>.build]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// A shell command that produces `source`.
    pub command: String,
    /// Where to run it, relative to the manifest (default: the manifest's folder).
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Globs (relative to `workdir`) whose change makes the component stale.
    #[serde(default)]
    pub watch: Vec<String>,
}

/// `[[trigger.<kind>]]`: every trigger table, kept as written and grouped by kind.
///
/// The trigger registry (`updraft-triggers`) owns each kind's keys: it parses these tables
/// into typed configs and checks them against the rest of the manifest, with keyed errors
/// (`trigger.cron[0].schedule: ...`), so adding a kind never touches this crate.
pub type Triggers = BTreeMap<String, Vec<toml::Table>>;
