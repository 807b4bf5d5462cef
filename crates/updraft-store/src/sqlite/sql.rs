//! `SqlStore` on its own SQLite file, with functions' statements sandboxed
//! ([`super::guest`]), cut off when their caller goes, and their results capped.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, Statement};
use tokio::sync::Semaphore;

mod load;

use super::Db;
use super::guest::{Cancel, as_guest, sandbox};
use crate::StoreError;
use crate::sql::{Migration, RowSet, SqlError, SqlLimits, SqlLoad, SqlStore, TableInfo, Value};

/// Guest reads of one database running at once; more wait, so functions' queries never
/// hold more than this many threads of the blocking pool the platform shares.
const MAX_GUEST_READS: usize = 4;

/// A user database in one SQLite file.
#[derive(Clone)]
pub struct SqliteSql {
    db: Db,
    label: String,
    limits: SqlLimits,
    reads: Arc<Semaphore>,
}

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _updraft_migrations (
    name TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)";

impl SqliteSql {
    /// Opens (creating) the database `label` at `path`, with the default result caps.
    pub fn open(label: &str, path: &Path) -> Result<Self, SqlError> {
        let setup = |c: &mut Connection| c.execute_batch(MIGRATIONS_TABLE);
        let db = Db::open_guarded(path, setup, Some(sandbox)).map_err(|e| SqlError::Backend {
            database: label.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            db,
            label: label.to_owned(),
            limits: SqlLimits::default(),
            reads: Arc::new(Semaphore::new(MAX_GUEST_READS)),
        })
    }

    /// The same database with other result caps.
    pub fn with_limits(mut self, limits: SqlLimits) -> Self {
        self.limits = limits;
        self
    }

    fn labelled(&self, e: JobError) -> SqlError {
        let database = self.label.clone();
        match e {
            JobError::ParameterCount { expected, given } => SqlError::ParameterCount {
                database,
                expected,
                given,
            },
            JobError::Statement(message) => SqlError::Statement { database, message },
            JobError::Refused(message) => SqlError::Refused { database, message },
            JobError::TooLarge(what) => SqlError::Statement {
                message: format!(
                    "the result is over {what}; add a `LIMIT` or read it in pages (`max_rows` and `max_bytes` under `[sql.{database}]` raise the caps)"
                ),
                database,
            },
            JobError::Backend(message) => SqlError::Backend { database, message },
        }
    }

    /// Runs `f` as a guest read on a reader, at most [`MAX_GUEST_READS`] at once.
    async fn guest_read<R: Send + 'static>(
        &self,
        cancel: Cancel,
        f: impl FnOnce(&Connection) -> Result<R, JobError> + Send + 'static,
    ) -> Result<R, JobError> {
        let _slot = self
            .reads
            .acquire()
            .await
            .map_err(|e| JobError::Backend(e.to_string()))?;
        self.db.read(move |c| guest(&cancel, || f(c))).await
    }
}

/// A failure inside a database job; the label is added outside.
enum JobError {
    ParameterCount { expected: usize, given: usize },
    Statement(String),
    Refused(String),
    TooLarge(String),
    Backend(String),
}

/// Runs `f` as a function's SQL: under the sandbox and `cancel`, its error replaced by what
/// the sandbox refused, if it refused anything.
fn guest<R>(cancel: &Cancel, f: impl FnOnce() -> Result<R, JobError>) -> Result<R, JobError> {
    match as_guest(cancel, f) {
        (Err(_), Some(refused)) => Err(JobError::Refused(refused)),
        (result, _) => result,
    }
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => JobError::Statement(m),
            StoreError::Conflict(m) | StoreError::Unavailable(m) | StoreError::Backend(m) => {
                JobError::Backend(m)
            }
        }
    }
}

fn stmt_err(e: rusqlite::Error) -> JobError {
    JobError::Statement(e.to_string())
}

/// Which parameter value each of the statement's slots takes: `$n` by number, `?` by
/// position. `given` values must match the statement's count.
fn param_slots(stmt: &Statement<'_>, given: usize) -> Result<Vec<usize>, JobError> {
    let expected = stmt.parameter_count();
    if expected != given {
        return Err(JobError::ParameterCount { expected, given });
    }
    (1..=expected)
        .map(|i| match stmt.parameter_name(i) {
            Some(name) => match name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if (1..=given).contains(&n) => Ok(n - 1),
                _ => Err(JobError::Statement(format!(
                    "parameter `{name}` is not one of $1…${given}; number parameters $1, $2, …"
                ))),
            },
            None => Ok(i - 1),
        })
        .collect()
}

/// Binds `$n` (by number) and `?` (by position) parameters, checking the count.
fn bind(stmt: &mut Statement<'_>, params: &[Value]) -> Result<(), JobError> {
    for (slot, which) in param_slots(stmt, params.len())?.into_iter().enumerate() {
        stmt.raw_bind_parameter(slot + 1, to_sql(params[which].clone()))
            .map_err(stmt_err)?;
    }
    Ok(())
}

fn to_sql(v: Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Int(i) => SqlValue::Integer(i),
        Value::Float(f) => SqlValue::Real(f),
        Value::Text(s) => SqlValue::Text(s),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

fn from_sql(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn run_execute(conn: &Connection, sql: &str, params: &[Value]) -> Result<u64, JobError> {
    let mut stmt = conn.prepare_cached(sql).map_err(stmt_err)?;
    bind(&mut stmt, params)?;
    let mut rows = stmt.raw_query();
    // Step through any rows (e.g. `RETURNING`) so the statement runs to completion.
    while rows.next().map_err(stmt_err)?.is_some() {}
    drop(rows);
    Ok(conn.changes())
}

fn run_query(
    conn: &Connection,
    sql: &str,
    params: &[Value],
    limits: SqlLimits,
) -> Result<RowSet, JobError> {
    let mut stmt = conn.prepare_cached(sql).map_err(stmt_err)?;
    bind(&mut stmt, params)?;
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let width = columns.len();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    let mut bytes = 0u64;
    while let Some(row) = rows.next().map_err(stmt_err)? {
        if out.len() as u64 >= limits.max_rows {
            return Err(JobError::TooLarge(format!("{} rows", limits.max_rows)));
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            let value = from_sql(row.get_ref(i).map_err(stmt_err)?);
            bytes += value_size(&value);
            values.push(value);
        }
        if bytes > limits.max_bytes {
            return Err(JobError::TooLarge(format!("{} bytes", limits.max_bytes)));
        }
        out.push(values);
    }
    Ok(RowSet { columns, rows: out })
}

/// What a value costs in a result: its bytes, 8 for a number or null.
fn value_size(v: &Value) -> u64 {
    match v {
        Value::Text(t) => t.len() as u64,
        Value::Blob(b) => b.len() as u64,
        Value::Null | Value::Int(_) | Value::Float(_) => 8,
    }
}

fn is_read_only(conn: &Connection, sql: &str) -> bool {
    conn.prepare_cached(sql).is_ok_and(|s| s.readonly())
}

#[async_trait]
impl SqlStore for SqliteSql {
    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, SqlError> {
        let sql = sql.to_owned();
        let cancel = Cancel::default();
        let _cancel_when_dropped = cancel.on_drop();
        self.db
            .write(move |c| guest(&cancel, || run_execute(c, &sql, &params)))
            .await
            .map_err(|e| self.labelled(e))
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<RowSet, SqlError> {
        let sql = sql.to_owned();
        let limits = self.limits;
        let cancel = Cancel::default();
        let _cancel_when_dropped = cancel.on_drop();
        // Plain reads go to a reader; anything that writes (`RETURNING`) to the writer.
        let probe = sql.clone();
        let read_only = self
            .guest_read(cancel.clone(), move |c| Ok(is_read_only(c, &probe)))
            .await
            .unwrap_or(false);
        let result = if read_only {
            self.guest_read(cancel, move |c| run_query(c, &sql, &params, limits))
                .await
        } else {
            self.db
                .write(move |c| guest(&cancel, || run_query(c, &sql, &params, limits)))
                .await
        };
        result.map_err(|e| self.labelled(e))
    }

    async fn read(&self, sql: &str, params: Vec<Value>) -> Result<RowSet, SqlError> {
        let sql = sql.to_owned();
        let limits = self.limits;
        let cancel = Cancel::default();
        let _cancel_when_dropped = cancel.on_drop();
        self.guest_read(cancel, move |c| {
            if !c.prepare(&sql).map_err(stmt_err)?.readonly() {
                return Err(JobError::Refused(format!(
                    "`{}` would write; this query may only read: use a `SELECT`",
                    sql.split_whitespace().next().unwrap_or_default()
                )));
            }
            run_query(c, &sql, &params, limits)
        })
        .await
        .map_err(|e| self.labelled(e))
    }

    async fn tables(&self) -> Result<Vec<TableInfo>, SqlError> {
        self.db
            .read(|c| {
                let mut tables = Vec::new();
                let mut list = c
                    .prepare(
                        "SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view') \
                         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_updraft_%' ORDER BY name",
                    )
                    .map_err(stmt_err)?;
                let names = list
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .map_err(stmt_err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(stmt_err)?;
                let mut columns = c
                    .prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
                    .map_err(stmt_err)?;
                for (name, kind) in names {
                    let cols = columns
                        .query_map([&name], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                        })
                        .map_err(stmt_err)?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(stmt_err)?;
                    tables.push(TableInfo {
                        name,
                        kind,
                        columns: cols,
                    });
                }
                Ok(tables)
            })
            .await
            .map_err(|e| self.labelled(e))
    }

    async fn execute_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> Result<u64, SqlError> {
        let sql = sql.to_owned();
        let cancel = Cancel::default();
        let _cancel_when_dropped = cancel.on_drop();
        self.db
            .write(move |c| {
                guest(&cancel, || {
                    let mut total = 0;
                    for row in &rows {
                        total += run_execute(c, &sql, row)?;
                    }
                    Ok(total)
                })
            })
            .await
            .map_err(|e| self.labelled(e))
    }

    async fn batch(&self, statements: Vec<(String, Vec<Value>)>) -> Result<Vec<u64>, SqlError> {
        let cancel = Cancel::default();
        let _cancel_when_dropped = cancel.on_drop();
        self.db
            .write(move |c| {
                guest(&cancel, || {
                    statements
                        .iter()
                        .enumerate()
                        .map(|(i, (sql, params))| {
                            run_execute(c, sql, params).map_err(|e| match e {
                                JobError::Statement(m) => {
                                    JobError::Statement(format!("statement #{i} of the batch: {m}"))
                                }
                                other => other,
                            })
                        })
                        .collect()
                })
            })
            .await
            .map_err(|e| self.labelled(e))
    }

    async fn migrate(&self, migrations: Vec<Migration>) -> Result<Vec<String>, SqlError> {
        let mut applied = Vec::new();
        for m in migrations {
            let name = m.name.clone();
            let done = self
                .db
                .write(move |c| {
                    let seen: bool = c
                        .query_row(
                            "SELECT EXISTS (SELECT 1 FROM _updraft_migrations WHERE name = ?1)",
                            [&m.name],
                            |r| r.get(0),
                        )
                        .map_err(stmt_err)?;
                    if seen {
                        return Ok(false);
                    }
                    c.execute_batch(&m.sql)
                        .map_err(|e| JobError::Statement(format!("migration `{}`: {e}", m.name)))?;
                    c.execute(
                        "INSERT INTO _updraft_migrations (name) VALUES (?1)",
                        [&m.name],
                    )
                    .map_err(stmt_err)?;
                    Ok(true)
                })
                .await
                .map_err(|e| self.labelled(e))?;
            if done {
                applied.push(name);
            }
        }
        Ok(applied)
    }

    async fn load(&self, sql: &str) -> Result<Box<dyn SqlLoad>, SqlError> {
        load::SqliteLoad::begin(self.clone(), sql)
            .await
            .map(|l| Box::new(l) as Box<dyn SqlLoad>)
    }
}

impl std::fmt::Debug for SqliteSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SqliteSql({} at {})",
            self.label,
            self.db.path().display()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_sql_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut n = 0;
        crate::conformance::sql::run(move || {
            n += 1;
            Arc::new(SqliteSql::open("orders", &path.join(format!("db{n}.db"))).unwrap())
                as Arc<dyn SqlStore>
        })
        .await;
    }
}
