//! Who wrote what: the loop guard of file triggers (DESIGN §9: a file trigger never fires
//! for an object its own function wrote).
//!
//! Each function reaches a bucket through [`Attributed`], which records in the node's
//! [`Writers`] the function and the etag of every object it puts or deletes. A file
//! trigger asks [`Writers::take_own`] before it fires: a change whose etag is the one its
//! own function wrote is recorded without firing. The record is in memory, per node: a
//! write whose change is noticed only after a restart, or on another node, still fires.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::blob::{BlobError, BlobStore, ByteStream, ObjectMeta, ObjectPage, PutOptions};

/// Most writes remembered at once; past it the oldest half is forgotten (their changes
/// would then fire, which is the safe side).
const MAX_WRITES: usize = 100_000;

/// What stands for a deletion in place of an etag.
pub const DELETED: &str = "\u{0}deleted";

/// (bucket, object).
type ObjectKey = (String, String);
/// (etag or [`DELETED`], function, order of the write).
type Write = (String, String, u64);

/// The writes functions made through their buckets, not yet seen by a file trigger.
#[derive(Debug, Default)]
pub struct Writers {
    by_object: Mutex<HashMap<ObjectKey, Write>>,
    next: std::sync::atomic::AtomicU64,
}

impl Writers {
    /// Notes that `function` left object `name` of `bucket` with `etag` (or [`DELETED`]).
    pub fn record(&self, bucket: &str, name: &str, etag: &str, function: &str) {
        let order = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Ok(mut map) = self.by_object.lock() else {
            return;
        };
        if map.len() >= MAX_WRITES {
            let cut = order.saturating_sub((MAX_WRITES / 2) as u64);
            map.retain(|_, (_, _, o)| *o >= cut);
        }
        map.insert(
            (bucket.to_owned(), name.to_owned()),
            (etag.to_owned(), function.to_owned(), order),
        );
    }

    /// Whether `function` itself left object `name` of `bucket` as it is now (`etag`, or
    /// [`DELETED`]); the record is dropped either way once the change is seen.
    pub fn take_own(&self, bucket: &str, name: &str, etag: &str, function: &str) -> bool {
        let Ok(mut map) = self.by_object.lock() else {
            return false;
        };
        let key = (bucket.to_owned(), name.to_owned());
        match map.get(&key) {
            Some((e, f, _)) if e == etag => {
                let own = f == function;
                map.remove(&key);
                own
            }
            _ => false,
        }
    }
}

/// A bucket as one function reaches it: every put and delete is recorded in [`Writers`].
pub struct Attributed {
    inner: Arc<dyn BlobStore>,
    bucket: String,
    function: String,
    writers: Arc<Writers>,
}

impl Attributed {
    /// `inner` (the bucket `bucket`) as `function` reaches it.
    pub fn new(
        inner: Arc<dyn BlobStore>,
        bucket: &str,
        function: &str,
        writers: Arc<Writers>,
    ) -> Self {
        Self {
            inner,
            bucket: bucket.to_owned(),
            function: function.to_owned(),
            writers,
        }
    }
}

#[async_trait]
impl BlobStore for Attributed {
    async fn head(&self, name: &str) -> Result<Option<ObjectMeta>, BlobError> {
        self.inner.head(name).await
    }

    async fn get(
        &self,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<(ObjectMeta, ByteStream)>, BlobError> {
        self.inner.get(name, range).await
    }

    async fn put(
        &self,
        name: &str,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta, BlobError> {
        let meta = self.inner.put(name, body, opts).await?;
        self.writers
            .record(&self.bucket, name, &meta.etag, &self.function);
        Ok(meta)
    }

    async fn delete(&self, name: &str) -> Result<bool, BlobError> {
        let existed = self.inner.delete(name).await?;
        if existed {
            self.writers
                .record(&self.bucket, name, DELETED, &self.function);
        }
        Ok(existed)
    }

    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ObjectPage, BlobError> {
        self.inner.list(prefix, cursor, limit).await
    }

    fn max_object_bytes(&self) -> u64 {
        self.inner.max_object_bytes()
    }

    fn local_root(&self) -> Option<&std::path::Path> {
        self.inner.local_root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_writer_of_the_current_etag_is_its_own() {
        let w = Writers::default();
        w.record("b", "x", "e1", "f");
        assert!(
            !w.take_own("b", "x", "e1", "g"),
            "another function's write fires"
        );
        w.record("b", "x", "e1", "f");
        assert!(
            !w.take_own("b", "x", "e2", "f"),
            "a later write by someone else fires"
        );
        w.record("b", "x", "e3", "f");
        assert!(w.take_own("b", "x", "e3", "f"));
        assert!(!w.take_own("b", "x", "e3", "f"), "seen once");
        w.record("b", "y", DELETED, "f");
        assert!(w.take_own("b", "y", DELETED, "f"));
    }
}
