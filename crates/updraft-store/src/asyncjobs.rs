//! Async invocations (`Prefer: respond-async`): the request is stored and queued in one
//! commit, run later by a worker, and its outcome kept for the status endpoint.

use async_trait::async_trait;

use crate::StoreError;

/// A stored request waiting to run, or its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AsyncJob {
    /// The invocation id.
    pub id: String,
    /// The function.
    pub function: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// The request: method, path and query, headers, body.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers as name/value pairs.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Where to POST the outcome, if anywhere.
    pub callback: Option<String>,
    /// Times, microseconds since the epoch.
    pub created_us: i64,
    /// When it finished.
    pub finished_us: Option<i64>,
    /// The function's answer: status.
    pub response_status: Option<u16>,
    /// The function's answer: headers.
    pub response_headers: Vec<(String, String)>,
    /// The function's answer: body.
    pub response_body: Vec<u8>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Where async invocations live.
#[async_trait]
pub trait AsyncStore: Send + Sync + 'static {
    /// Stores `job` (status `queued`) and enqueues its id on `queue`, so that once it returns
    /// both are durable and neither exists without the other: one commit where the backend
    /// has transactions (SQLite); elsewhere, store first, then enqueue with the job id as
    /// the idempotency key, so a retried submit completes a cut-short one without a second
    /// run. Submitting the same id again never queues a second run (the conformance suite
    /// checks both).
    async fn submit(&self, job: AsyncJob, queue: &str, now_us: i64) -> Result<(), StoreError>;
    /// The job.
    async fn get(&self, id: &str) -> Result<Option<AsyncJob>, StoreError>;
    /// How many of `function`'s jobs are not finished, and the bytes of their request bodies
    /// (what its `async` caps count).
    async fn pending(&self, function: &str) -> Result<(u64, u64), StoreError>;
    /// Marks it running.
    async fn start(&self, id: &str) -> Result<(), StoreError>;
    /// Records its outcome (`succeeded` or `failed`); the first outcome recorded stays.
    async fn finish(&self, job: &AsyncJob, now_us: i64) -> Result<(), StoreError>;
    /// The newest `limit` jobs (of `function`, when given), newest first, without their
    /// request and response bodies: what the dashboard and `GET /async` list.
    async fn recent(&self, function: Option<&str>, limit: u32)
    -> Result<Vec<AsyncJob>, StoreError>;
    /// Deletes finished jobs older than `before_us`.
    async fn prune(&self, before_us: i64) -> Result<u64, StoreError>;
}
