//! `RecordStore` on the platform state file.

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::Db;
use crate::StoreError;
use crate::records::{
    Durations, InvocationQuery, InvocationRow, LogQuery, LogRow, MINUTE_US, MinuteRow, RecordStore,
};

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

/// What an invocation was asked (request line or first event), kept since schema 9.
pub(crate) const REQUEST_COLUMN: &str = "ALTER TABLE invocations ADD COLUMN request TEXT;";

/// Per-function, per-minute rollups of `invocations` (see [`MinuteRow`]), kept as records
/// are appended; `durations` is [`Durations::to_bytes`].
pub(crate) const MINUTES_SCHEMA: &str = "
CREATE TABLE invocation_minutes (
    minute_us INTEGER NOT NULL,
    function TEXT NOT NULL,
    invocations INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    cold INTEGER NOT NULL,
    durations BLOB NOT NULL
);
CREATE UNIQUE INDEX invocation_minutes_key ON invocation_minutes (minute_us, function);
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
        request: r.get(9)?,
    })
}

const INVOCATION_COLUMNS: &str =
    "id, function, trigger, started_us, cold, instantiate_us, duration_us, outcome, error, request";

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
    const COLUMNS: &str =
        "(id, function, trigger, started_us, cold, instantiate_us, duration_us, outcome, error, request)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
    let mut insert = conn
        .prepare_cached(&format!("INSERT OR IGNORE INTO invocations {COLUMNS}"))
        .map_err(backend)?;
    let mut replace = conn
        .prepare_cached(&format!("INSERT OR REPLACE INTO invocations {COLUMNS}"))
        .map_err(backend)?;
    let mut fresh = Vec::with_capacity(invocations.len());
    for i in invocations {
        let values = params![
            i.id,
            i.function,
            i.trigger,
            i.started_us,
            i.cold,
            i.instantiate_us,
            i.duration_us,
            i.outcome,
            i.error,
            i.request
        ];
        // A record written again replaces the first, and its rollup already counts it.
        if insert.execute(values).map_err(backend)? == 1 {
            fresh.push(i);
        } else {
            replace.execute(values).map_err(backend)?;
        }
    }
    roll_up(conn, MinuteRow::of(fresh))?;
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

/// Adds `rollups` to the stored ones of the same minute and function.
fn roll_up(conn: &Connection, rollups: Vec<MinuteRow>) -> Result<(), StoreError> {
    let mut read = conn
        .prepare_cached(&format!(
            "SELECT {MINUTE_COLUMNS} FROM invocation_minutes WHERE minute_us = ?1 AND function = ?2"
        ))
        .map_err(backend)?;
    let mut write = conn
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO invocation_minutes ({MINUTE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        ))
        .map_err(backend)?;
    for mut m in rollups {
        let stored = read
            .query_row(params![m.minute_us, m.function], minute_row)
            .optional()
            .map_err(backend)?;
        if let Some(stored) = stored {
            m.merge(&stored);
        }
        write
            .execute(params![
                m.minute_us,
                m.function,
                count(m.invocations),
                count(m.errors),
                count(m.cold),
                m.durations.to_bytes()
            ])
            .map_err(backend)?;
    }
    Ok(())
}

const MINUTE_COLUMNS: &str = "minute_us, function, invocations, errors, cold, durations";

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn minute_row(r: &Row<'_>) -> rusqlite::Result<MinuteRow> {
    let n = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
    Ok(MinuteRow {
        minute_us: r.get(0)?,
        function: r.get(1)?,
        invocations: n(2)?,
        errors: n(3)?,
        cold: n(4)?,
        durations: Durations::from_bytes(&r.get::<_, Vec<u8>>(5)?),
    })
}

/// A `WHERE` clause with only the conditions asked for: `(?1 IS NULL OR col = ?1)` would
/// keep SQLite from using the column's index and scan the whole table.
#[derive(Default)]
struct Filter {
    conditions: Vec<String>,
    values: Vec<SqlValue>,
}

impl Filter {
    /// `column_op ?n` when `value` is given.
    fn add(&mut self, column_op: &str, value: Option<SqlValue>) {
        if let Some(v) = value {
            let n = self.bind(v);
            self.conditions.push(format!("{column_op} {n}"));
        }
    }

    /// Binds `value`; returns its placeholder.
    fn bind(&mut self, value: SqlValue) -> String {
        self.values.push(value);
        format!("?{}", self.values.len())
    }

    fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
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
        // Observability, written every 100 ms: not worth a disk sync that the leases and
        // acks sharing its group commit would wait for (a killed process keeps it).
        self.db
            .write_unsynced(move |c| append_in(c, &invocations, &logs))
            .await
    }

    async fn invocations(&self, q: InvocationQuery) -> Result<Vec<InvocationRow>, StoreError> {
        self.db
            .read(move |c| {
                let mut w = Filter::default();
                w.add("function =", q.function.map(SqlValue::Text));
                w.add("started_us <", q.before_us.map(SqlValue::Integer));
                let limit = w.bind(SqlValue::Integer(i64::from(q.limit.clamp(1, 10_000))));
                let sql = format!(
                    "SELECT {INVOCATION_COLUMNS} FROM invocations {}
                     ORDER BY started_us DESC LIMIT {limit}",
                    w.clause()
                );
                let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(params_from_iter(w.values), invocation_row)
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
                let mut w = Filter::default();
                w.add("function =", q.function.map(SqlValue::Text));
                w.add("invocation =", q.invocation.map(SqlValue::Text));
                let following = q.after.is_some();
                w.add("seq >", q.after.map(SqlValue::Integer));
                let limit = w.bind(SqlValue::Integer(i64::from(q.limit.clamp(1, 10_000))));
                let columns = "seq, time_us, function, invocation, stream, line";
                let sql = if following {
                    // Following: the next lines after a position, oldest first.
                    format!(
                        "SELECT {columns} FROM logs {} ORDER BY seq LIMIT {limit}",
                        w.clause()
                    )
                } else {
                    // A look back: the newest lines, returned oldest first.
                    format!(
                        "SELECT * FROM (SELECT {columns} FROM logs {} ORDER BY seq DESC LIMIT {limit}) ORDER BY seq",
                        w.clause()
                    )
                };
                let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(params_from_iter(w.values), log_row)
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }

    async fn minutes(&self, since_us: i64) -> Result<Vec<MinuteRow>, StoreError> {
        self.db
            .read(move |c| {
                let sql = format!(
                    "SELECT {MINUTE_COLUMNS} FROM invocation_minutes WHERE minute_us >= ?1
                     ORDER BY minute_us, function"
                );
                let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt.query_map([since_us], minute_row).map_err(backend)?;
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
        let minutes = super::delete_in_batches(
            &self.db,
            "DELETE FROM invocation_minutes WHERE rowid IN (
                 SELECT rowid FROM invocation_minutes WHERE minute_us <= ?1 LIMIT ?2)",
            // A minute goes once it ended before the cut-off.
            invocations_before_us.saturating_sub(MINUTE_US),
        )
        .await?;
        Ok(invocations + logs + minutes)
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
