//! `wasi:blobstore@0.2.0-draft` (types, container, blobstore) and `updraft:platform/blob`
//! over [`BlobStore`]: a container is one of the app's buckets (`[bucket.<name>]`).
//!
//! * **Containers** are the app's declared buckets: `get-container` (and `open-container`)
//!   opens one through the `buckets = [...]` allow-list, `container-exists` says whether the
//!   function may open it, and `create-container`, `delete-container` and `clear` are
//!   refused (buckets are declared in updraft.toml). `copy-object` and `move-object` work
//!   between any buckets the function may open, streaming the bytes through.
//! * **Reads** stream: `incoming-value-consume-async` hands the guest a `wasi:io`
//!   input-stream over the store's body, a chunk at a time. `incoming-value-consume-sync`
//!   refuses an object larger than the instance's memory cap, pointing at the stream.
//! * **Writes** hold at most [`PIPE_CHUNKS`] × [`CHUNK`] bytes (1 MiB) in host memory,
//!   whatever the call order the draft allows. An outgoing value starts a task that owns
//!   the write; its body output-stream feeds it through a bounded pipe. Bytes written before
//!   the value is given a name (`write-data`, `write-data-with`) are spooled to an unnamed
//!   temporary file in the OS temp folder (removed when closed); once named, the put starts
//!   and reads the spool, then the rest of the pipe, so bytes written after naming go
//!   straight into the bucket. The object is stored when the body is complete: at
//!   `write-data` if the body stream was asked for and already dropped (the draft's order:
//!   write the body, drop the stream, `write-data`, `finish`), else at `finish` (which needs
//!   the stream dropped first). A value dropped unfinished, or an instance torn down
//!   mid-write, stores nothing: the put's body fails and the store leaves the old object.
//! * **Names** are checked by the store ([`updraft_store::blob::check_name`]) on every call,
//!   and by this binding before a write is started; every store error reaches the guest as a
//!   message naming the bucket and the object.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use updraft_manifest::allow::BUCKETS;
use updraft_store::blob::{
    BlobError, BlobStore, ByteStream, DEFAULT_MAX_OBJECT_BYTES, ObjectMeta, PutCondition,
    PutOptions, check_name,
};
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};

use super::generated::updraft::platform::blob as platform;
use super::generated::wasi::blobstore::{blobstore, container, types};
use super::{Binding, BindingCtx, shown};
use crate::state::InvocationState;

/// Bytes the body stream takes per write (its `check-write` permit), and per chunk read back
/// from a spool.
const CHUNK: usize = 64 * 1024;
/// Chunks the pipe from a body stream to its write holds.
const PIPE_CHUNKS: usize = 16;
/// Object names a `stream-object-names` read returns at most, whatever the guest asks.
const MAX_NAMES_PER_READ: u64 = 10_000;
/// Objects per listing page fetched for `stream-object-names`.
const LIST_PAGE: u32 = 1000;

/// Links `wasi:blobstore` (types, container, blobstore) and `updraft:platform/blob`.
pub(crate) fn link(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    types::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)?;
    container::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)?;
    blobstore::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)?;
    platform::add_to_linker::<_, Binding>(linker, InvocationState::binding_ctx)?;
    Ok(())
}

/// An open bucket, as a guest holds it.
pub struct Container {
    name: String,
    store: Arc<dyn BlobStore>,
}

/// A `list-objects` in progress: the names of one bucket, a page at a time.
pub struct ObjectNames {
    bucket: String,
    store: Arc<dyn BlobStore>,
    /// Names fetched and not yet handed out.
    buffer: VecDeque<String>,
    /// Where the next page starts.
    cursor: Option<String>,
    /// The last page was fetched.
    done: bool,
}

/// An object being read: its body, not yet consumed.
pub struct IncomingValue {
    bucket: String,
    name: String,
    /// Bytes the body holds (the range asked for, cut at the object's end).
    size: u64,
    body: ByteStream,
}

/// An object being written (see the module doc for the order of calls).
pub struct OutgoingValue {
    /// The pipe into the write, until `outgoing-value-write-body` hands it to the stream (or
    /// the value is finished without one: an empty body).
    body: Option<mpsc::Sender<Bytes>>,
    /// The stream's end of the pipe, to tell whether the guest still holds the stream.
    stream: Option<mpsc::WeakSender<Bytes>>,
    /// Says the body is complete.
    commit: Option<oneshot::Sender<()>>,
    outcome: Outcome,
}

/// Where a write goes.
struct Target {
    bucket: String,
    name: String,
    store: Arc<dyn BlobStore>,
    options: PutOptions,
}

/// What became of a write.
enum Outcome {
    /// `write-data` was not called yet: `target` names the write.
    Unnamed {
        target: oneshot::Sender<Target>,
        done: oneshot::Receiver<Result<ObjectMeta, Failure>>,
    },
    /// Named; the put runs (or waits for its body).
    Pending(oneshot::Receiver<Result<ObjectMeta, Failure>>),
    /// The put ended.
    Done(Result<ObjectMeta, Failure>),
}

/// Why a blob call failed, with a message naming the bucket and the object.
#[derive(Debug, Clone, thiserror::Error)]
enum Failure {
    /// The function may not open the bucket.
    #[error("{message}")]
    Denied { undeclared: bool, message: String },
    /// The store refused or failed.
    #[error("{message}")]
    Store { source: BlobError, message: String },
    /// The guest used a call wrongly, or the host failed around the store.
    #[error("{0}")]
    Other(String),
}

impl Failure {
    /// A store error on object `name` of `bucket`.
    fn store(bucket: &str, name: &str, source: BlobError) -> Self {
        let text = source.to_string();
        let message = if text.contains(&format!("`{name}`")) || name.is_empty() {
            format!("bucket `{bucket}`: {text}")
        } else {
            format!("bucket `{bucket}`, object `{}`: {text}", shown(name))
        };
        Self::Store { source, message }
    }

    fn platform(self) -> platform::Error {
        let message = self.to_string();
        match self {
            Self::Denied {
                undeclared: true, ..
            } => platform::Error::NoSuchBucket(message),
            Self::Denied { .. } => platform::Error::AccessDenied(message),
            Self::Store { source, .. } => match source {
                BlobError::InvalidName { .. } => platform::Error::InvalidName(message),
                BlobError::NotFound { .. } => platform::Error::NotFound(message),
                BlobError::PreconditionFailed { .. } => {
                    platform::Error::PreconditionFailed(message)
                }
                BlobError::TooLarge { .. } => platform::Error::TooLarge(message),
                BlobError::Backend { .. } => platform::Error::Other(message),
            },
            Self::Other(_) => platform::Error::Other(message),
        }
    }
}

/// `wasi:blobstore`'s error: the message.
fn draft<T>(r: Result<T, Failure>) -> Result<T, types::Error> {
    r.map_err(|e| e.to_string())
}

fn info(meta: ObjectMeta) -> platform::ObjectInfo {
    platform::ObjectInfo {
        name: meta.name,
        size: meta.size,
        etag: meta.etag,
        content_type: meta.content_type,
        modified_us: meta.modified_us,
    }
}

impl BindingCtx<'_> {
    /// The bucket `name`, through the allow-list (a refusal is logged there).
    fn open_bucket(&self, name: &str) -> Result<Arc<dyn BlobStore>, Failure> {
        self.resources
            .open::<dyn BlobStore>(&BUCKETS, self.caller, name)
            .map_err(|d| Failure::Denied {
                undeclared: d.undeclared,
                message: d.message,
            })
    }

    fn push_container(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Container>, Failure>> {
        let store = match self.open_bucket(&name) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.table.push(Container { name, store })?))
    }

    fn container(&self, c: &Resource<Container>) -> wasmtime::Result<(String, Arc<dyn BlobStore>)> {
        let c = self.table.get(c)?;
        Ok((c.name.clone(), c.store.clone()))
    }

    async fn head(
        &mut self,
        c: &Resource<Container>,
        name: &str,
    ) -> wasmtime::Result<Result<Option<ObjectMeta>, Failure>> {
        let (bucket, store) = self.container(c)?;
        Ok(store
            .head(name)
            .await
            .map_err(|e| Failure::store(&bucket, name, e)))
    }

    async fn read(
        &mut self,
        c: &Resource<Container>,
        name: String,
        range: Option<std::ops::Range<u64>>,
    ) -> wasmtime::Result<Result<Option<(ObjectMeta, Resource<IncomingValue>)>, Failure>> {
        let (bucket, store) = self.container(c)?;
        let (meta, body) = match store.get(&name, range.clone()).await {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(Ok(None)),
            Err(e) => return Ok(Err(Failure::store(&bucket, &name, e))),
        };
        let size = match range {
            Some(r) => r.end.min(meta.size).saturating_sub(r.start),
            None => meta.size,
        };
        let value = IncomingValue {
            bucket,
            name,
            size,
            body,
        };
        Ok(Ok(Some((meta, self.table.push(value)?))))
    }

    async fn write(
        &mut self,
        c: Resource<Container>,
        name: String,
        data: Resource<OutgoingValue>,
        options: PutOptions,
    ) -> wasmtime::Result<Result<(), Failure>> {
        let (bucket, store) = self.container(&c)?;
        if let Err(e) = check_name(&name) {
            return Ok(Err(Failure::store(&bucket, &name, e)));
        }
        let value = self.table.get_mut(&data)?;
        let (target_tx, done) = match std::mem::replace(&mut value.outcome, taken()) {
            Outcome::Unnamed { target, done } => (target, done),
            other => {
                value.outcome = other;
                return Ok(Err(Failure::Other(format!(
                    "bucket `{bucket}`: this outgoing value was already written; make a new outgoing value for object `{}`",
                    shown(&name)
                ))));
            }
        };
        let target = Target {
            bucket: bucket.clone(),
            name: name.clone(),
            store,
            options,
        };
        if target_tx.send(target).is_err() {
            value.outcome = Outcome::Done(Err(writer_gone(&bucket, &name)));
            return Ok(Err(writer_gone(&bucket, &name)));
        }
        // The body is complete when its stream was asked for and dropped: store it now.
        let stream_dropped = value.stream.as_ref().is_some_and(|s| s.upgrade().is_none());
        if !stream_dropped {
            value.outcome = Outcome::Pending(done);
            return Ok(Ok(()));
        }
        if let Some(commit) = value.commit.take() {
            let _ = commit.send(());
        }
        let result = done
            .await
            .unwrap_or_else(|_| Err(writer_gone(&bucket, &name)));
        self.table.get_mut(&data)?.outcome = Outcome::Done(result.clone());
        Ok(result.map(|_| ()))
    }

    /// Finishes `data`: stores the object if `write-data` left that to `finish`, and answers
    /// the written object (`None`: it was never named, so nothing was written).
    async fn finish(
        &mut self,
        data: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<Option<ObjectMeta>, Failure>> {
        let mut value = self.table.delete(data)?;
        if value.stream.as_ref().is_some_and(|s| s.upgrade().is_some()) {
            // Dropping `value` abandons the write.
            return Ok(Err(Failure::Other(
                "an outgoing value was finished while its body output-stream was still open; drop the stream first (nothing was written)".into(),
            )));
        }
        // A body never asked for is empty.
        value.body = None;
        let done = match std::mem::replace(&mut value.outcome, taken()) {
            Outcome::Unnamed { .. } => return Ok(Ok(None)),
            Outcome::Done(result) => return Ok(result.map(Some)),
            Outcome::Pending(rx) => rx,
        };
        if let Some(commit) = value.commit.take() {
            let _ = commit.send(());
        }
        Ok(done
            .await
            .unwrap_or_else(|_| Err(Failure::Other("the write ended without an answer".into())))
            .map(Some))
    }

    async fn copy(&mut self, src: &types::ObjectId, dest: &types::ObjectId) -> Result<(), Failure> {
        let from = self.open_bucket(&src.container)?;
        let to = self.open_bucket(&dest.container)?;
        let (_, body) = from
            .get(&src.object, None)
            .await
            .map_err(|e| Failure::store(&src.container, &src.object, e))?
            .ok_or_else(|| {
                Failure::store(
                    &src.container,
                    &src.object,
                    BlobError::NotFound {
                        name: src.object.clone(),
                    },
                )
            })?;
        to.put(&dest.object, body, PutOptions::default())
            .await
            .map_err(|e| Failure::store(&dest.container, &dest.object, e))?;
        Ok(())
    }
}

/// What an outgoing value's outcome reads while a call has it.
fn taken() -> Outcome {
    Outcome::Done(Err(Failure::Other(
        "the outgoing value is in use by another call".into(),
    )))
}

fn writer_gone(bucket: &str, name: &str) -> Failure {
    Failure::Other(format!(
        "bucket `{bucket}`, object `{}`: the write stopped before it was named (its body could not be held); nothing was written",
        shown(name)
    ))
}

impl types::Host for BindingCtx<'_> {}

impl types::HostOutgoingValue for BindingCtx<'_> {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<OutgoingValue>> {
        let (body_tx, body_rx) = mpsc::channel(PIPE_CHUNKS);
        let (target_tx, target_rx) = oneshot::channel();
        let (commit_tx, commit_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(write_task(body_rx, target_rx, commit_rx, done_tx));
        Ok(self.table.push(OutgoingValue {
            body: Some(body_tx),
            stream: None,
            commit: Some(commit_tx),
            outcome: Outcome::Unnamed {
                target: target_tx,
                done: done_rx,
            },
        })?)
    }

    async fn outgoing_value_write_body(
        &mut self,
        data: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let value = self.table.get_mut(&data)?;
        let Some(tx) = value.body.take() else {
            return Ok(Err(()));
        };
        value.stream = Some(tx.downgrade());
        let stream: DynOutputStream = Box::new(BodyStream {
            tx: Some(tx),
            permit: None,
        });
        Ok(Ok(self.table.push(stream)?))
    }

    async fn finish(
        &mut self,
        data: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(draft(BindingCtx::finish(self, data).await?.map(|_| ())))
    }

    async fn drop(&mut self, data: Resource<OutgoingValue>) -> wasmtime::Result<()> {
        // An unfinished write is abandoned: its task sees the commit signal go away.
        self.table.delete(data)?;
        Ok(())
    }
}

impl types::HostIncomingValue for BindingCtx<'_> {
    async fn incoming_value_consume_sync(
        &mut self,
        data: Resource<IncomingValue>,
    ) -> wasmtime::Result<Result<Vec<u8>, types::Error>> {
        let value = self.table.delete(data)?;
        let cap = self.memory_cap;
        if value.size > cap as u64 {
            return Ok(Err(format!(
                "bucket `{}`: object `{}` is {} bytes, more than this function's memory limit of {} MiB; read it as a stream with `incoming-value-consume-async`",
                value.bucket,
                shown(&value.name),
                value.size,
                cap >> 20
            )));
        }
        let mut out = Vec::with_capacity(usize::try_from(value.size).unwrap_or(0));
        let mut body = value.body;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) if out.len().saturating_add(bytes.len()) > cap => {
                    return Ok(Err(format!(
                        "bucket `{}`: object `{}` grew past this function's memory limit of {} MiB while it was read; read it as a stream with `incoming-value-consume-async`",
                        value.bucket,
                        shown(&value.name),
                        cap >> 20
                    )));
                }
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(e) => {
                    return Ok(Err(
                        Failure::store(&value.bucket, &value.name, e).to_string()
                    ));
                }
            }
        }
        Ok(Ok(out))
    }

    async fn incoming_value_consume_async(
        &mut self,
        data: Resource<IncomingValue>,
    ) -> wasmtime::Result<Result<Resource<DynInputStream>, types::Error>> {
        let value = self.table.delete(data)?;
        let stream: DynInputStream = Box::new(ObjectStream {
            bucket: value.bucket,
            name: value.name,
            body: value.body,
            pending: Bytes::new(),
            end: None,
        });
        Ok(Ok(self.table.push(stream)?))
    }

    async fn size(&mut self, data: Resource<IncomingValue>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&data)?.size)
    }

    async fn drop(&mut self, data: Resource<IncomingValue>) -> wasmtime::Result<()> {
        self.table.delete(data)?;
        Ok(())
    }
}

impl container::Host for BindingCtx<'_> {}

impl container::HostContainer for BindingCtx<'_> {
    async fn name(
        &mut self,
        c: Resource<Container>,
    ) -> wasmtime::Result<Result<String, types::Error>> {
        Ok(Ok(self.table.get(&c)?.name.clone()))
    }

    async fn info(
        &mut self,
        c: Resource<Container>,
    ) -> wasmtime::Result<Result<types::ContainerMetadata, types::Error>> {
        // A bucket is declared, not created: it has no creation time to tell.
        Ok(Ok(types::ContainerMetadata {
            name: self.table.get(&c)?.name.clone(),
            created_at: 0,
        }))
    }

    async fn get_data(
        &mut self,
        c: Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> wasmtime::Result<Result<Resource<IncomingValue>, types::Error>> {
        // The draft's offsets are inclusive.
        let range = start..end.saturating_add(1);
        let bucket = self.table.get(&c)?.name.clone();
        Ok(draft(
            match self.read(&c, name.clone(), Some(range)).await? {
                Ok(Some((_, value))) => Ok(value),
                Ok(None) => Err(Failure::store(
                    &bucket,
                    &name,
                    BlobError::NotFound { name: name.clone() },
                )),
                Err(e) => Err(e),
            },
        ))
    }

    async fn write_data(
        &mut self,
        c: Resource<Container>,
        name: String,
        data: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(draft(
            self.write(c, name, data, PutOptions::default()).await?,
        ))
    }

    async fn list_objects(
        &mut self,
        c: Resource<Container>,
    ) -> wasmtime::Result<Result<Resource<ObjectNames>, types::Error>> {
        let (bucket, store) = self.container(&c)?;
        Ok(Ok(self.table.push(ObjectNames {
            bucket,
            store,
            buffer: VecDeque::new(),
            cursor: None,
            done: false,
        })?))
    }

    async fn delete_object(
        &mut self,
        c: Resource<Container>,
        name: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let (bucket, store) = self.container(&c)?;
        Ok(store
            .delete(&name)
            .await
            .map(|_| ())
            .map_err(|e| Failure::store(&bucket, &name, e).to_string()))
    }

    async fn delete_objects(
        &mut self,
        c: Resource<Container>,
        names: Vec<String>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let (bucket, store) = self.container(&c)?;
        for name in names {
            if let Err(e) = store.delete(&name).await {
                return Ok(Err(Failure::store(&bucket, &name, e).to_string()));
            }
        }
        Ok(Ok(()))
    }

    async fn has_object(
        &mut self,
        c: Resource<Container>,
        name: String,
    ) -> wasmtime::Result<Result<bool, types::Error>> {
        Ok(draft(self.head(&c, &name).await?.map(|m| m.is_some())))
    }

    async fn object_info(
        &mut self,
        c: Resource<Container>,
        name: String,
    ) -> wasmtime::Result<Result<types::ObjectMetadata, types::Error>> {
        let bucket = self.table.get(&c)?.name.clone();
        Ok(draft(match self.head(&c, &name).await? {
            Ok(Some(meta)) => Ok(types::ObjectMetadata {
                name: meta.name,
                container: bucket,
                // The store keeps the last modification, not the creation.
                created_at: u64::try_from(meta.modified_us / 1_000_000).unwrap_or(0),
                size: meta.size,
            }),
            Ok(None) => Err(Failure::store(
                &bucket,
                &name,
                BlobError::NotFound { name: name.clone() },
            )),
            Err(e) => Err(e),
        }))
    }

    async fn clear(
        &mut self,
        c: Resource<Container>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let bucket = self.table.get(&c)?.name.clone();
        Ok(Err(format!(
            "bucket `{bucket}` cannot be cleared by a function; delete its objects with `delete-object` or `delete-objects`"
        )))
    }

    async fn drop(&mut self, c: Resource<Container>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl container::HostStreamObjectNames for BindingCtx<'_> {
    async fn read_stream_object_names(
        &mut self,
        names: Resource<ObjectNames>,
        len: u64,
    ) -> wasmtime::Result<Result<(Vec<String>, bool), types::Error>> {
        let want = usize::try_from(len.min(MAX_NAMES_PER_READ)).unwrap_or(0);
        if let Err(e) = self.fill(&names, want).await? {
            return Ok(Err(e.to_string()));
        }
        let n = self.table.get_mut(&names)?;
        let take = want.min(n.buffer.len());
        let out: Vec<String> = n.buffer.drain(..take).collect();
        Ok(Ok((out, n.done && n.buffer.is_empty())))
    }

    async fn skip_stream_object_names(
        &mut self,
        names: Resource<ObjectNames>,
        num: u64,
    ) -> wasmtime::Result<Result<(u64, bool), types::Error>> {
        let want = usize::try_from(num.min(MAX_NAMES_PER_READ)).unwrap_or(0);
        if let Err(e) = self.fill(&names, want).await? {
            return Ok(Err(e.to_string()));
        }
        let n = self.table.get_mut(&names)?;
        let take = want.min(n.buffer.len());
        n.buffer.drain(..take);
        Ok(Ok((take as u64, n.done && n.buffer.is_empty())))
    }

    async fn drop(&mut self, names: Resource<ObjectNames>) -> wasmtime::Result<()> {
        self.table.delete(names)?;
        Ok(())
    }
}

impl BindingCtx<'_> {
    /// Fetches pages until `names` holds `want` names or the listing ends.
    async fn fill(
        &mut self,
        names: &Resource<ObjectNames>,
        want: usize,
    ) -> wasmtime::Result<Result<(), Failure>> {
        loop {
            let n = self.table.get(names)?;
            if n.done || n.buffer.len() >= want {
                return Ok(Ok(()));
            }
            let (bucket, store, cursor) = (n.bucket.clone(), n.store.clone(), n.cursor.clone());
            let page = match store.list("", cursor.as_deref(), LIST_PAGE).await {
                Ok(p) => p,
                Err(e) => return Ok(Err(Failure::store(&bucket, "", e))),
            };
            let n = self.table.get_mut(names)?;
            n.buffer.extend(page.objects.into_iter().map(|o| o.name));
            n.done = page.cursor.is_none();
            n.cursor = page.cursor;
        }
    }
}

impl blobstore::Host for BindingCtx<'_> {
    async fn create_container(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Container>, types::Error>> {
        let name = shown(&name);
        Ok(Err(format!(
            "buckets are declared in updraft.toml, not created by functions: add a `[bucket.{name}]` table and list `{name}` in the function's `buckets = [...]`, then open it with `get-container`"
        )))
    }

    async fn get_container(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Container>, types::Error>> {
        Ok(draft(self.push_container(name)?))
    }

    async fn delete_container(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let name = shown(&name);
        Ok(Err(format!(
            "bucket `{name}` cannot be deleted by a function; buckets are declared in updraft.toml (`[bucket.{name}]`)"
        )))
    }

    async fn container_exists(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<bool, types::Error>> {
        // Asking is not a denial: nothing is logged.
        Ok(Ok(self
            .resources
            .allow_lists()
            .get(BUCKETS.key)
            .is_some_and(|names| names.contains(&name))))
    }

    async fn copy_object(
        &mut self,
        src: types::ObjectId,
        dest: types::ObjectId,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(draft(self.copy(&src, &dest).await))
    }

    async fn move_object(
        &mut self,
        src: types::ObjectId,
        dest: types::ObjectId,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        if src.container == dest.container && src.object == dest.object {
            return Ok(Ok(()));
        }
        if let Err(e) = self.copy(&src, &dest).await {
            return Ok(Err(e.to_string()));
        }
        let from = match self.open_bucket(&src.container) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(from
            .delete(&src.object)
            .await
            .map(|_| ())
            .map_err(|e| Failure::store(&src.container, &src.object, e).to_string()))
    }
}

impl platform::Host for BindingCtx<'_> {
    async fn open_container(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Container>, platform::Error>> {
        Ok(self.push_container(name)?.map_err(Failure::platform))
    }

    async fn object_info_ext(
        &mut self,
        c: Resource<Container>,
        name: String,
    ) -> wasmtime::Result<Result<Option<platform::ObjectInfo>, platform::Error>> {
        Ok(self
            .head(&c, &name)
            .await?
            .map(|m| m.map(info))
            .map_err(Failure::platform))
    }

    async fn read_object(
        &mut self,
        c: Resource<Container>,
        name: String,
    ) -> wasmtime::Result<
        Result<Option<(platform::ObjectInfo, Resource<IncomingValue>)>, platform::Error>,
    > {
        Ok(self
            .read(&c, name, None)
            .await?
            .map(|found| found.map(|(meta, value)| (info(meta), value)))
            .map_err(Failure::platform))
    }

    async fn list_by_prefix(
        &mut self,
        c: Resource<Container>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<platform::ObjectPage, platform::Error>> {
        let (bucket, store) = self.container(&c)?;
        Ok(store
            .list(&prefix, cursor.as_deref(), limit)
            .await
            .map(|page| platform::ObjectPage {
                objects: page.objects.into_iter().map(info).collect(),
                cursor: page.cursor,
            })
            .map_err(|e| Failure::store(&bucket, &prefix, e).platform()))
    }

    async fn write_data_with(
        &mut self,
        c: Resource<Container>,
        name: String,
        data: Resource<OutgoingValue>,
        options: platform::WriteOptions,
    ) -> wasmtime::Result<Result<(), platform::Error>> {
        let options = PutOptions {
            content_type: options.content_type,
            condition: match options.condition {
                platform::WriteCondition::Always => PutCondition::Always,
                platform::WriteCondition::IfNoneMatch => PutCondition::IfNoneMatch,
                platform::WriteCondition::IfMatch(etag) => PutCondition::IfMatch(etag),
            },
        };
        Ok(self
            .write(c, name, data, options)
            .await?
            .map_err(Failure::platform))
    }

    async fn finish_with_info(
        &mut self,
        data: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<platform::ObjectInfo, platform::Error>> {
        Ok(match BindingCtx::finish(self, data).await? {
            Ok(Some(meta)) => Ok(info(meta)),
            Ok(None) => Err(platform::Error::Other(
                "the outgoing value was finished without a name, so nothing was written; call `write-data-with` before `finish-with-info`".into(),
            )),
            Err(e) => Err(e.platform()),
        })
    }

    async fn delete_object_ext(
        &mut self,
        c: Resource<Container>,
        name: String,
    ) -> wasmtime::Result<Result<bool, platform::Error>> {
        let (bucket, store) = self.container(&c)?;
        Ok(store
            .delete(&name)
            .await
            .map_err(|e| Failure::store(&bucket, &name, e).platform()))
    }
}

/// Owns one write: spools the body until the write is named, then puts the spool and the
/// rest of the body, ended by the commit signal.
async fn write_task(
    mut body: mpsc::Receiver<Bytes>,
    mut target: oneshot::Receiver<Target>,
    commit: oneshot::Receiver<()>,
    done: oneshot::Sender<Result<ObjectMeta, Failure>>,
) {
    let mut spool: Option<Spool> = None;
    let mut spool_failed: Option<String> = None;
    let mut body_open = true;
    let target = loop {
        tokio::select! {
            biased;
            t = &mut target => match t {
                Ok(t) => break t,
                // The value was dropped unnamed.
                Err(_) => return,
            },
            chunk = body.recv(), if body_open => match chunk {
                Some(bytes) => {
                    let result = match spool.as_mut() {
                        Some(s) => s.write(&bytes).await,
                        None => match Spool::create().await {
                            Ok(mut s) => {
                                let r = s.write(&bytes).await;
                                spool = Some(s);
                                r
                            }
                            Err(e) => Err(e),
                        },
                    };
                    if let Err(e) = result {
                        // Stop taking bytes: the stream reports closed, the write fails.
                        spool_failed = Some(e);
                        body.close();
                        body_open = false;
                    }
                }
                None => body_open = false,
            },
        }
    };
    if let Some(reason) = spool_failed {
        let _ = done.send(Err(Failure::Other(format!(
            "bucket `{}`, object `{}`: {reason}; nothing was written",
            target.bucket,
            shown(&target.name)
        ))));
        return;
    }
    let put_body = PutBody {
        spool: match spool {
            Some(s) => s.rewind().await,
            None => None,
        },
        body: body_open.then_some(body),
        commit: Some(commit),
        committed: false,
        bucket: target.bucket.clone(),
        name: target.name.clone(),
    }
    .into_stream();
    let result = target
        .store
        .put(&target.name, put_body, target.options)
        .await
        .map_err(|e| Failure::store(&target.bucket, &target.name, e));
    let _ = done.send(result);
}

/// Bytes written before a write was named, in an unnamed temporary file.
struct Spool {
    file: tokio::fs::File,
    len: u64,
}

impl Spool {
    async fn create() -> Result<Self, String> {
        let file = tokio::task::spawn_blocking(tempfile::tempfile)
            .await
            .map_err(|e| format!("the temporary file for its body could not be made: {e}"))?
            .map_err(|e| {
                format!(
                    "the temporary file for its body could not be made in `{}`: {e}",
                    std::env::temp_dir().display()
                )
            })?;
        Ok(Self {
            file: tokio::fs::File::from_std(file),
            len: 0,
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.len = self.len.saturating_add(bytes.len() as u64);
        if self.len > DEFAULT_MAX_OBJECT_BYTES {
            return Err(format!(
                "its body is larger than {DEFAULT_MAX_OBJECT_BYTES} bytes, the most an object may be"
            ));
        }
        self.file
            .write_all(bytes)
            .await
            .map_err(|e| format!("its body could not be held in a temporary file: {e}"))
    }

    /// The file read from its start; `None` when it cannot be (the put then fails).
    async fn rewind(mut self) -> Option<Result<tokio::fs::File, String>> {
        let result = async {
            self.file.flush().await?;
            self.file.seek(std::io::SeekFrom::Start(0)).await?;
            Ok::<_, std::io::Error>(self.file)
        }
        .await;
        Some(result.map_err(|e| format!("its spooled body could not be read back: {e}")))
    }
}

/// The body a put reads: the spool, then the pipe, then the commit signal.
struct PutBody {
    spool: Option<Result<tokio::fs::File, String>>,
    body: Option<mpsc::Receiver<Bytes>>,
    commit: Option<oneshot::Receiver<()>>,
    committed: bool,
    bucket: String,
    name: String,
}

impl PutBody {
    fn into_stream(self) -> ByteStream {
        futures::stream::unfold(self, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
        .boxed()
    }

    fn abandoned(&self) -> BlobError {
        BlobError::backend(format!(
            "bucket `{}`: the write of object `{}` was abandoned before it was finished (the outgoing value was dropped, or the function ended); nothing was written",
            self.bucket,
            shown(&self.name)
        ))
    }

    /// The next chunk; `None` at the end (after the commit signal).
    async fn next(&mut self) -> Option<Result<Bytes, BlobError>> {
        if let Some(spool) = self.spool.as_mut() {
            match spool {
                Ok(file) => {
                    let mut buf = bytes::BytesMut::with_capacity(CHUNK);
                    match file.read_buf(&mut buf).await {
                        Ok(0) => self.spool = None,
                        Ok(_) => return Some(Ok(buf.freeze())),
                        Err(e) => {
                            let message = format!(
                                "bucket `{}`: the body of object `{}` could not be read back from its temporary file: {e}",
                                self.bucket,
                                shown(&self.name)
                            );
                            self.spool = None;
                            self.body = None;
                            self.commit = None;
                            return Some(Err(BlobError::backend(message)));
                        }
                    }
                }
                Err(reason) => {
                    let message = format!(
                        "bucket `{}`, object `{}`: {reason}",
                        self.bucket,
                        shown(&self.name)
                    );
                    self.spool = None;
                    self.body = None;
                    self.commit = None;
                    return Some(Err(BlobError::backend(message)));
                }
            }
        }
        while let Some(body) = self.body.as_mut() {
            match self.commit.as_mut() {
                Some(commit) if !self.committed => {
                    tokio::select! {
                        biased;
                        chunk = body.recv() => match chunk {
                            Some(bytes) => return Some(Ok(bytes)),
                            None => self.body = None,
                        },
                        signal = commit => match signal {
                            Ok(()) => self.committed = true,
                            Err(_) => {
                                self.body = None;
                                self.commit = None;
                                return Some(Err(self.abandoned()));
                            }
                        },
                    }
                }
                _ => match body.recv().await {
                    Some(bytes) => return Some(Ok(bytes)),
                    None => self.body = None,
                },
            }
        }
        if self.committed {
            return None;
        }
        let commit = self.commit.take()?;
        match commit.await {
            Ok(()) => {
                self.committed = true;
                None
            }
            Err(_) => Some(Err(self.abandoned())),
        }
    }
}

/// The output-stream of an outgoing value: the pipe's sending end, a permit at a time.
struct BodyStream {
    /// `None` once the write stopped taking bytes.
    tx: Option<mpsc::Sender<Bytes>>,
    permit: Option<mpsc::OwnedPermit<Bytes>>,
}

impl BodyStream {
    fn closed(&mut self) -> StreamError {
        self.tx = None;
        StreamError::LastOperationFailed(wasmtime::format_err!(
            "the write stopped taking bytes (it failed, or its value was dropped); finish the outgoing value to learn why"
        ))
    }
}

#[async_trait::async_trait]
impl OutputStream for BodyStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if bytes.len() > CHUNK {
            return Err(StreamError::trap(
                "a write to a blob body was larger than `check-write` allowed",
            ));
        }
        let Some(permit) = self.permit.take() else {
            return Err(StreamError::trap(
                "a blob body was written without a `check-write` permit",
            ));
        };
        if self.tx.is_none() {
            return Err(self.closed());
        }
        drop(permit.send(bytes));
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Written bytes are already in the pipe; nothing is buffered here.
        match &self.tx {
            Some(tx) if tx.is_closed() => Err(self.closed()),
            Some(_) => Ok(()),
            None => Err(self.closed()),
        }
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.permit.is_some() {
            return Ok(CHUNK);
        }
        let Some(tx) = self.tx.clone() else {
            return Err(self.closed());
        };
        match tx.try_reserve_owned() {
            Ok(permit) => {
                self.permit = Some(permit);
                Ok(CHUNK)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Ok(0),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.closed()),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for BodyStream {
    async fn ready(&mut self) {
        if self.permit.is_some() {
            return;
        }
        let Some(tx) = self.tx.clone() else {
            return;
        };
        // A closed pipe is ready too: `check-write` then reports it.
        if let Ok(permit) = tx.reserve_owned().await {
            self.permit = Some(permit);
        }
    }
}

/// The input-stream of an incoming value: the store's body, a chunk at a time.
struct ObjectStream {
    bucket: String,
    name: String,
    body: ByteStream,
    /// Bytes received and not yet read.
    pending: Bytes,
    /// The body ended: cleanly, or with this error.
    end: Option<Result<(), String>>,
}

impl ObjectStream {
    fn take(&mut self, item: Option<Result<Bytes, BlobError>>) {
        match item {
            Some(Ok(bytes)) => self.pending = bytes,
            Some(Err(e)) => {
                self.end = Some(Err(Failure::store(&self.bucket, &self.name, e).to_string()));
            }
            None => self.end = Some(Ok(())),
        }
    }
}

#[async_trait::async_trait]
impl InputStream for ObjectStream {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if self.pending.is_empty()
            && self.end.is_none()
            && let Some(item) = self.body.next().now_or_never()
        {
            self.take(item);
        }
        if !self.pending.is_empty() {
            let n = size.min(self.pending.len());
            return Ok(self.pending.split_to(n));
        }
        match &self.end {
            None => Ok(Bytes::new()),
            Some(Ok(())) => Err(StreamError::Closed),
            Some(Err(message)) => Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{message}"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for ObjectStream {
    async fn ready(&mut self) {
        // Skips empty chunks, so a ready stream has bytes or has ended.
        while self.pending.is_empty() && self.end.is_none() {
            let item = self.body.next().await;
            self.take(item);
        }
    }
}
