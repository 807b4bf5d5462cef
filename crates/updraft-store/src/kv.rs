//! Key-value state.

use async_trait::async_trait;

use crate::StoreError;

/// Longest key, in bytes (DESIGN §9).
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// One page of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in ascending byte order.
    pub keys: Vec<String>,
    /// Pass back to get the next page; `None` when this was the last.
    pub cursor: Option<String>,
}

/// A namespace of keys to byte values. Keys are any non-empty UTF-8 up to
/// [`MAX_KEY_BYTES`]; backends with a narrower alphabet escape keys in an order-preserving
/// way. Every write is durable when it returns.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The value of `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets `key` to `value`.
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Whether `key` has a value.
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.get(key).await?.is_some())
    }
    /// Up to `limit` keys starting with `prefix`, in ascending order, after `cursor`.
    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<KeyPage, StoreError>;
    /// Adds `delta` to the integer stored at `key` (a missing key counts as 0) and returns the
    /// new value. The value is stored as its decimal text.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// Sets `key` to `new` only if its current value is `expected` (`None`: only if absent).
    /// Returns whether it swapped.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError>;
    /// Values of several keys, in order.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }
    /// Sets several keys. Every key and value is checked before any is written. Atomic
    /// where the backend has multi-key transactions (SQLite: all or none); elsewhere (NATS)
    /// keys are written in order and a failure part-way leaves the earlier ones written,
    /// with an error saying how many. `wasi:keyvalue/batch` promises no atomicity either.
    async fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError>;
    /// Removes several keys; atomic as [`KvStore::set_many`] is.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError>;
}

/// Checks a key against the limits every backend shares.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::Invalid("a kv key may not be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::Invalid(format!(
            "kv key of {} bytes is over the limit of {MAX_KEY_BYTES} bytes; use a shorter key",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a value against the limits every backend shares.
pub fn check_value(value: &[u8]) -> Result<(), StoreError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::Invalid(format!(
            "kv value of {} bytes is over the limit of {MAX_VALUE_BYTES} bytes; store large data in a bucket or split it",
            value.len()
        )));
    }
    Ok(())
}

/// Parses a stored counter.
pub fn parse_counter(key: &str, value: &[u8]) -> Result<i64, StoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "kv key `{key}` holds a value that is not an integer, so it cannot be incremented"
            ))
        })
}
