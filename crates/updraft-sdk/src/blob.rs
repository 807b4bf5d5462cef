//! Buckets: `[bucket.<name>]`, reachable when the function lists the name in
//! `buckets = [...]`.
//!
//! Objects stream both ways, so a function handles objects far larger than its memory
//! limit: [`Bucket::reader`] is a [`std::io::Read`] over the object and [`Bucket::writer`] a
//! [`std::io::Write`] into it, a chunk at a time. [`Bucket::get`] and [`Bucket::put`] move a
//! whole object in one call, for small ones ([`Bucket::get`] refuses an object larger than
//! the function's memory limit).
//!
//! ```ignore
//! use std::io::{Read, Write};
//! use updraft_sdk::blob::Bucket;
//!
//! let uploads = Bucket::open("uploads")?;
//! uploads.put("hello.txt", b"hello")?;
//! let mut text = String::new();
//! uploads.reader("hello.txt")?.expect("just written").read_to_string(&mut text)?;
//! let mut out = uploads.writer("big.bin")?;
//! for _ in 0..1024 {
//!     out.write_all(&[0u8; 1 << 20])?;
//! }
//! let info = out.finish()?; // stored now, atomically
//! for object in uploads.list("reports/") {
//!     let object = object?;
//!     println!("{} ({} bytes)", object.name, object.size);
//! }
//! ```
//!
//! A write is stored whole or not at all: an object appears when [`Writer::finish`] returns,
//! and a [`Writer`] dropped unfinished (or a function that fails mid-write) leaves the old
//! object as it was. Conditional writes ([`Bucket::put_if_absent`],
//! [`Bucket::put_if_match`], [`Condition`]) compare against the object's etag
//! ([`ObjectInfo::etag`]).
//!
//! These wrap `updraft:platform/blob` and `wasi:blobstore@0.2.0-draft` (in
//! [`crate::bindings`]); their streams are [`wasip2`]'s, so they also work with `wstd`'s
//! async streams.

use std::io;

use crate::bindings::updraft::platform::blob as platform;
use crate::bindings::wasi::blobstore::blobstore;
use crate::bindings::wasi::blobstore::container::Container;
use crate::bindings::wasi::blobstore::types::{IncomingValue, OutgoingValue};
use crate::{Error, Result};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

/// Bytes a [`Reader`] asks the host for at a time.
const READ_CHUNK: u64 = 64 * 1024;
/// Objects per page [`Bucket::list`] fetches.
const LIST_PAGE: u32 = 1000;

fn err(e: platform::Error) -> Error {
    Error(match e {
        platform::Error::AccessDenied(m)
        | platform::Error::NoSuchBucket(m)
        | platform::Error::InvalidName(m)
        | platform::Error::NotFound(m)
        | platform::Error::PreconditionFailed(m)
        | platform::Error::TooLarge(m)
        | platform::Error::Other(m) => m,
    })
}

/// What is known of one object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's name in its bucket (`reports/2024/q1.csv`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Changes whenever the object is rewritten; pass it to [`Bucket::put_if_match`].
    pub etag: String,
    /// The media type, where the bucket keeps or derives one (a local folder derives it from
    /// the name's extension).
    pub content_type: Option<String>,
    /// Last modification, microseconds since the Unix epoch.
    pub modified_us: i64,
}

impl From<platform::ObjectInfo> for ObjectInfo {
    fn from(i: platform::ObjectInfo) -> Self {
        Self {
            name: i.name,
            size: i.size,
            etag: i.etag,
            content_type: i.content_type,
            modified_us: i.modified_us,
        }
    }
}

/// When a write may replace what is there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Condition {
    /// Always.
    #[default]
    Always,
    /// Only if no object has the name.
    IfAbsent,
    /// Only if the object exists and its etag is this one.
    IfMatch(String),
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Objects in ascending byte order of name.
    pub objects: Vec<ObjectInfo>,
    /// Pass back to [`Bucket::list_page`] for the next page; `None` after the last.
    pub cursor: Option<String>,
}

/// An open bucket.
pub struct Bucket {
    name: String,
    container: Container,
}

impl Bucket {
    /// Opens the bucket declared as `[bucket.<name>]` (the function must list it in
    /// `buckets = [...]`).
    pub fn open(name: &str) -> Result<Self> {
        platform::open_container(name)
            .map(|container| Self {
                name: name.to_owned(),
                container,
            })
            .map_err(err)
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Copies object `from` to `to` in this bucket (streamed by the host, any size).
    pub fn copy(&self, from: &str, to: &str) -> Result<()> {
        blobstore::copy_object(&self.id(from), &self.id(to)).map_err(Error)
    }

    /// Moves object `from` to `to` in this bucket: `to` is written whole, then `from` is
    /// deleted.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        blobstore::move_object(&self.id(from), &self.id(to)).map_err(Error)
    }

    fn id(&self, object: &str) -> blobstore::ObjectId {
        blobstore::ObjectId {
            container: self.name.clone(),
            object: object.to_owned(),
        }
    }

    /// The whole object `name`, or `None` if there is none. For objects that fit in memory;
    /// read larger ones with [`Bucket::reader`].
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match platform::read_object(&self.container, name).map_err(err)? {
            Some((_, value)) => IncomingValue::incoming_value_consume_sync(value)
                .map(Some)
                .map_err(Error),
            None => Ok(None),
        }
    }

    /// Object `name` as a stream ([`std::io::Read`]), or `None` if there is none.
    pub fn reader(&self, name: &str) -> Result<Option<Reader>> {
        let Some((info, value)) = platform::read_object(&self.container, name).map_err(err)? else {
            return Ok(None);
        };
        let stream = IncomingValue::incoming_value_consume_async(value).map_err(Error)?;
        Ok(Some(Reader {
            info: info.into(),
            stream,
        }))
    }

    /// The metadata of object `name`, or `None` if there is none.
    pub fn info(&self, name: &str) -> Result<Option<ObjectInfo>> {
        Ok(platform::object_info_ext(&self.container, name)
            .map_err(err)?
            .map(Into::into))
    }

    /// Writes `bytes` as object `name`, replacing any.
    pub fn put(&self, name: &str, bytes: impl AsRef<[u8]>) -> Result<ObjectInfo> {
        let mut w = self.writer(name)?;
        w.write_bytes(bytes.as_ref())?;
        w.finish()
    }

    /// Writes `bytes` as object `name` only if there is no object of that name; `None` if
    /// there is (nothing was written).
    pub fn put_if_absent(&self, name: &str, bytes: impl AsRef<[u8]>) -> Result<Option<ObjectInfo>> {
        let mut w = self.writer_with(name, None, Condition::IfAbsent)?;
        w.write_bytes(bytes.as_ref())?;
        w.finish_if()
    }

    /// Writes `bytes` as object `name` only if its etag is still `etag`; `None` if it is not,
    /// or the object is gone (nothing was written).
    pub fn put_if_match(
        &self,
        name: &str,
        bytes: impl AsRef<[u8]>,
        etag: &str,
    ) -> Result<Option<ObjectInfo>> {
        let mut w = self.writer_with(name, None, Condition::IfMatch(etag.to_owned()))?;
        w.write_bytes(bytes.as_ref())?;
        w.finish_if()
    }

    /// A [`std::io::Write`] into object `name`, stored when [`Writer::finish`] returns.
    pub fn writer(&self, name: &str) -> Result<Writer> {
        self.writer_with(name, None, Condition::Always)
    }

    /// [`Bucket::writer`] with a media type to keep (where the bucket can keep one) and a
    /// condition.
    pub fn writer_with(
        &self,
        name: &str,
        content_type: Option<&str>,
        condition: Condition,
    ) -> Result<Writer> {
        let value = OutgoingValue::new_outgoing_value();
        let stream = value.outgoing_value_write_body().map_err(|()| {
            Error(format!(
                "bucket `{}`: no body stream for object `{name}`",
                self.name
            ))
        })?;
        let options = platform::WriteOptions {
            content_type: content_type.map(str::to_owned),
            condition: match condition {
                Condition::Always => platform::WriteCondition::Always,
                Condition::IfAbsent => platform::WriteCondition::IfNoneMatch,
                Condition::IfMatch(etag) => platform::WriteCondition::IfMatch(etag),
            },
        };
        // Named while the body stream is open: the bytes stream straight into the bucket.
        platform::write_data_with(&self.container, name, &value, &options).map_err(err)?;
        Ok(Writer {
            stream: Some(stream),
            value: Some(value),
            failed: None,
        })
    }

    /// Removes object `name`; returns whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool> {
        platform::delete_object_ext(&self.container, name).map_err(err)
    }

    /// Every object whose name starts with `prefix`, in ascending byte order of name,
    /// fetched a page at a time. Hidden names (a segment starting with `.`) are not listed.
    pub fn list(&self, prefix: &str) -> List<'_> {
        List {
            bucket: self,
            prefix: prefix.to_owned(),
            page: Vec::new().into_iter(),
            cursor: None,
            done: false,
        }
    }

    /// Up to `limit` objects (at most 1000) whose names start with `prefix`, after `cursor`.
    pub fn list_page(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<Page> {
        let page = platform::list_by_prefix(&self.container, prefix, cursor, limit).map_err(err)?;
        Ok(Page {
            objects: page.objects.into_iter().map(Into::into).collect(),
            cursor: page.cursor,
        })
    }
}

/// The objects of [`Bucket::list`], a page at a time.
pub struct List<'a> {
    bucket: &'a Bucket,
    prefix: String,
    page: std::vec::IntoIter<ObjectInfo>,
    cursor: Option<String>,
    done: bool,
}

impl Iterator for List<'_> {
    type Item = Result<ObjectInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(object) = self.page.next() {
                return Some(Ok(object));
            }
            if self.done {
                return None;
            }
            match self
                .bucket
                .list_page(&self.prefix, self.cursor.as_deref(), LIST_PAGE)
            {
                Ok(page) => {
                    self.done = page.cursor.is_none();
                    self.cursor = page.cursor;
                    self.page = page.objects.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// An object being read, a chunk at a time ([`std::io::Read`]).
pub struct Reader {
    info: ObjectInfo,
    stream: InputStream,
}

impl Reader {
    /// The object's metadata, as it was when the read began.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// The underlying `wasi:io` stream (for `wstd`'s async streams, for instance).
    pub fn into_stream(self) -> InputStream {
        self.stream
    }
}

impl io::Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(READ_CHUNK);
        match self.stream.blocking_read(want) {
            Ok(bytes) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
            Err(StreamError::Closed) => Ok(0),
            Err(StreamError::LastOperationFailed(e)) => Err(io::Error::other(e.to_debug_string())),
        }
    }
}

/// An object being written ([`std::io::Write`]); stored when [`Writer::finish`] returns,
/// never if the writer is dropped unfinished.
pub struct Writer {
    stream: Option<OutputStream>,
    value: Option<OutgoingValue>,
    /// Why the write failed, once it did.
    failed: Option<platform::Error>,
}

impl Writer {
    fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        io::Write::write_all(self, bytes).map_err(|e| Error(e.to_string()))
    }

    /// Ends the write and stores the object; returns its metadata. A lost condition is an
    /// error here (see [`Writer::finish_if`]).
    pub fn finish(self) -> Result<ObjectInfo> {
        self.end().map_err(err)
    }

    /// [`Writer::finish`] for a conditional write: `None` when the condition failed
    /// (nothing was written).
    pub fn finish_if(self) -> Result<Option<ObjectInfo>> {
        match self.end() {
            Ok(info) => Ok(Some(info)),
            Err(platform::Error::PreconditionFailed(_)) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    fn end(mut self) -> Result<ObjectInfo, platform::Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        // The body stream must be gone before the value is finished.
        drop(self.stream.take());
        match self.value.take() {
            Some(value) => platform::finish_with_info(value).map(Into::into),
            None => Err(platform::Error::Other("the write was already ended".into())),
        }
    }

    /// The write stopped taking bytes: finish it to learn why, and keep that.
    fn fail(&mut self, fallback: String) -> io::Error {
        drop(self.stream.take());
        let why = match self.value.take() {
            Some(value) => match platform::finish_with_info(value) {
                Err(e) => e,
                Ok(_) => platform::Error::Other(fallback),
            },
            None => platform::Error::Other(fallback),
        };
        let message = err(why.clone()).0;
        self.failed = Some(why);
        io::Error::other(message)
    }

    fn failed(&self) -> Option<io::Error> {
        self.failed.clone().map(|e| io::Error::other(err(e).0))
    }
}

impl io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let Some(stream) = self.stream.as_ref() else {
            return Err(io::Error::other("the write was already ended"));
        };
        let permit = loop {
            match stream.check_write() {
                Ok(0) => stream.subscribe().block(),
                Ok(n) => break n,
                Err(StreamError::Closed) => return Err(self.fail("the body stream closed".into())),
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(self.fail(e.to_debug_string()));
                }
            }
        };
        let n = buf.len().min(usize::try_from(permit).unwrap_or(usize::MAX));
        match stream.write(&buf[..n]) {
            Ok(()) => Ok(n),
            Err(StreamError::Closed) => Err(self.fail("the body stream closed".into())),
            Err(StreamError::LastOperationFailed(e)) => Err(self.fail(e.to_debug_string())),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        // Written bytes are already with the host; `finish` stores them.
        Ok(())
    }
}
