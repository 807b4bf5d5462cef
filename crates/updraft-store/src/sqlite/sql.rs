//! `SqlStore` on its own SQLite file.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, Statement};

use super::Db;
use crate::StoreError;
use crate::sql::{Migration, RowSet, SqlError, SqlStore, Value};

/// A user database in one SQLite file.
#[derive(Clone)]
pub struct SqliteSql {
    db: Db,
    label: String,
}

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _updraft_migrations (
    name TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)";

impl SqliteSql {
    /// Opens (creating) the database `label` at `path`.
    pub fn open(label: &str, path: &Path) -> Result<Self, SqlError> {
        let db = Db::open(path, |c| c.execute_batch(MIGRATIONS_TABLE)).map_err(|e| {
            SqlError::Backend {
                database: label.to_owned(),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            db,
            label: label.to_owned(),
        })
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
            JobError::Backend(message) => SqlError::Backend { database, message },
        }
    }
}

/// A failure inside a database job; the label is added outside.
enum JobError {
    ParameterCount { expected: usize, given: usize },
    Statement(String),
    Backend(String),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => JobError::Statement(m),
            StoreError::Backend(m) => JobError::Backend(m),
        }
    }
}

fn stmt_err(e: rusqlite::Error) -> JobError {
    JobError::Statement(e.to_string())
}

/// Binds `$n` (by number) and `?` (by position) parameters, checking the count.
fn bind(stmt: &mut Statement<'_>, params: &[Value]) -> Result<(), JobError> {
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(JobError::ParameterCount {
            expected,
            given: params.len(),
        });
    }
    for i in 1..=expected {
        let which = match stmt.parameter_name(i) {
            Some(name) => match name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if (1..=params.len()).contains(&n) => n - 1,
                _ => {
                    return Err(JobError::Statement(format!(
                        "parameter `{name}` is not one of $1…${}; number parameters $1, $2, …",
                        params.len()
                    )));
                }
            },
            None => i - 1,
        };
        stmt.raw_bind_parameter(i, to_sql(&params[which]))
            .map_err(stmt_err)?;
    }
    Ok(())
}

fn to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Float(f) => SqlValue::Real(*f),
        Value::Text(s) => SqlValue::Text(s.clone()),
        Value::Blob(b) => SqlValue::Blob(b.clone()),
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

fn run_query(conn: &Connection, sql: &str, params: &[Value]) -> Result<RowSet, JobError> {
    let mut stmt = conn.prepare_cached(sql).map_err(stmt_err)?;
    bind(&mut stmt, params)?;
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let width = columns.len();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(stmt_err)? {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(from_sql(row.get_ref(i).map_err(stmt_err)?));
        }
        out.push(values);
    }
    Ok(RowSet { columns, rows: out })
}

fn is_read_only(conn: &Connection, sql: &str) -> bool {
    conn.prepare_cached(sql).is_ok_and(|s| s.readonly())
}

#[async_trait]
impl SqlStore for SqliteSql {
    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, SqlError> {
        let sql = sql.to_owned();
        self.db
            .write(move |c| run_execute(c, &sql, &params))
            .await
            .map_err(|e| self.labelled(e))
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<RowSet, SqlError> {
        let sql = sql.to_owned();
        // Plain reads go to the reader pool; anything that writes (`RETURNING`) to the writer.
        let probe = sql.clone();
        let read_only = self
            .db
            .read(move |c| Ok::<_, JobError>(is_read_only(c, &probe)))
            .await
            .unwrap_or(false);
        let result = if read_only {
            self.db.read(move |c| run_query(c, &sql, &params)).await
        } else {
            self.db.write(move |c| run_query(c, &sql, &params)).await
        };
        result.map_err(|e| self.labelled(e))
    }

    async fn execute_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> Result<u64, SqlError> {
        let sql = sql.to_owned();
        self.db
            .write(move |c| {
                let mut total = 0;
                for row in &rows {
                    total += run_execute(c, &sql, row)?;
                }
                Ok(total)
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
