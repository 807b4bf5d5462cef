//! SQL databases: `[sql.<label>]`, reachable when the function lists the label in `sql`.
//! Parameters are `$1…$n`.

use crate::bindings::updraft::platform::sql as wit;
use crate::{Error, Result};

pub use wit::Value;

fn err(e: wit::Error) -> Error {
    Error(match e {
        wit::Error::AccessDenied(m)
        | wit::Error::NoSuchDatabase(m)
        | wit::Error::Invalid(m)
        | wit::Error::Other(m) => m,
    })
}

/// An open database.
pub struct Database {
    conn: wit::Connection,
}

/// The rows of a query.
#[derive(Debug, Clone)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Each row as a JSON object keyed by column name (blobs become arrays of bytes).
    pub fn to_json(&self) -> Vec<serde_json::Value> {
        self.rows
            .iter()
            .map(|row| {
                let map = self
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (c.clone(), value_to_json(v)))
                    .collect();
                serde_json::Value::Object(map)
            })
            .collect()
    }
}

/// A value as JSON.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(f) => (*f).into(),
        Value::Text(s) => s.clone().into(),
        Value::Blob(b) => b.clone().into(),
    }
}

impl Database {
    /// Opens the database declared as `[sql.<label>]`.
    pub fn open(label: &str) -> Result<Self> {
        wit::Connection::open(label)
            .map(|conn| Self { conn })
            .map_err(err)
    }

    /// Runs a statement; returns the rows it changed.
    pub fn execute(&self, statement: &str, params: &[Value]) -> Result<u64> {
        self.conn.execute(statement, params).map_err(err)
    }

    /// Runs a query.
    pub fn query(&self, statement: &str, params: &[Value]) -> Result<Rows> {
        self.conn
            .query(statement, params)
            .map(|r| Rows {
                columns: r.columns,
                rows: r.rows,
            })
            .map_err(err)
    }

    /// Runs several statements, each with its parameters, in one transaction; returns the
    /// rows each changed. All or nothing.
    pub fn batch(&self, statements: &[(&str, Vec<Value>)]) -> Result<Vec<u64>> {
        let statements: Vec<(String, Vec<Value>)> = statements
            .iter()
            .map(|(sql, params)| ((*sql).to_owned(), params.clone()))
            .collect();
        self.conn.batch(&statements).map_err(err)
    }

    /// Runs one statement per parameter row, in one transaction.
    pub fn execute_many(&self, statement: &str, rows: &[Vec<Value>]) -> Result<u64> {
        self.conn.execute_many(statement, rows).map_err(err)
    }

    /// Starts a streamed load of `statement` (checked now): [`Loader::push`] rows in chunks,
    /// then [`Loader::commit`] once. The rows wait outside the function's memory, so a load
    /// of any size fits; dropping the loader without committing changes nothing.
    ///
    /// ```ignore
    /// let mut load = db.load("INSERT INTO sales (id, total) VALUES ($1, $2)")?;
    /// for chunk in rows.chunks(1000) {
    ///     load.push(chunk)?;
    /// }
    /// let changed = load.commit()?; // all of them, or none on error
    /// ```
    pub fn load(&self, statement: &str) -> Result<Loader> {
        self.conn
            .load(statement)
            .map(|inner| Loader { inner, rows: 0 })
            .map_err(err)
    }
}

/// A streamed load in progress ([`Database::load`]).
pub struct Loader {
    inner: wit::Loader,
    rows: u64,
}

impl Loader {
    /// Adds rows, each one value per parameter of the statement.
    pub fn push(&mut self, rows: &[Vec<Value>]) -> Result<()> {
        self.inner.push(rows).map_err(err)?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// The rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Runs the statement once per pushed row in one transaction; returns the rows changed.
    /// All or nothing: an error names the row (counting pushed rows from 1).
    pub fn commit(self) -> Result<u64> {
        wit::Loader::commit(self.inner).map_err(err)
    }

    /// [`Loader::commit`], telling rows the database refused (a constraint, a type) from
    /// the database failing.
    pub(crate) fn commit_typed(self) -> std::result::Result<u64, LoadError> {
        wit::Loader::commit(self.inner).map_err(|e| match e {
            wit::Error::Invalid(m) => LoadError::Refused(m),
            other => LoadError::Failed(err(other)),
        })
    }
}

/// Why a commit failed.
pub(crate) enum LoadError {
    /// The data: the database refused a row (the message names it).
    Refused(String),
    /// The database or the call failed; a retry may succeed.
    Failed(Error),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// `params![a, b, c]`: a parameter list from anything that converts into [`Value`].
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => {
        &[$($crate::sql::Value::from($v)),*]
    };
}
