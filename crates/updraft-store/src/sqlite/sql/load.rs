//! A streamed `load` on SQLite: pushed rows are spooled to an unnamed temporary file beside
//! the database (never held in memory, [`crate::spool`]), and the commit runs the statement
//! over the spool in one write job, so the load is one all-or-nothing transaction and the
//! writer is held only while the rows go in, not while the guest produces them.

use async_trait::async_trait;
use rusqlite::Connection;

use super::{JobError, SqliteSql, guest, param_slots, stmt_err, to_sql};
use crate::spool::{Spool, SpoolReader};
use crate::sql::{SqlError, SqlLoad, Value};
use crate::sqlite::guest::Cancel;

pub(super) struct SqliteLoad {
    sql: SqliteSql,
    statement: String,
    params: usize,
    rows: u64,
    /// None once a push was cut off half way (its caller went): the spool is then unusable.
    spool: Option<Spool>,
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
        let dir = sql
            .db
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let spool = tokio::task::spawn_blocking(move || Spool::create_in(&dir))
            .await
            .map_err(|e| sql.labelled(JobError::Backend(e.to_string())))?
            .map_err(|e| {
                sql.labelled(JobError::Backend(format!(
                    "cannot open a spool file for the load: {e}"
                )))
            })?;
        Ok(Self {
            statement: statement.to_owned(),
            params,
            rows: 0,
            spool: Some(spool),
            sql,
        })
    }

    fn interrupted(&self) -> SqlError {
        self.sql.labelled(JobError::Backend(
            "an earlier push of this load was cut off; start the load again".into(),
        ))
    }
}

#[async_trait]
impl SqlLoad for SqliteLoad {
    async fn push(&mut self, rows: Vec<Vec<Value>>) -> Result<(), SqlError> {
        for (i, row) in rows.iter().enumerate() {
            if row.len() != self.params {
                return Err(self.sql.labelled(JobError::Statement(format!(
                    "row {} of the load has {} value(s) but the statement has {} parameter(s)",
                    self.rows + i as u64 + 1,
                    row.len(),
                    self.params
                ))));
            }
        }
        let mut spool = self.spool.take().ok_or_else(|| self.interrupted())?;
        let count = rows.len() as u64;
        let spool = tokio::task::spawn_blocking(move || spool.write(&rows).map(|()| spool))
            .await
            .map_err(|e| self.sql.labelled(JobError::Backend(e.to_string())))?
            .map_err(|e| {
                self.sql.labelled(JobError::Backend(format!(
                    "cannot spool the load's rows: {e}"
                )))
            })?;
        self.spool = Some(spool);
        self.rows += count;
        Ok(())
    }

    fn rows(&self) -> u64 {
        self.rows
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, SqlError> {
        let spool = self.spool.take().ok_or_else(|| self.interrupted())?;
        let (statement, params, rows) = (self.statement.clone(), self.params, self.rows);
        let cancel = Cancel::default();
        let _cancel_when_dropped = cancel.on_drop();
        self.sql
            .db
            .write(move |c| {
                let mut spool = spool
                    .into_reader()
                    .map_err(|e| JobError::Backend(format!("cannot read the spool: {e}")))?;
                guest(&cancel, || {
                    run_load(c, &statement, params, rows, &mut spool)
                })
            })
            .await
            .map_err(|e| self.sql.labelled(e))
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
