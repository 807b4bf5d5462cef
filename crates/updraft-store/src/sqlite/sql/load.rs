//! A streamed `load` on SQLite: pushed rows are spooled to an unnamed temporary file beside
//! the database (never held in memory, [`crate::spool`]), and the commit runs the statement
//! over the spool in one write job, so the load is one all-or-nothing transaction and the
//! writer is held only while the rows go in, not while the guest produces them.

use async_trait::async_trait;
use rusqlite::Connection;

use super::{JobError, SqliteSql, guest, param_slots, stmt_err, to_sql};
use crate::spool::{PendingLoad, PushError, SpoolReader};
use crate::sql::{SqlError, SqlLoad, Value};
use crate::sqlite::guest::Cancel;

pub(super) struct SqliteLoad {
    sql: SqliteSql,
    statement: String,
    pending: PendingLoad,
}

impl SqliteLoad {
    /// Checks `statement` (it compiles, the sandbox allows it, its parameters are numbered)
    /// and opens the spool.
    pub(super) async fn begin(sql: SqliteSql, statement: &str) -> Result<Self, SqlError> {
        let probe = statement.to_owned();
        let params = sql
            .guest_read(Cancel::default(), move |c| {
                let stmt = c.prepare(&probe).map_err(stmt_err)?;
                let count = stmt.parameter_count();
                param_slots(&stmt, count)?;
                Ok(count)
            })
            .await
            .map_err(|e| sql.labelled(e))?;
        let dir = sql.db.path().parent().map(std::path::Path::to_path_buf);
        let pending = PendingLoad::start(dir, params)
            .await
            .map_err(|e| sql.labelled(JobError::Backend(e)))?;
        Ok(Self {
            statement: statement.to_owned(),
            pending,
            sql,
        })
    }
}

#[async_trait]
impl SqlLoad for SqliteLoad {
    async fn push(&mut self, rows: Vec<Vec<Value>>) -> Result<(), SqlError> {
        self.pending.push(rows).await.map_err(|e| {
            self.sql.labelled(match e {
                PushError::Width(m) => JobError::Statement(m),
                PushError::Spool(m) => JobError::Backend(m),
            })
        })
    }

    fn rows(&self) -> u64 {
        self.pending.rows()
    }

    async fn commit(self: Box<Self>) -> Result<u64, SqlError> {
        let Self {
            sql,
            statement,
            pending,
        } = *self;
        let (params, rows) = (pending.width(), pending.rows());
        let mut spool = pending
            .into_reader()
            .await
            .map_err(|e| sql.labelled(JobError::Backend(e)))?;
        let cancel = Cancel::default();
        let _cancel_when_dropped = cancel.on_drop();
        sql.db
            .write(move |c| {
                guest(&cancel, || {
                    run_load(c, &statement, params, rows, &mut spool)
                })
            })
            .await
            .map_err(|e| sql.labelled(e))
    }
}

/// Runs `statement` once per spooled row; an error names the row.
fn run_load(
    conn: &Connection,
    statement: &str,
    params: usize,
    rows: u64,
    spool: &mut SpoolReader,
) -> Result<u64, JobError> {
    let mut stmt = conn.prepare(statement).map_err(stmt_err)?;
    let slots = param_slots(&stmt, params)?;
    let mut values = Vec::with_capacity(params);
    let mut changed = 0;
    for row in 1..=rows {
        values.clear();
        for _ in 0..params {
            let value = spool
                .next_value()
                .map_err(|e| JobError::Backend(format!("cannot read the spool: {e}")))?;
            values.push(to_sql(value));
        }
        let at_row =
            |e: rusqlite::Error| JobError::Statement(format!("row {row} of the load: {e}"));
        for (slot, which) in slots.iter().enumerate() {
            stmt.raw_bind_parameter(slot + 1, &values[*which])
                .map_err(at_row)?;
        }
        changed += stmt.raw_execute().map_err(at_row)? as u64;
    }
    Ok(changed)
}
