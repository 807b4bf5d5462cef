//! User databases.

use async_trait::async_trait;

/// A value in a row or a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// The result of a query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowSet {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
}

/// A table or view of a user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Its name.
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
    /// Its columns in order, each with its declared type (may be empty).
    pub columns: Vec<(String, String)>,
}

/// Caps on one query's result; past them the query fails with a message saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// Rows at most (DESIGN §9: 100,000).
    pub max_rows: u64,
    /// Bytes of values at most (DESIGN §9: 32 MiB).
    pub max_bytes: u64,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            max_rows: 100_000,
            max_bytes: 32 << 20,
        }
    }
}

/// A migration: a named SQL script applied once.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Its name (the file name), recorded once applied.
    pub name: String,
    /// The statements.
    pub sql: String,
}

/// Why a statement failed. Messages name the database label.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SqlError {
    /// The statement is not valid for this database (syntax, unknown table, constraint...).
    #[error("sql `{database}`: {message}")]
    Statement {
        /// The database label.
        database: String,
        /// The database's own message.
        message: String,
    },
    /// The parameters do not match the statement.
    #[error("sql `{database}`: the statement has {expected} parameter(s) but {given} were given")]
    ParameterCount {
        /// The database label.
        database: String,
        /// What the statement uses.
        expected: usize,
        /// What was passed.
        given: usize,
    },
    /// The statement does something functions may not do (reach another file, control the
    /// transaction, load an extension, change how the file is stored).
    #[error("sql `{database}`: {message}")]
    Refused {
        /// The database label.
        database: String,
        /// What was refused and why.
        message: String,
    },
    /// The backend failed.
    #[error("sql `{database}`: backend failed: {message}")]
    Backend {
        /// The database label.
        database: String,
        /// What failed.
        message: String,
    },
}

/// A user database. Statements are in the backend's dialect; parameters are `$1…$n` on every
/// backend (plain `?` works on SQLite too).
#[async_trait]
pub trait SqlStore: Send + Sync + 'static {
    /// Runs a statement that returns no rows; returns the rows it changed.
    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, SqlError>;
    /// Runs a query.
    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<RowSet, SqlError>;
    /// Runs a query that only reads (for dashboards and the table explorer): a statement
    /// that would write is refused ([`SqlError::Refused`]) before it runs.
    async fn read(&self, sql: &str, params: Vec<Value>) -> Result<RowSet, SqlError>;
    /// The database's tables and views with their columns, by name (updraft's own
    /// bookkeeping tables left out).
    async fn tables(&self) -> Result<Vec<TableInfo>, SqlError>;
    /// Runs one statement once per parameter row, all in one transaction; returns the rows
    /// changed in total. On error nothing is changed.
    async fn execute_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> Result<u64, SqlError>;
    /// Runs several statements, each with its parameters, in order and in one transaction;
    /// returns the rows each changed. On error nothing is changed, and the error says which
    /// statement failed.
    async fn batch(&self, statements: Vec<(String, Vec<Value>)>) -> Result<Vec<u64>, SqlError>;
    /// Applies the migrations not applied before, in order, each in its own transaction;
    /// returns the names it applied.
    async fn migrate(&self, migrations: Vec<Migration>) -> Result<Vec<String>, SqlError>;
    /// Starts a streamed load of `sql` (DESIGN §9 "sql"): the statement is checked now, rows
    /// are pushed in chunks, and [`SqlLoad::commit`] runs it once per row in one transaction.
    /// Dropping the load without committing changes nothing.
    async fn load(&self, sql: &str) -> Result<Box<dyn SqlLoad>, SqlError>;
}

/// A streamed load in progress: rows wait outside memory until the one commit, so a load
/// of any size runs in bounded memory.
#[async_trait]
pub trait SqlLoad: Send + 'static {
    /// Adds rows; each must have one value per parameter of the statement.
    async fn push(&mut self, rows: Vec<Vec<Value>>) -> Result<(), SqlError>;
    /// The rows pushed so far.
    fn rows(&self) -> u64;
    /// Runs the statement once per pushed row, in order and in one transaction; returns the
    /// rows changed in total. On error nothing is changed, and the error names the row
    /// (counting pushed rows from 1).
    async fn commit(self: Box<Self>) -> Result<u64, SqlError>;
}
