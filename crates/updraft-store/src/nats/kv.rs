//! `KvStore` on a JetStream KV bucket per label.
//!
//! * Keys are escaped by [`escape_key`] (order-preserving, one subject token each) and
//!   unescaped when listed; keys the bucket holds that this escaping did not produce are
//!   skipped.
//! * `list` reads every key of the bucket (the KV keys listing) and filters, sorts and pages
//!   on the client: fine for the thousands of keys platform state holds, linear in the
//!   bucket's size.
//! * `compare_and_swap` is a KV `update` on the revision read (an absent or deleted key is
//!   revision 0 or its delete marker's); `increment` is the same compare-and-swap retried,
//!   at most [`MAX_CAS_ATTEMPTS`] times.
//! * `set_many`/`delete_many` check every key and value before writing anything, so invalid
//!   input changes nothing. JetStream (before 2.12's atomic batches) has no multi-key
//!   transaction: if the server fails part way, the entries written before the failure stay
//!   written and the call returns the error; repeating the call completes it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{Operation, Store, UpdateErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::names::{escape_key, token, unescape_key};
use super::{Inner, backend};
use crate::StoreError;
use crate::kv::{KeyPage, KvStore, check_key, check_value, parse_counter};

/// How often `increment` re-reads and retries a contended key before giving up.
pub(crate) const MAX_CAS_ATTEMPTS: u32 = 200;
/// How long listing a bucket's keys may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// One kv namespace in a JetStream KV bucket.
#[derive(Clone)]
pub struct NatsKv {
    store: Store,
    label: String,
    _inner: Arc<Inner>,
}

impl NatsKv {
    pub(crate) async fn open(inner: Arc<Inner>, label: &str) -> Result<Self, StoreError> {
        super::names::nonempty_token("kv", label)?;
        let bucket = inner.name(&format!("kv-{}", token(label)));
        let store = inner.bucket(bucket, Duration::ZERO).await?;
        Ok(Self {
            store,
            label: label.to_owned(),
            _inner: inner,
        })
    }

    /// The current entry of `key` as (value if present, revision to update from).
    async fn current(&self, key: &str) -> Result<(Option<Bytes>, u64), StoreError> {
        let entry = self
            .store
            .entry(escape_key(key))
            .await
            .map_err(|e| self.failed("read", key, e))?;
        Ok(match entry {
            Some(e) if e.operation == Operation::Put => (Some(e.value), e.revision),
            Some(e) => (None, e.revision),
            None => (None, 0),
        })
    }

    /// Writes `value` only if `key` is still at `revision`; false when it moved.
    async fn update(&self, key: &str, value: &[u8], revision: u64) -> Result<bool, StoreError> {
        match self
            .store
            .update(escape_key(key), Bytes::copy_from_slice(value), revision)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(self.failed("write", key, e)),
        }
    }

    fn failed(&self, verb: &str, key: &str, e: impl std::fmt::Display) -> StoreError {
        backend(
            format_args!("cannot {verb} kv key `{key}` in `{}`", self.label),
            e,
        )
    }
}

#[async_trait]
impl KvStore for NatsKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let value = self
            .store
            .get(escape_key(key))
            .await
            .map_err(|e| self.failed("read", key, e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        check_value(value)?;
        self.store
            .put(escape_key(key), Bytes::copy_from_slice(value))
            .await
            .map(drop)
            .map_err(|e| self.failed("write", key, e))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.store
            .delete(escape_key(key))
            .await
            .map_err(|e| self.failed("delete", key, e))
    }

    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<KeyPage, StoreError> {
        let limit = limit.clamp(1, 10_000) as usize;
        let listing = async {
            let mut keys = Vec::new();
            let mut names = self.store.keys().await.map_err(|e| e.to_string())?;
            while let Some(name) = names.next().await {
                let name = name.map_err(|e| e.to_string())?;
                match unescape_key(&name) {
                    Some(key)
                        if key.starts_with(prefix) && cursor.is_none_or(|c| key.as_str() > c) =>
                    {
                        keys.push(key);
                    }
                    Some(_) => {}
                    None => {
                        tracing::warn!(bucket = %self.store.name, key = %name, "skipping a kv key updraft did not write");
                    }
                }
            }
            Ok::<_, String>(keys)
        };
        let mut keys = tokio::time::timeout(LIST_TIMEOUT, listing)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "listing kv `{}` took over {LIST_TIMEOUT:?}",
                    self.label
                ))
            })?
            .map_err(|e| backend(format_args!("cannot list kv `{}`", self.label), e))?;
        keys.sort_unstable();
        let more = keys.len() > limit;
        keys.truncate(limit);
        let cursor = if more { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, cursor })
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        check_key(key)?;
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let (value, revision) = self.current(key).await?;
            let current = match &value {
                Some(v) => parse_counter(key, v)?,
                None => 0,
            };
            let next = current.checked_add(delta).ok_or_else(|| {
                StoreError::Invalid(format!("incrementing kv key `{key}` by {delta} overflows"))
            })?;
            if self
                .update(key, next.to_string().as_bytes(), revision)
                .await?
            {
                return Ok(next);
            }
            if attempt >= 8 {
                // Heavily contended: spread the retries out a little.
                tokio::time::sleep(Duration::from_millis(u64::from(attempt % 8) + 1)).await;
            }
        }
        Err(StoreError::Conflict(format!(
            "kv key `{key}` in `{}` changed {MAX_CAS_ATTEMPTS} times while incrementing it; try again",
            self.label
        )))
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        check_key(key)?;
        check_value(new)?;
        let (value, revision) = self.current(key).await?;
        if value.as_deref() != expected {
            return Ok(false);
        }
        self.update(key, new, revision).await
    }

    async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        for (k, v) in entries {
            check_key(k)?;
            check_value(v)?;
        }
        for (done, (k, v)) in entries.iter().enumerate() {
            self.set(k, v)
                .await
                .map_err(|e| partly(e, done, entries.len()))?;
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for k in keys {
            check_key(k)?;
        }
        for (done, k) in keys.iter().enumerate() {
            self.delete(k)
                .await
                .map_err(|e| partly(e, done, keys.len()))?;
        }
        Ok(())
    }
}
/// A batch that failed part-way: JetStream KV has no multi-key transaction.
fn partly(e: StoreError, done: usize, of: usize) -> StoreError {
    StoreError::Backend(format!(
        "{done} of {of} keys were written before this failed (a batch on nats is not atomic): {e}"
    ))
}
