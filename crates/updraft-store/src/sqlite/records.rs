//! `RecordStore` on the platform state file.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Db;
use crate::StoreError;
use crate::records::{InvocationQuery, InvocationRow, LogQuery, LogRow, RecordStore};

pub(crate) const SCHEMA: &str = "
CREATE TABLE invocations (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_us INTEGER NOT NULL,
    cold INTEGER NOT NULL,
    instantiate_us INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT
);
CREATE INDEX invocations_by_time ON invocations (started_us);
CREATE INDEX invocations_by_function ON invocations (function, started_us);
CREATE TABLE logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_us INTEGER NOT NULL,
    function TEXT NOT NULL,
    invocation TEXT NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX logs_by_invocation ON logs (invocation);
CREATE INDEX logs_by_function ON logs (function, seq);
CREATE INDEX logs_by_time ON logs (time_us);
";

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Records in a SQLite file opened with [`super::state::open`].
#[derive(Clone)]
pub struct SqliteRecords {
    db: Db,
}

impl SqliteRecords {
    /// Records in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn invocation_row(r: &Row<'_>) -> rusqlite::Result<InvocationRow> {
    Ok(InvocationRow {
        id: r.get(0)?,
        function: r.get(1)?,
        trigger: r.get(2)?,
        started_us: r.get(3)?,
        cold: r.get(4)?,
        instantiate_us: r.get(5)?,
        duration_us: r.get(6)?,
        outcome: r.get(7)?,
        error: r.get(8)?,
    })
}

const INVOCATION_COLUMNS: &str =
    "id, function, trigger, started_us, cold, instantiate_us, duration_us, outcome, error";

fn log_row(r: &Row<'_>) -> rusqlite::Result<LogRow> {
    Ok(LogRow {
        seq: r.get(0)?,
        time_us: r.get(1)?,
        function: r.get(2)?,
        invocation: r.get(3)?,
        stream: r.get(4)?,
        line: r.get(5)?,
    })
}

fn append_in(
    conn: &Connection,
    invocations: &[InvocationRow],
    logs: &[LogRow],
) -> Result<(), StoreError> {
    let mut ins = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO invocations (id, function, trigger, started_us, cold, instantiate_us, duration_us, outcome, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(backend)?;
    for i in invocations {
        ins.execute(params![
            i.id,
            i.function,
            i.trigger,
            i.started_us,
            i.cold,
            i.instantiate_us,
            i.duration_us,
            i.outcome,
            i.error
        ])
        .map_err(backend)?;
    }
    let mut ins = conn
        .prepare_cached(
            "INSERT INTO logs (time_us, function, invocation, stream, line) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(backend)?;
    for l in logs {
        ins.execute(params![
            l.time_us,
            l.function,
            l.invocation,
            l.stream,
            l.line
        ])
        .map_err(backend)?;
    }
    Ok(())
}

#[async_trait]
impl RecordStore for SqliteRecords {
    async fn append(
        &self,
        invocations: Vec<InvocationRow>,
        logs: Vec<LogRow>,
    ) -> Result<(), StoreError> {
        if invocations.is_empty() && logs.is_empty() {
            return Ok(());
        }
        self.db
            .write(move |c| append_in(c, &invocations, &logs))
            .await
    }

    async fn invocations(&self, q: InvocationQuery) -> Result<Vec<InvocationRow>, StoreError> {
        self.db
            .read(move |c| {
                let sql = format!(
                    "SELECT {INVOCATION_COLUMNS} FROM invocations
                     WHERE (?1 IS NULL OR function = ?1) AND (?2 IS NULL OR started_us < ?2)
                     ORDER BY started_us DESC LIMIT ?3"
                );
                let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(
                        params![q.function, q.before_us, q.limit.clamp(1, 10_000)],
                        invocation_row,
                    )
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }

    async fn invocation(&self, id: &str) -> Result<Option<InvocationRow>, StoreError> {
        let id = id.to_owned();
        self.db
            .read(move |c| {
                let sql = format!("SELECT {INVOCATION_COLUMNS} FROM invocations WHERE id = ?1");
                c.query_row(&sql, [id], invocation_row)
                    .optional()
                    .map_err(backend)
            })
            .await
    }

    async fn logs(&self, q: LogQuery) -> Result<Vec<LogRow>, StoreError> {
        self.db
            .read(move |c| {
                let limit = q.limit.clamp(1, 10_000);
                let filter = "(?1 IS NULL OR function = ?1) AND (?2 IS NULL OR invocation = ?2)";
                let sql = match q.after {
                    // Following: the next lines after a position, oldest first.
                    Some(_) => format!(
                        "SELECT seq, time_us, function, invocation, stream, line FROM logs
                         WHERE {filter} AND seq > ?3 ORDER BY seq LIMIT ?4"
                    ),
                    // A look back: the newest lines, returned oldest first.
                    None => format!(
                        "SELECT * FROM (SELECT seq, time_us, function, invocation, stream, line FROM logs
                         WHERE {filter} AND ?3 IS NULL ORDER BY seq DESC LIMIT ?4) ORDER BY seq"
                    ),
                };
                let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(params![q.function, q.invocation, q.after, limit], log_row)
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }

    async fn prune(
        &self,
        invocations_before_us: i64,
        logs_before_us: i64,
    ) -> Result<u64, StoreError> {
        // In batches, each its own write: an hour of busy logs must not hold the writer
        // (and with it every ack and 202 of the node) in one long transaction.
        let invocations = super::delete_in_batches(
            &self.db,
            "DELETE FROM invocations WHERE id IN (
                 SELECT id FROM invocations WHERE started_us < ?1 LIMIT ?2)",
            invocations_before_us,
        )
        .await?;
        let logs = super::delete_in_batches(
            &self.db,
            "DELETE FROM logs WHERE seq IN (SELECT seq FROM logs WHERE time_us < ?1 LIMIT ?2)",
            logs_before_us,
        )
        .await?;
        Ok(invocations + logs)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn sqlite_records_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut n = 0;
        crate::conformance::records::run(move || {
            n += 1;
            let db = crate::sqlite::state::open(&path.join(format!("s{n}.db"))).unwrap();
            Arc::new(SqliteRecords::new(db)) as Arc<dyn RecordStore>
        })
        .await;
    }
}
