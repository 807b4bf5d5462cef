//! [`SqlStore`] on a PostgreSQL server.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Statement};

use super::convert::{Cell, Param, param, readable};
use super::tls::MakeRustls;
use crate::spool::{PendingLoad, PushError, SpoolReader};
use crate::sql::{Migration, RowSet, SqlError, SqlLimits, SqlLoad, SqlStore, TableInfo, Value};

/// How long a call waits for a free connection by default before it fails (instead of
/// hanging).
pub const POOL_WAIT: Duration = Duration::from_secs(5);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows of `execute-many` or a load sent before their answers are read (pipelined).
const PIPELINE: usize = 64;
/// Rows read back from a load's spool at a time.
const LOAD_CHUNK: usize = 1_000;
/// Prepared statements kept per connection; past this the connection's cache starts over.
const STATEMENT_CACHE: usize = 256;
/// Serialises migrations of one database across nodes starting at once.
const MIGRATION_LOCK: i64 = 0x0075_7064_7261_6674;

/// How to reach a database and how to bound it.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user[:password]@host:port/database` (or the `key=value` form).
    pub url: String,
    /// The password, when it is not in the URL.
    pub password: Option<String>,
    /// Connections at most.
    pub pool_size: usize,
    /// The server cancels a statement running longer (a backstop: a call that times out
    /// cancels its statement at once).
    pub statement_timeout: Duration,
    /// Result caps.
    pub limits: SqlLimits,
    /// How long a call waits for a free connection ([`POOL_WAIT`]).
    pub pool_wait: Duration,
    /// A PEM file of the CA that signed the server's certificate, trusted beside the
    /// system's roots (with `sslmode=require` in the URL).
    pub ca: Option<PathBuf>,
}

/// A user database on a PostgreSQL server.
pub struct PostgresSql {
    pool: Pool,
    label: String,
    limits: SqlLimits,
    pool_size: usize,
    pool_wait: Duration,
    /// TLS to the server (`sslmode=require`), also for cancel requests.
    tls: Option<MakeRustls>,
    /// The URL with its password masked, for messages.
    shown: String,
}

impl std::fmt::Debug for PostgresSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresSql({} at {})", self.label, self.shown)
    }
}

/// `url` with any password replaced by `***`.
pub(crate) fn masked(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        return url.to_owned();
    }
    // The `key=value` form.
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some(("password", _)) => "password=***".to_owned(),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a pooled connection runs before it serves another call (one round trip): a
/// statement can change its session without `SET` (`set_config(…, false)`, a temporary
/// table, a session advisory lock), and none of it may reach the next function. Settings
/// go back to what the connection started with (its `statement_timeout` included).
const RESET_SESSION: &str = "RESET ALL; DISCARD TEMP; SELECT pg_advisory_unlock_all()";

/// What a guest statement may not do, judged by its first words: control the transaction
/// (each call is its own, and a connection must never go back to the pool inside one),
/// change the pooled connection's session, or move data outside the protocol.
fn refused(sql: &str) -> Option<String> {
    let mut words = leading_words(sql);
    let first = words.next()?.to_ascii_uppercase();
    let why = match first.as_str() {
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE"
        | "PREPARE" => {
            "controls the transaction; every call is one transaction (use `batch` or `execute-many` for several statements)"
        }
        "SET" | "RESET" | "DISCARD" => {
            if first == "SET"
                && words
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case("LOCAL"))
            {
                return None;
            }
            "changes the pooled connection's session; use `SET LOCAL` inside a `batch`, or set it on the role"
        }
        "LISTEN" | "UNLISTEN" | "COPY" | "LOAD" | "ATTACH" | "DETACH" => {
            "reaches outside what a function's statement may do"
        }
        _ => return None,
    };
    Some(format!("`{first}` is refused: it {why}"))
}

/// The words at the start of `sql`, after whitespace and comments.
fn leading_words(sql: &str) -> impl Iterator<Item = &str> {
    let mut rest = sql;
    loop {
        let trimmed = rest.trim_start();
        if let Some(after) = trimmed.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = trimmed.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            rest = trimmed;
            break;
        }
    }
    rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .take(2)
}

/// The server's message for a failed statement (with its detail and hint).
fn server_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut message = db.message().to_owned();
            if let Some(detail) = db.detail() {
                message.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                message.push_str(&format!("; hint: {hint}"));
            }
            message
        }
        None => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            message
        }
    }
}

/// A connection held for one call. Dropped before [`Session::done`] (the call was cut off,
/// or failed with the connection in an unknown state), the connection leaves the pool and
/// the server is asked to cancel what it runs.
struct Session {
    client: Option<Object>,
    clean: bool,
    tls: Option<MakeRustls>,
}

impl Session {
    fn client(&self) -> &Object {
        // Present until drop.
        self.client.as_ref().expect("a session's client")
    }

    fn client_mut(&mut self) -> &mut Object {
        self.client.as_mut().expect("a session's client")
    }

    /// The call finished with the connection idle: it goes back to the pool.
    fn done(mut self) {
        self.clean = true;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.clean {
            return;
        }
        let Some(client) = self.client.take() else {
            return;
        };
        let token = client.cancel_token();
        drop(Object::take(client));
        let tls = self.tls.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = match tls {
                    Some(tls) => token.cancel_query(tls).await,
                    None => token.cancel_query(NoTls).await,
                };
            });
        }
    }
}

/// Parameters by reference, as the client's iterators take them.
type ParamRefs<'a> = std::iter::Map<std::slice::Iter<'a, Param>, fn(&Param) -> &dyn ToSql>;

fn as_dyn(p: &Param) -> &dyn ToSql {
    p
}

/// Parameters as the client takes them (a plain `fn`, not a closure: the futures that hold
/// this iterator must be `Send` for every lifetime).
fn as_params(params: &[Param]) -> ParamRefs<'_> {
    params.iter().map(as_dyn as fn(&Param) -> &dyn ToSql)
}

/// What a failed call inside a transaction left: the error, and whether the server
/// answered it (so the transaction can be ended and the connection kept).
type TxError = (SqlError, bool);

/// Hands `session`'s connection back to the pool when the call ended cleanly (otherwise
/// its drop takes it out).
fn settle<T>(session: Session, result: Result<T, TxError>) -> Result<T, SqlError> {
    match result {
        Ok(value) => {
            session.done();
            Ok(value)
        }
        Err((e, clean)) => {
            if clean {
                session.done();
            }
            Err(e)
        }
    }
}

impl PostgresSql {
    /// A pool for database `label`; connections open when first needed.
    pub fn new(label: &str, options: &PostgresOptions) -> Result<Self, SqlError> {
        let shown = masked(&options.url);
        let invalid = |message: String| SqlError::Backend {
            database: label.to_owned(),
            message,
        };
        let mut config = tokio_postgres::Config::from_str(&options.url).map_err(|e| {
            invalid(format!(
                "`{shown}` is not a PostgreSQL URL ({e}); write `postgres://USER@HOST:PORT/DATABASE`"
            ))
        })?;
        if let Some(password) = &options.password {
            config.password(password);
        }
        let timeout_ms = options.statement_timeout.as_millis().max(1);
        let session_options = match config.get_options() {
            Some(given) => format!("{given} -c statement_timeout={timeout_ms}"),
            None => format!("-c statement_timeout={timeout_ms}"),
        };
        config
            .options(&session_options)
            .application_name("updraft")
            .connect_timeout(CONNECT_TIMEOUT);
        let tls = match (config.get_ssl_mode(), &options.ca) {
            (SslMode::Require, ca) => Some(MakeRustls::new(
                crate::tls::client_config(ca.as_deref()).map_err(&invalid)?,
            )),
            (_, Some(_)) => {
                return Err(invalid(
                    "`ca` is for a server reached over TLS; add `sslmode=require` to the URL"
                        .into(),
                ));
            }
            (_, None) => None,
        };
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Custom(RESET_SESSION.to_owned()),
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(config, tls.clone(), manager_config),
            None => Manager::from_config(config, NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.pool_wait))
            .create_timeout(Some(CONNECT_TIMEOUT * 2))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            pool,
            label: label.to_owned(),
            limits: options.limits,
            pool_size: options.pool_size.max(1),
            pool_wait: options.pool_wait,
            tls,
            shown,
        })
    }

    /// [`PostgresSql::new`], then one connection opened to show the URL and password work.
    pub async fn connect(label: &str, options: &PostgresOptions) -> Result<Self, SqlError> {
        let db = Self::new(label, options)?;
        db.session().await?.done();
        Ok(db)
    }

    fn backend(&self, message: String) -> SqlError {
        SqlError::Backend {
            database: self.label.clone(),
            message,
        }
    }

    fn statement_error(&self, message: String) -> SqlError {
        SqlError::Statement {
            database: self.label.clone(),
            message,
        }
    }

    fn refusal(&self, message: String) -> SqlError {
        SqlError::Refused {
            database: self.label.clone(),
            message,
        }
    }

    /// A statement's failure: the server's message for what it refused, a backend failure
    /// for a lost connection.
    fn failed(&self, e: &tokio_postgres::Error) -> SqlError {
        match e.code() {
            Some(code) if *code == SqlState::QUERY_CANCELED => self.statement_error(format!(
                "cancelled: {}; it ran past the deadline or `statement_timeout`",
                server_message(e)
            )),
            Some(_) => self.statement_error(server_message(e)),
            None => self.backend(format!(
                "the connection to `{}` failed: {}",
                self.shown,
                server_message(e)
            )),
        }
    }

    /// Whether the connection is still usable after `e` (the server answered it).
    fn answered(e: &tokio_postgres::Error) -> bool {
        e.as_db_error().is_some()
    }

    async fn session(&self) -> Result<Session, SqlError> {
        let client = self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => self.backend(format!(
                "all {} connections to `{}` stayed busy for {:?}; raise `pool_size` under `[sql.{}]` in runtime.toml, or make statements shorter",
                self.pool_size,
                self.shown,
                self.pool_wait,
                self.label
            )),
            PoolError::Timeout(_) => self.backend(format!(
                "cannot connect to `{}` within {} s",
                self.shown,
                (CONNECT_TIMEOUT * 2).as_secs()
            )),
            PoolError::Backend(e) => self.backend(format!(
                "cannot connect to `{}`: {}",
                self.shown,
                server_message(&e)
            )),
            other => self.backend(other.to_string()),
        })?;
        if client.statement_cache.size() > STATEMENT_CACHE {
            client.statement_cache.clear();
        }
        Ok(Session {
            client: Some(client),
            clean: false,
            tls: self.tls.clone(),
        })
    }

    /// Checks what a function may run, then prepares it (cached per connection).
    async fn prepare(&self, session: &Session, sql: &str) -> Result<Statement, SqlError> {
        if let Some(why) = refused(sql) {
            return Err(self.refusal(why));
        }
        session
            .client()
            .prepare_cached(sql)
            .await
            .map_err(|e| self.failed(&e))
    }

    /// `values` converted to what `statement` declares, their count checked.
    fn params(&self, statement: &Statement, values: &[Value]) -> Result<Vec<Param>, SqlError> {
        let types = statement.params();
        if types.len() != values.len() {
            return Err(SqlError::ParameterCount {
                database: self.label.clone(),
                expected: types.len(),
                given: values.len(),
            });
        }
        values
            .iter()
            .zip(types)
            .enumerate()
            .map(|(i, (v, ty))| param(i + 1, v, ty).map_err(|m| self.statement_error(m)))
            .collect()
    }

    /// Refuses a result with a column updraft cannot convert, before it runs.
    fn readable_columns(&self, statement: &Statement) -> Result<Vec<String>, SqlError> {
        statement
            .columns()
            .iter()
            .map(|c| {
                if readable(c.type_()) {
                    Ok(c.name().to_owned())
                } else {
                    Err(self.statement_error(format!(
                        "column `{name}` is of type `{ty}`, which updraft does not convert; cast it to text (`{name}::text`)",
                        name = c.name(),
                        ty = c.type_().name()
                    )))
                }
            })
            .collect()
    }

    /// Runs `statement` and collects its rows within the caps. An error leaves the
    /// connection in an unknown state when the server did not answer it (the caller drops
    /// its session unclean).
    async fn collect(
        &self,
        client: &tokio_postgres::Client,
        statement: &Statement,
        params: &[Param],
    ) -> Result<RowSet, TxError> {
        let columns = self.readable_columns(statement).map_err(|e| (e, true))?;
        let width = columns.len();
        let rows = client
            .query_raw(statement, as_params(params))
            .await
            .map_err(|e| (self.failed(&e), Self::answered(&e)))?;
        futures::pin_mut!(rows);
        let mut out = Vec::new();
        let mut bytes = 0u64;
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|e| (self.failed(&e), Self::answered(&e)))?
        {
            if out.len() as u64 >= self.limits.max_rows {
                return Err((
                    self.too_large(format!("{} rows", self.limits.max_rows)),
                    false,
                ));
            }
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                let Cell(value) = row.try_get(i).map_err(|e| (self.failed(&e), false))?;
                bytes += value_size(&value);
                values.push(value);
            }
            if bytes > self.limits.max_bytes {
                return Err((
                    self.too_large(format!("{} bytes", self.limits.max_bytes)),
                    false,
                ));
            }
            out.push(values);
        }
        Ok(RowSet { columns, rows: out })
    }

    fn too_large(&self, what: String) -> SqlError {
        self.statement_error(format!(
            "the result is over {what}; add a `LIMIT` or read it in pages (`max_rows` and `max_bytes` under `[sql.{}]` raise the caps)",
            self.label
        ))
    }

    /// Starts a transaction on `session`.
    async fn begin<'s>(
        &self,
        session: &'s mut Session,
        read_only: bool,
    ) -> Result<deadpool_postgres::Transaction<'s>, TxError> {
        session
            .client_mut()
            .build_transaction()
            .read_only(read_only)
            .start()
            .await
            .map_err(|e| (self.failed(&e), Self::answered(&e)))
    }

    /// Ends `tx`: commits what succeeded (a read-only one is rolled back), rolls back what
    /// failed; the error says whether the transaction ended cleanly.
    async fn end<T>(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        read_only: bool,
        outcome: Result<T, TxError>,
    ) -> Result<T, TxError> {
        match outcome {
            Ok(value) => {
                let end = if read_only {
                    tx.rollback().await
                } else {
                    tx.commit().await
                };
                end.map(|()| value).map_err(|e| (self.failed(&e), false))
            }
            Err((e, answered)) => {
                // A failed statement leaves the transaction aborted: end it, and keep the
                // connection only if the server answered both.
                let ended = answered && tx.rollback().await.is_ok();
                Err((e, ended))
            }
        }
    }

    /// Runs `statement` once per row, pipelined; `name_row` says which row failed.
    async fn execute_rows(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        statement: &Statement,
        rows: &[Vec<Param>],
        name_row: &(dyn Fn(usize) -> String + Sync),
    ) -> Result<u64, TxError> {
        let mut pending = futures::stream::FuturesOrdered::new();
        let (mut sent, mut answered_rows, mut changed) = (0, 0, 0);
        loop {
            while pending.len() < PIPELINE && sent < rows.len() {
                pending.push_back(tx.execute_raw(statement, as_params(&rows[sent])));
                sent += 1;
            }
            let Some(result) = pending.next().await else {
                return Ok(changed);
            };
            match result {
                Ok(n) => changed += n,
                Err(e) => {
                    let error = match self.failed(&e) {
                        SqlError::Statement { database, message } => SqlError::Statement {
                            database,
                            message: format!("{}: {message}", name_row(answered_rows)),
                        },
                        other => other,
                    };
                    return Err((error, Self::answered(&e)));
                }
            }
            answered_rows += 1;
        }
    }

    /// Prepares `sql` in a transaction, after the same checks as outside one.
    async fn prepare_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        sql: &str,
    ) -> Result<Statement, TxError> {
        if let Some(why) = refused(sql) {
            return Err((self.refusal(why), true));
        }
        tx.prepare_cached(sql)
            .await
            .map_err(|e| (self.failed(&e), Self::answered(&e)))
    }
}

/// What a value costs in a result: its bytes, 8 for a number or null.
fn value_size(v: &Value) -> u64 {
    match v {
        Value::Text(t) => t.len() as u64,
        Value::Blob(b) => b.len() as u64,
        Value::Null | Value::Int(_) | Value::Float(_) => 8,
    }
}

#[async_trait]
impl SqlStore for PostgresSql {
    async fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, SqlError> {
        let session = self.session().await?;
        let statement = self.prepare(&session, sql).await?;
        let params = self.params(&statement, &params)?;
        match session
            .client()
            .execute_raw(&statement, as_params(&params))
            .await
        {
            Ok(n) => {
                session.done();
                Ok(n)
            }
            Err(e) => {
                if Self::answered(&e) {
                    session.done();
                }
                Err(self.failed(&e))
            }
        }
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> Result<RowSet, SqlError> {
        let session = self.session().await?;
        let statement = self.prepare(&session, sql).await?;
        let params = self.params(&statement, &params)?;
        match self.collect(session.client(), &statement, &params).await {
            Ok(rows) => {
                session.done();
                Ok(rows)
            }
            Err((e, clean)) => {
                if clean {
                    session.done();
                }
                Err(e)
            }
        }
    }

    async fn read(&self, sql: &str, params: Vec<Value>) -> Result<RowSet, SqlError> {
        let mut session = self.session().await?;
        let result = {
            let tx = self.begin(&mut session, true).await;
            match tx {
                Ok(tx) => {
                    let outcome = self.read_in(&tx, sql, &params).await;
                    self.end(tx, true, outcome).await
                }
                Err(e) => Err(e),
            }
        };
        let first = leading_words(sql).next().unwrap_or_default().to_owned();
        settle(session, result).map_err(|e| match e {
            SqlError::Statement { message, .. } if message.contains("read-only transaction") => {
                self.refusal(format!(
                    "`{first}` would write; this query may only read: use a `SELECT`"
                ))
            }
            SqlError::Refused { .. } => self.refusal(format!(
                "`{first}` would write; this query may only read: use a `SELECT`"
            )),
            other => other,
        })
    }

    async fn tables(&self) -> Result<Vec<TableInfo>, SqlError> {
        const LIST: &str = "SELECT c.relname::text, \
                CASE WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'table' END, \
                a.attname::text, format_type(a.atttypid, a.atttypmod) \
            FROM pg_class c \
            JOIN pg_namespace n ON n.oid = c.relnamespace \
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
              AND c.relname NOT LIKE '\\_updraft\\_%' \
            ORDER BY c.relname, a.attnum";
        let session = self.session().await?;
        let rows = session
            .client()
            .query(LIST, &[])
            .await
            .map_err(|e| self.failed(&e))?;
        session.done();
        let mut tables: Vec<TableInfo> = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            let kind: String = row.get(1);
            let column: Option<String> = row.get(2);
            let ty: Option<String> = row.get(3);
            if tables.last().is_none_or(|t| t.name != name) {
                tables.push(TableInfo {
                    name,
                    kind,
                    columns: Vec::new(),
                });
            }
            if let (Some(table), Some(column)) = (tables.last_mut(), column) {
                table.columns.push((column, ty.unwrap_or_default()));
            }
        }
        Ok(tables)
    }

    async fn execute_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> Result<u64, SqlError> {
        let mut session = self.session().await?;
        let result = match self.begin(&mut session, false).await {
            Ok(tx) => {
                let outcome = self.many_in(&tx, sql, &rows).await;
                self.end(tx, false, outcome).await
            }
            Err(e) => Err(e),
        };
        settle(session, result)
    }

    async fn batch(&self, statements: Vec<(String, Vec<Value>)>) -> Result<Vec<u64>, SqlError> {
        let mut session = self.session().await?;
        let result = match self.begin(&mut session, false).await {
            Ok(tx) => {
                let outcome = self.batch_in(&tx, &statements).await;
                self.end(tx, false, outcome).await
            }
            Err(e) => Err(e),
        };
        settle(session, result)
    }

    async fn migrate(&self, migrations: Vec<Migration>) -> Result<Vec<String>, SqlError> {
        let mut applied = Vec::new();
        for m in migrations {
            let mut session = self.session().await?;
            let result = match self.begin(&mut session, false).await {
                Ok(tx) => {
                    let outcome = self.migrate_in(&tx, &m).await;
                    self.end(tx, false, outcome).await
                }
                Err(e) => Err(e),
            };
            if settle(session, result)? {
                applied.push(m.name);
            }
        }
        Ok(applied)
    }

    async fn load(&self, sql: &str) -> Result<Box<dyn SqlLoad>, SqlError> {
        let session = self.session().await?;
        let statement = self.prepare(&session, sql).await?;
        session.done();
        let pending = PendingLoad::start(None, statement.params().len())
            .await
            .map_err(|e| self.backend(e))?;
        Ok(Box::new(PostgresLoad {
            db: self.clone_handle(),
            statement: sql.to_owned(),
            pending,
        }))
    }
}

/// The bodies of the calls that run in a transaction.
impl PostgresSql {
    async fn read_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, TxError> {
        let statement = self.prepare_in(tx, sql).await?;
        let params = self.params(&statement, params).map_err(|e| (e, true))?;
        self.collect(tx.client(), &statement, &params).await
    }

    async fn many_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        sql: &str,
        rows: &[Vec<Value>],
    ) -> Result<u64, TxError> {
        let statement = self.prepare_in(tx, sql).await?;
        let params = rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                self.params(&statement, row)
                    .map_err(|e| at_row(e, &format!("row {}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| (e, true))?;
        self.execute_rows(tx, &statement, &params, &|i| format!("row {}", i + 1))
            .await
    }

    async fn batch_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        statements: &[(String, Vec<Value>)],
    ) -> Result<Vec<u64>, TxError> {
        let mut changed = Vec::with_capacity(statements.len());
        for (i, (sql, params)) in statements.iter().enumerate() {
            let at = |e: SqlError| at_row(e, &format!("statement #{i} of the batch"));
            let statement = self
                .prepare_in(tx, sql)
                .await
                .map_err(|(e, clean)| (at(e), clean))?;
            let params = self.params(&statement, params).map_err(|e| (at(e), true))?;
            let n = tx
                .execute_raw(&statement, as_params(&params))
                .await
                .map_err(|e| (at(self.failed(&e)), Self::answered(&e)))?;
            changed.push(n);
        }
        Ok(changed)
    }

    /// Applies `m` unless it was applied before; under a lock, so nodes starting at once
    /// apply it once.
    async fn migrate_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        m: &Migration,
    ) -> Result<bool, TxError> {
        let failed = |e: tokio_postgres::Error| (self.failed(&e), Self::answered(&e));
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(failed)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS _updraft_migrations (\
                name text PRIMARY KEY, \
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(failed)?;
        let seen = tx
            .query_opt(
                "SELECT 1 FROM _updraft_migrations WHERE name = $1",
                &[&m.name],
            )
            .await
            .map_err(failed)?
            .is_some();
        if seen {
            return Ok(false);
        }
        tx.batch_execute(&m.sql).await.map_err(|e| {
            (
                self.statement_error(format!("migration `{}`: {}", m.name, server_message(&e))),
                Self::answered(&e),
            )
        })?;
        tx.execute(
            "INSERT INTO _updraft_migrations (name) VALUES ($1)",
            &[&m.name],
        )
        .await
        .map_err(failed)?;
        Ok(true)
    }

    /// Runs a load's spooled rows, a chunk at a time.
    async fn load_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        sql: &str,
        mut reader: SpoolReader,
        width: usize,
        total: u64,
    ) -> Result<u64, TxError> {
        let statement = self.prepare_in(tx, sql).await?;
        let mut changed = 0;
        let mut done = 0u64;
        while done < total {
            let take = (total - done).min(LOAD_CHUNK as u64);
            let (back, values) = tokio::task::spawn_blocking(move || {
                let rows = (0..take)
                    .map(|_| reader.next_row(width))
                    .collect::<std::io::Result<Vec<_>>>();
                (reader, rows)
            })
            .await
            .map_err(|e| (self.backend(e.to_string()), false))?;
            reader = back;
            let values =
                values.map_err(|e| (self.backend(format!("cannot read the spool: {e}")), false))?;
            let params = values
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    self.params(&statement, row)
                        .map_err(|e| at_row(e, &format!("row {} of the load", done + i as u64 + 1)))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| (e, true))?;
            changed += self
                .execute_rows(tx, &statement, &params, &|i| {
                    format!("row {} of the load", done + i as u64 + 1)
                })
                .await?;
            done += take;
        }
        Ok(changed)
    }
}

/// `e` with `what` (the row or statement that failed) before a statement's message.
fn at_row(e: SqlError, what: &str) -> SqlError {
    match e {
        SqlError::Statement { database, message } => SqlError::Statement {
            database,
            message: format!("{what}: {message}"),
        },
        other => other,
    }
}

impl PostgresSql {
    /// Another handle on the same pool.
    fn clone_handle(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            label: self.label.clone(),
            limits: self.limits,
            pool_size: self.pool_size,
            pool_wait: self.pool_wait,
            tls: self.tls.clone(),
            shown: self.shown.clone(),
        }
    }
}

/// A streamed load on PostgreSQL: rows spooled to a temporary file as they are pushed, run
/// at the commit in one transaction, pipelined.
struct PostgresLoad {
    db: PostgresSql,
    statement: String,
    pending: PendingLoad,
}

#[async_trait]
impl SqlLoad for PostgresLoad {
    async fn push(&mut self, rows: Vec<Vec<Value>>) -> Result<(), SqlError> {
        self.pending.push(rows).await.map_err(|e| match e {
            PushError::Width(m) => self.db.statement_error(m),
            PushError::Spool(m) => self.db.backend(m),
        })
    }

    fn rows(&self) -> u64 {
        self.pending.rows()
    }

    async fn commit(self: Box<Self>) -> Result<u64, SqlError> {
        let Self {
            db,
            statement,
            pending,
        } = *self;
        let (width, total) = (pending.width(), pending.rows());
        let reader = pending.into_reader().await.map_err(|e| db.backend(e))?;
        let mut session = db.session().await?;
        let result = match db.begin(&mut session, false).await {
            Ok(tx) => {
                let outcome = db.load_in(&tx, &statement, reader, width, total).await;
                db.end(tx, false, outcome).await
            }
            Err(e) => Err(e),
        };
        settle(session, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            masked("postgres://app:s3cret@db.local:5432/orders?sslmode=disable"),
            "postgres://app:***@db.local:5432/orders?sslmode=disable"
        );
        assert_eq!(
            masked("postgres://app@db.local/orders"),
            "postgres://app@db.local/orders"
        );
        assert_eq!(
            masked("host=db user=app password=s3cret dbname=orders"),
            "host=db user=app password=*** dbname=orders"
        );
    }

    #[test]
    fn transaction_control_and_session_changes_are_refused() {
        for sql in [
            "BEGIN",
            "  commit",
            "-- a comment\nROLLBACK",
            "/* x */ savepoint s",
            "RELEASE s",
            "START TRANSACTION",
            "END",
            "SET search_path = other",
            "RESET ALL",
            "COPY t FROM STDIN",
            "PREPARE TRANSACTION 'x'",
        ] {
            assert!(refused(sql).is_some(), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SET LOCAL statement_timeout = 100",
            "INSERT INTO begin_log VALUES (1)",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "",
        ] {
            assert!(refused(sql).is_none(), "{sql}");
        }
    }
}
