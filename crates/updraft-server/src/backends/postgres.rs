//! `[sql.<label>] type = "postgres"`: the database on a PostgreSQL server.
//!
//! ```toml
//! [sql.orders]
//! type = "postgres"
//! url = "postgres://app@db.internal:5432/orders"   # password here, or in
//! pool_size = 16                                   # UPDRAFT_SQL_ORDERS_PASSWORD
//! statement_timeout = "5m"
//! ca = "certs/db-ca.pem"      # with ?sslmode=require: TLS, the server's CA trusted
//! ```

use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use updraft_manifest::{HumanDuration, LoadedManifest, SqlDecl};
use updraft_store::postgres::{POOL_WAIT, PostgresOptions, PostgresSql};
use updraft_store::{SqlLimits, SqlStore};

use super::LabelBackend;

/// `[sql.<label>] type = "postgres"`.
pub struct PostgresDatabase;

/// Its keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTable {
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DATABASE`.
    url: String,
    /// Connections at most (default 16).
    #[serde(default)]
    pool_size: Option<usize>,
    /// The server cancels a statement running longer (default 5 minutes, the longest
    /// default function timeout); a function that times out cancels its statement at once.
    #[serde(default)]
    statement_timeout: Option<String>,
    /// With `sslmode=require` in the URL: a PEM file (relative to the manifest) of the CA
    /// that signed the server's certificate, trusted beside the system's roots.
    #[serde(default)]
    ca: Option<std::path::PathBuf>,
}

/// Connections per database unless `pool_size` says otherwise.
const DEFAULT_POOL: usize = 16;
/// The default `statement_timeout`.
const DEFAULT_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// `UPDRAFT_SQL_<LABEL>_PASSWORD`: the label upper-cased, other characters as `_`.
pub fn password_variable(label: &str) -> String {
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("UPDRAFT_SQL_{label}_PASSWORD")
}

impl LabelBackend for PostgresDatabase {
    const TYPE: &'static str = "postgres";
    type Decl = SqlDecl;
    type Store = dyn SqlStore;
    type Config = PostgresTable;

    async fn open(
        label: &str,
        decl: &SqlDecl,
        config: PostgresTable,
        app: &LoadedManifest,
    ) -> anyhow::Result<Arc<dyn SqlStore>> {
        let statement_timeout = match &config.statement_timeout {
            Some(t) => {
                t.parse::<HumanDuration>()
                    .map_err(|e| anyhow::anyhow!("`[sql.{label}] statement_timeout`: {e}"))?
                    .0
            }
            None => DEFAULT_STATEMENT_TIMEOUT,
        };
        if config.pool_size == Some(0) {
            anyhow::bail!("`[sql.{label}] pool_size` is 0; give at least 1 connection");
        }
        let defaults = SqlLimits::default();
        let options = PostgresOptions {
            url: config.url,
            password: std::env::var(password_variable(label)).ok(),
            pool_size: config.pool_size.unwrap_or(DEFAULT_POOL),
            statement_timeout,
            limits: SqlLimits {
                max_rows: decl.max_rows.unwrap_or(defaults.max_rows),
                max_bytes: decl.max_bytes.map_or(defaults.max_bytes, |b| b.0),
            },
            pool_wait: POOL_WAIT,
            ca: config.ca.as_deref().map(|ca| app.resolve(ca)),
        };
        let db = PostgresSql::connect(label, &options)
            .await
            .with_context(|| {
                format!(
                    "cannot open `[sql.{label}]` on PostgreSQL; check `url` in runtime.toml and the password (in the URL or in `{}`)",
                    password_variable(label)
                )
            })?;
        Ok(Arc::new(db))
    }
}
