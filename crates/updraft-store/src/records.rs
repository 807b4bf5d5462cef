//! Invocation records and captured guest logs: what the admin API, `updraft logs` and the
//! dashboard read. Written in batches (they are observations, not acknowledged work) and
//! pruned by age.

use async_trait::async_trait;

use crate::StoreError;

/// One finished invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRow {
    /// Its id.
    pub id: String,
    /// The function.
    pub function: String,
    /// `http`, `cron`, …
    pub trigger: String,
    /// Start, in microseconds since the Unix epoch.
    pub started_us: i64,
    /// First invocation since the component was loaded.
    pub cold: bool,
    /// Store creation plus instantiation.
    pub instantiate_us: i64,
    /// Whole invocation.
    pub duration_us: i64,
    /// `ok`, `error`, `timeout`, `memory_limit`, `rejected`.
    pub outcome: String,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// One line a function wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Increasing position, for following (`after`); assigned by the store.
    pub seq: i64,
    /// When it was written, in microseconds since the Unix epoch.
    pub time_us: i64,
    /// The function.
    pub function: String,
    /// The invocation.
    pub invocation: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, without its newline.
    pub line: String,
}

/// Which records to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct InvocationQuery {
    /// Only this function.
    pub function: Option<String>,
    /// Only records that started before this time (for paging back).
    pub before_us: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// Which log lines to read, oldest first.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only this function.
    pub function: Option<String>,
    /// Only this invocation.
    pub invocation: Option<String>,
    /// Only lines after this position (to follow).
    pub after: Option<i64>,
    /// At most this many (the newest ones when `after` is not given).
    pub limit: u32,
}

/// Where records and logs live.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// Appends a batch.
    async fn append(
        &self,
        invocations: Vec<InvocationRow>,
        logs: Vec<LogRow>,
    ) -> Result<(), StoreError>;
    /// Reads invocation records.
    async fn invocations(&self, query: InvocationQuery) -> Result<Vec<InvocationRow>, StoreError>;
    /// One invocation record.
    async fn invocation(&self, id: &str) -> Result<Option<InvocationRow>, StoreError>;
    /// Reads log lines.
    async fn logs(&self, query: LogQuery) -> Result<Vec<LogRow>, StoreError>;
    /// Deletes records and logs older than the given times; returns how many rows went.
    async fn prune(
        &self,
        invocations_before_us: i64,
        logs_before_us: i64,
    ) -> Result<u64, StoreError>;
}
