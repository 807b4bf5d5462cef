//! Key-value stores: `[kv.<label>]`, reachable when the function lists the label in `kv`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::updraft::platform::kv as platform;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::{Error, Result};

fn err(e: store::Error) -> Error {
    Error(match e {
        store::Error::NoSuchStore => "no such kv store; declare it with `[kv.<label>]`".to_owned(),
        store::Error::AccessDenied => {
            "access denied; list the store in the function's `kv = [...]`".to_owned()
        }
        store::Error::Other(m) => m,
    })
}

/// An open kv store.
pub struct Store {
    bucket: store::Bucket,
}

impl Store {
    /// Opens the store declared as `[kv.<label>]`.
    pub fn open(label: &str) -> Result<Self> {
        store::open(label)
            .map(|bucket| Self { bucket })
            .map_err(|e| Error(format!("kv store `{label}`: {}", err(e))))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.bucket.get(key).map_err(err)
    }

    /// The value of `key` as UTF-8 text.
    pub fn get_string(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The value of `key` decoded from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key)? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| Error(format!("kv key `{key}` is not the JSON expected: {e}"))),
            None => Ok(None),
        }
    }

    /// Sets `key`.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<()> {
        self.bucket.set(key, value.as_ref()).map_err(err)
    }

    /// Sets `key` to `value` encoded as JSON.
    pub fn set_json<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error(e.to_string()))?;
        self.set(key, bytes)
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) -> Result<()> {
        self.bucket.delete(key).map_err(err)
    }

    /// Whether `key` has a value.
    pub fn exists(&self, key: &str) -> Result<bool> {
        self.bucket.exists(key).map_err(err)
    }

    /// Adds `delta` to the counter at `key` atomically and returns the new value.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        atomics::increment(&self.bucket, key, delta).map_err(err)
    }

    /// Every key starting with `prefix`, in byte order.
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = platform::list_by_prefix(&self.bucket, prefix, cursor.as_deref(), 1000)
                .map_err(err)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(keys),
            }
        }
    }

    /// Sets `key` to `new` only if its value is `expected` (`None`: only if absent).
    pub fn compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<bool> {
        platform::compare_and_swap(&self.bucket, key, expected, new).map_err(err)
    }

    /// Values of several keys, in order.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        Ok(batch::get_many(&self.bucket, keys)
            .map_err(err)?
            .into_iter()
            .map(|kv| kv.map(|(_, v)| v))
            .collect())
    }
}
