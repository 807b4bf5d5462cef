//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) and `updraft:platform/kv`.

use std::sync::Arc;

use updraft_store::{KvStore, StoreError};
use wasmtime::component::Resource;

use super::generated::updraft::platform::kv as platform_kv;
use super::generated::wasi::keyvalue::{atomics, batch, store};
use updraft_manifest::allow::KV;
use wasmtime::component::Linker;

use super::generated::wasi::keyvalue as wasi_kv;
use super::{Binding, BindingCtx};
use crate::state::InvocationState;

/// Keys per `list-keys` page.
const LIST_PAGE: u32 = 1000;
/// Keys `get-many` reads from the store at a time.
const GET_MANY_CHUNK: usize = 16;

/// An open kv store, as a guest holds it.
pub struct Bucket {
    label: String,
    store: Arc<dyn KvStore>,
    /// `wasi:keyvalue` cursors are numbers; they index the key cursors handed out so far.
    cursors: Vec<String>,
}

fn error(e: StoreError) -> store::Error {
    store::Error::Other(e.to_string())
}

/// Links `wasi:keyvalue` (store, atomics, batch) and `updraft:platform/kv`.
pub(crate) fn link(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    wasi_kv::store::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)?;
    wasi_kv::atomics::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)?;
    wasi_kv::batch::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)?;
    platform_kv::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)?;
    Ok(())
}

impl BindingCtx<'_> {
    fn bucket(&self, b: &Resource<Bucket>) -> wasmtime::Result<&Bucket> {
        Ok(self.table.get(b)?)
    }
}

impl store::Host for BindingCtx<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        let store = match self
            .resources
            .open::<dyn KvStore>(&KV, self.caller, &identifier)
        {
            Ok(s) => s,
            Err(denial) => {
                return Ok(Err(if denial.undeclared {
                    store::Error::NoSuchStore
                } else {
                    store::Error::AccessDenied
                }));
            }
        };
        let bucket = Bucket {
            label: identifier,
            store,
            cursors: Vec::new(),
        };
        Ok(Ok(self.table.push(bucket)?))
    }
}

impl store::HostBucket for BindingCtx<'_> {
    async fn get(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let store = self.bucket(&b)?.store.clone();
        Ok(store.get(&key).await.map_err(error))
    }

    async fn set(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.bucket(&b)?.store.clone();
        Ok(store.set(&key, &value).await.map_err(error))
    }

    async fn delete(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.bucket(&b)?.store.clone();
        Ok(store.delete(&key).await.map_err(error))
    }

    async fn exists(
        &mut self,
        b: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let store = self.bucket(&b)?.store.clone();
        Ok(store.exists(&key).await.map_err(error))
    }

    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let bucket = self.bucket(&b)?;
        let after = match cursor {
            None => None,
            Some(n) => match usize::try_from(n).ok().and_then(|i| bucket.cursors.get(i)) {
                Some(c) => Some(c.clone()),
                None => return Ok(Err(store::Error::Other(format!("unknown list cursor {n}")))),
            },
        };
        let store = bucket.store.clone();
        let page = match store.list("", after.as_deref(), LIST_PAGE).await {
            Ok(p) => p,
            Err(e) => return Ok(Err(error(e))),
        };
        let bucket = self.table.get_mut(&b)?;
        let cursor = page.cursor.map(|c| {
            bucket.cursors.push(c);
            (bucket.cursors.len() - 1) as u64
        });
        Ok(Ok(store::KeyResponse {
            keys: page.keys,
            cursor,
        }))
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::Host for BindingCtx<'_> {
    async fn increment(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store::Error>> {
        let bucket = self.bucket(&b)?;
        let (store, label) = (bucket.store.clone(), bucket.label.clone());
        let Ok(delta) = i64::try_from(delta) else {
            return Ok(Err(store::Error::Other(format!(
                "increment of {delta} is too large"
            ))));
        };
        Ok(match store.increment(&key, delta).await {
            Ok(n) => u64::try_from(n).map_err(|_| {
                store::Error::Other(format!(
                    "kv `{label}` key `{key}` holds a negative counter ({n})"
                ))
            }),
            Err(e) => Err(error(e)),
        })
    }
}

impl batch::Host for BindingCtx<'_> {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let store = self.bucket(&b)?.store.clone();
        // The answer must fit in the guest's memory. Reading it all first would let a few
        // bytes of repeated keys make the host hold one copy of a large value per key.
        let budget = self.memory_cap;
        let mut out = Vec::new();
        let mut total = 0usize;
        for chunk in keys.chunks(GET_MANY_CHUNK) {
            let values = match store.get_many(chunk).await {
                Ok(values) => values,
                Err(e) => return Ok(Err(error(e))),
            };
            for (key, value) in chunk.iter().zip(values) {
                total = total
                    .saturating_add(key.len())
                    .saturating_add(value.as_ref().map_or(0, Vec::len));
                if total > budget {
                    return Ok(Err(store::Error::Other(format!(
                        "get-many of {} keys reads more than the function's memory limit of {} MiB; read fewer keys at a time",
                        keys.len(),
                        budget >> 20
                    ))));
                }
                out.push(value.map(|v| (key.clone(), v)));
            }
        }
        Ok(Ok(out))
    }

    async fn set_many(
        &mut self,
        b: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.bucket(&b)?.store.clone();
        Ok(store.set_many(&key_values).await.map_err(error))
    }

    async fn delete_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.bucket(&b)?.store.clone();
        Ok(store.delete_many(&keys).await.map_err(error))
    }
}

impl platform_kv::Host for BindingCtx<'_> {
    async fn list_by_prefix(
        &mut self,
        b: Resource<Bucket>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<platform_kv::KeyPage, store::Error>> {
        let store = self.bucket(&b)?.store.clone();
        Ok(store
            .list(&prefix, cursor.as_deref(), limit)
            .await
            .map(|p| platform_kv::KeyPage {
                keys: p.keys,
                cursor: p.cursor,
            })
            .map_err(error))
    }

    async fn compare_and_swap(
        &mut self,
        b: Resource<Bucket>,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let store = self.bucket(&b)?.store.clone();
        Ok(store
            .compare_and_swap(&key, expected.as_deref(), &new)
            .await
            .map_err(error))
    }
}
