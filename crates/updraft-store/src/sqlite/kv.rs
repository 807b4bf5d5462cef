//! `KvStore` on the platform state file: one table, a namespace per `[kv.<label>]`.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::Db;
use crate::StoreError;
use crate::kv::{KeyPage, KvStore, check_key, check_value, parse_counter};

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Creates the kv table; run by the platform state file's setup.
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;";

/// One kv namespace in a SQLite file.
#[derive(Clone)]
pub struct SqliteKv {
    db: Db,
    namespace: String,
}

impl SqliteKv {
    /// The namespace `namespace` in `db` (a file opened with [`super::state::open`]).
    pub fn new(db: Db, namespace: &str) -> Self {
        Self {
            db,
            namespace: namespace.to_owned(),
        }
    }
}

fn get_in(conn: &Connection, ns: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    conn.prepare_cached("SELECT value FROM kv WHERE namespace = ?1 AND key = ?2")
        .and_then(|mut s| s.query_row(params![ns, key], |r| r.get(0)).optional())
        .map_err(backend)
}

fn set_in(conn: &Connection, ns: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO kv (namespace, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute(params![ns, key, value]))
    .map(drop)
    .map_err(backend)
}

fn delete_in(conn: &Connection, ns: &str, key: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND key = ?2")
        .and_then(|mut s| s.execute(params![ns, key]))
        .map(drop)
        .map_err(backend)
}

#[async_trait]
impl KvStore for SqliteKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let (ns, key) = (self.namespace.clone(), key.to_owned());
        self.db.read(move |c| get_in(c, &ns, &key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        check_value(value)?;
        let (ns, key, value) = (self.namespace.clone(), key.to_owned(), value.to_vec());
        self.db.write(move |c| set_in(c, &ns, &key, &value)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let (ns, key) = (self.namespace.clone(), key.to_owned());
        self.db.write(move |c| delete_in(c, &ns, &key)).await
    }

    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<KeyPage, StoreError> {
        let ns = self.namespace.clone();
        let prefix = prefix.to_owned();
        let cursor = cursor.map(str::to_owned);
        let limit = limit.clamp(1, 10_000) as usize;
        self.db
            .read(move |c| {
                // Keys with the prefix are contiguous from `prefix` on in byte order.
                let mut stmt = c
                    .prepare_cached(
                        "SELECT key FROM kv WHERE namespace = ?1 AND key >= ?2
                         AND (?3 IS NULL OR key > ?3) ORDER BY key LIMIT ?4",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![ns, prefix, cursor, (limit + 1) as i64], |r| {
                        r.get::<_, String>(0)
                    })
                    .map_err(backend)?;
                let mut keys = Vec::new();
                for key in rows {
                    let key = key.map_err(backend)?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    keys.push(key);
                }
                let more = keys.len() > limit;
                keys.truncate(limit);
                let cursor = if more { keys.last().cloned() } else { None };
                Ok(KeyPage { keys, cursor })
            })
            .await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        check_key(key)?;
        let (ns, key) = (self.namespace.clone(), key.to_owned());
        self.db
            .write(move |c| {
                let current = match get_in(c, &ns, &key)? {
                    Some(v) => parse_counter(&key, &v)?,
                    None => 0,
                };
                let next = current.checked_add(delta).ok_or_else(|| {
                    StoreError::Invalid(format!("incrementing kv key `{key}` by {delta} overflows"))
                })?;
                set_in(c, &ns, &key, next.to_string().as_bytes())?;
                Ok(next)
            })
            .await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        check_key(key)?;
        check_value(new)?;
        let (ns, key) = (self.namespace.clone(), key.to_owned());
        let (expected, new) = (expected.map(<[u8]>::to_vec), new.to_vec());
        self.db
            .write(move |c| {
                if get_in(c, &ns, &key)? != expected {
                    return Ok(false);
                }
                set_in(c, &ns, &key, &new)?;
                Ok(true)
            })
            .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        for k in keys {
            check_key(k)?;
        }
        let (ns, keys) = (self.namespace.clone(), keys.to_vec());
        self.db
            .read(move |c| keys.iter().map(|k| get_in(c, &ns, k)).collect())
            .await
    }

    async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        for (k, v) in entries {
            check_key(k)?;
            check_value(v)?;
        }
        let (ns, entries) = (self.namespace.clone(), entries.to_vec());
        self.db
            .write(move |c| entries.iter().try_for_each(|(k, v)| set_in(c, &ns, k, v)))
            .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for k in keys {
            check_key(k)?;
        }
        let (ns, keys) = (self.namespace.clone(), keys.to_vec());
        self.db
            .write(move |c| keys.iter().try_for_each(|k| delete_in(c, &ns, k)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_kv_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::sqlite::state::open(&dir.path().join("state.db")).unwrap();
        let mut n = 0;
        crate::conformance::kv::run(move || {
            n += 1;
            Arc::new(SqliteKv::new(db.clone(), &format!("ns{n}"))) as Arc<dyn KvStore>
        })
        .await;
    }
}
