//! `AsyncStore` on the platform state file.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::Db;
use super::queue::insert;
use crate::StoreError;
use crate::asyncjobs::{AsyncJob, AsyncStore};
use crate::queue::{Event, NewMessage};

pub(crate) const SCHEMA: &str = "
CREATE TABLE async_jobs (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    status TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    callback TEXT,
    created_us INTEGER NOT NULL,
    finished_us INTEGER,
    response_status INTEGER,
    response_headers TEXT NOT NULL DEFAULT '[]',
    response_body BLOB NOT NULL DEFAULT x'',
    error TEXT
) WITHOUT ROWID;
CREATE INDEX async_jobs_finished ON async_jobs (finished_us);
";

/// Lets the dashboard list the newest jobs (of a function) without a scan.
pub(crate) const CREATED_INDEX: &str = "
CREATE INDEX async_jobs_by_function ON async_jobs (function, created_us);
CREATE INDEX async_jobs_by_time ON async_jobs (created_us);
";

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Async jobs in a SQLite file opened with [`super::state::open`].
#[derive(Clone)]
pub struct SqliteAsyncJobs {
    db: Db,
}

impl SqliteAsyncJobs {
    /// Jobs in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn job(r: &Row<'_>) -> rusqlite::Result<AsyncJob> {
    let headers: String = r.get(5)?;
    let response_headers: String = r.get(11)?;
    Ok(AsyncJob {
        id: r.get(0)?,
        function: r.get(1)?,
        status: r.get(2)?,
        method: r.get(3)?,
        path: r.get(4)?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: r.get(6)?,
        callback: r.get(7)?,
        created_us: r.get(8)?,
        finished_us: r.get(9)?,
        response_status: r.get(10)?,
        response_headers: serde_json::from_str(&response_headers).unwrap_or_default(),
        response_body: r.get(12)?,
        error: r.get(13)?,
    })
}

#[async_trait]
impl AsyncStore for SqliteAsyncJobs {
    async fn submit(&self, job: AsyncJob, queue: &str, now_us: i64) -> Result<(), StoreError> {
        let queue = queue.to_owned();
        self.db
            .write(move |c| {
                let headers = serde_json::to_string(&job.headers).map_err(backend)?;
                c.execute(
                    "INSERT INTO async_jobs (id, function, status, method, path, headers, body, callback, created_us)
                     VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![job.id, job.function, job.method, job.path, headers, job.body, job.callback, now_us],
                )
                .map_err(backend)?;
                let message = NewMessage {
                    event: Event {
                        id: job.id.clone(),
                        source: format!("/functions/{}", job.function),
                        ty: "updraft.async".to_owned(),
                        ..Event::default()
                    },
                    available_us: now_us,
                    idempotency_key: None,
                };
                insert(c, &queue, &message, now_us)
            })
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<AsyncJob>, StoreError> {
        let id = id.to_owned();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT id, function, status, method, path, headers, body, callback, created_us, finished_us,
                            response_status, response_headers, response_body, error
                     FROM async_jobs WHERE id = ?1",
                    [id],
                    job,
                )
                .optional()
                .map_err(backend)
            })
            .await
    }

    async fn recent(
        &self,
        function: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AsyncJob>, StoreError> {
        let function = function.map(str::to_owned);
        self.db
            .read(move |c| {
                // Bodies stay in the table: `x''` in their place keeps one row reader.
                const COLUMNS: &str = "id, function, status, method, path, headers, x'', callback, created_us,
                     finished_us, response_status, response_headers, x'', error";
                let (sql, args) = match function {
                    Some(f) => (
                        format!("SELECT {COLUMNS} FROM async_jobs WHERE function = ?2 ORDER BY created_us DESC LIMIT ?1"),
                        vec![rusqlite::types::Value::from(limit), f.into()],
                    ),
                    None => (
                        format!("SELECT {COLUMNS} FROM async_jobs ORDER BY created_us DESC LIMIT ?1"),
                        vec![rusqlite::types::Value::from(limit)],
                    ),
                };
                let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
                stmt.query_map(rusqlite::params_from_iter(args), job)
                    .and_then(Iterator::collect)
                    .map_err(backend)
            })
            .await
    }

    async fn pending(&self, function: &str) -> Result<(u64, u64), StoreError> {
        let function = function.to_owned();
        self.db
            .read(move |c| {
                // `finished_us IS NULL` walks the index on finished_us: only unfinished rows.
                c.query_row(
                    "SELECT count(*), coalesce(sum(length(body)), 0) FROM async_jobs
                     WHERE finished_us IS NULL AND function = ?1",
                    [function],
                    |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
                )
                .map_err(backend)
            })
            .await
    }

    async fn start(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.db
            .write(move |c| {
                c.execute("UPDATE async_jobs SET status = 'running' WHERE id = ?1 AND finished_us IS NULL", [id])
                    .map(drop)
                    .map_err(backend)
            })
            .await
    }

    async fn finish(&self, job: &AsyncJob, now_us: i64) -> Result<(), StoreError> {
        let job = job.clone();
        self.db
            .write(move |c| {
                let headers = serde_json::to_string(&job.response_headers).map_err(backend)?;
                c.execute(
                    "UPDATE async_jobs SET status = ?2, finished_us = ?3, response_status = ?4,
                            response_headers = ?5, response_body = ?6, error = ?7
                     WHERE id = ?1 AND finished_us IS NULL",
                    params![
                        job.id,
                        job.status,
                        now_us,
                        job.response_status,
                        headers,
                        job.response_body,
                        job.error
                    ],
                )
                .map(drop)
                .map_err(backend)
            })
            .await
    }

    async fn prune(&self, before_us: i64) -> Result<u64, StoreError> {
        // In batches: a day of stored requests and answers can be large.
        super::delete_in_batches(
            &self.db,
            "DELETE FROM async_jobs WHERE id IN (
                 SELECT id FROM async_jobs WHERE finished_us < ?1 LIMIT ?2)",
            before_us,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::queue::QueueStore;
    use crate::sqlite::SqliteQueues;

    #[tokio::test]
    async fn sqlite_async_jobs_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut n = 0;
        crate::conformance::asyncjobs::run(move || {
            n += 1;
            let db = crate::sqlite::state::open(&path.join(format!("s{n}.db"))).unwrap();
            (
                Arc::new(SqliteAsyncJobs::new(db.clone())) as Arc<dyn AsyncStore>,
                Arc::new(SqliteQueues::new(db)) as Arc<dyn QueueStore>,
            )
        })
        .await;
    }
}
