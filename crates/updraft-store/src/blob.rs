//! Buckets: named objects of bytes, streamed in and out (DESIGN §9 "Files").
//!
//! A [`BlobStore`] is one bucket. Its backends are a plain local folder
//! ([`crate::fs::FsBlobStore`]) and S3-compatible storage ([`crate::s3::S3BlobStore`]); both
//! pass [`crate::conformance::blob`].
//!
//! What every backend promises:
//!
//! * **Names** are checked by [`check_name`] on every call, before anything is touched: a
//!   name is a `/`-separated path of non-empty segments, never absolute, never `.` or `..`,
//!   so nothing is ever read or written outside the bucket.
//! * **Streams both ways**: [`BlobStore::get`] and [`BlobStore::put`] move the body as a
//!   [`ByteStream`] and never hold a whole object in memory.
//! * **Atomic puts**: a reader sees the old object or the new one, never part of one. A body
//!   stream that fails, a body over [`BlobStore::max_object_bytes`], or a put that is dropped
//!   part-way leaves the old object (or its absence) as it was.
//! * **Conditional puts** ([`PutCondition`]) compare against the object's current etag; of
//!   several racing `IfNoneMatch` puts of one name exactly one wins.
//! * **Listing** is by string prefix, in ascending byte order of name, a page at a time.
//!   Names with a segment starting with `.` are hidden: they can be put and read, but are
//!   never listed (temporary and hidden files, DESIGN §9 "Files").

use std::ops::Range;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Longest object name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Largest object a bucket takes unless configured otherwise (DESIGN §9 defaults: 5 GiB).
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 5 << 30;
/// Segments starting with this are the backends' own (temporary files): no name may use it.
pub const RESERVED_PREFIX: &str = ".updraft";

/// A body, a chunk at a time.
pub type ByteStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, BlobError>>;

/// What is known of one object without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The object's name in its bucket (`reports/2024/q1.csv`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Changes whenever the object is rewritten; pass it to [`PutCondition::IfMatch`].
    pub etag: String,
    /// The media type, where the backend keeps or derives one. In a listing it may be `None`
    /// even when [`BlobStore::head`] has one (S3 listings do not carry it).
    pub content_type: Option<String>,
    /// Last modification, microseconds since the Unix epoch.
    pub modified_us: i64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectPage {
    /// Objects in ascending byte order of name.
    pub objects: Vec<ObjectMeta>,
    /// Pass back to get the next page (the last name returned); `None` after the last page.
    pub cursor: Option<String>,
}

/// When a put may replace what is there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PutCondition {
    /// Always.
    #[default]
    Always,
    /// Only if no object has the name.
    IfNoneMatch,
    /// Only if the object exists and its current etag is this one.
    IfMatch(String),
}

/// How to put an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// The media type to keep with the object, where the backend can keep one (the local
    /// folder cannot: it derives the type from the name's extension).
    pub content_type: Option<String>,
    /// When the put may replace what is there.
    pub condition: PutCondition,
}

/// A failure of a bucket operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// The name is not one a bucket takes.
    #[error("object name `{name}` is refused: {reason}")]
    InvalidName {
        /// The name as given (cut to a readable length when very long).
        name: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// No object has the name.
    #[error("object `{name}` does not exist")]
    NotFound {
        /// The name.
        name: String,
    },
    /// A conditional put lost: the object exists (`IfNoneMatch`) or has another etag
    /// (`IfMatch`).
    #[error(
        "object `{name}` was not written: its condition failed (it exists, or its etag changed); read it again and retry"
    )]
    PreconditionFailed {
        /// The name.
        name: String,
    },
    /// The body is larger than this put may store.
    #[error(
        "object `{name}` is larger than {limit} bytes, the most this put may store; nothing was written"
    )]
    TooLarge {
        /// The name.
        name: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The backend failed (I/O, the network, the server), or the body stream did.
    #[error("{message}")]
    Backend {
        /// What failed, naming the object or bucket.
        message: String,
    },
}

impl BlobError {
    /// A [`BlobError::Backend`] with `message`.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::Backend {
            message: message.into(),
        }
    }
}

/// One bucket. See the module doc for what every backend promises.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The object's metadata, `None` if there is no object of that name.
    async fn head(&self, name: &str) -> Result<Option<ObjectMeta>, BlobError>;

    /// The object's metadata and its bytes (those in `range` when given: a range is cut at
    /// the object's end, and one starting at or past the end, or empty, gives no bytes).
    /// The bytes are streamed, never read whole. `None` if there is no object of that name.
    async fn get(
        &self,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<(ObjectMeta, ByteStream)>, BlobError>;

    /// Writes `body` as the object `name`, atomically, in bounded memory, and returns the
    /// new object's metadata. A body stream that fails, or a body over
    /// [`BlobStore::max_object_bytes`] ([`BlobError::TooLarge`]), leaves nothing behind and
    /// the old object as it was. A lost condition is [`BlobError::PreconditionFailed`].
    async fn put(
        &self,
        name: &str,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta, BlobError>;

    /// Removes the object; returns whether it existed.
    async fn delete(&self, name: &str) -> Result<bool, BlobError>;

    /// Up to `limit` objects whose names start with `prefix` and come after `cursor`, in
    /// ascending byte order of name. Hidden names (a segment starting with `.`) are skipped.
    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ObjectPage, BlobError>;

    /// The largest object [`BlobStore::put`] stores.
    fn max_object_bytes(&self) -> u64 {
        DEFAULT_MAX_OBJECT_BYTES
    }

    /// The folder the objects are files in, when they are (so a file trigger can watch it
    /// instead of polling); `None` for remote stores.
    fn local_root(&self) -> Option<&std::path::Path> {
        None
    }
}

/// A body of one chunk (`Bytes::new()` for an empty object).
pub fn body(bytes: impl Into<bytes::Bytes>) -> ByteStream {
    use futures::StreamExt;
    let bytes: bytes::Bytes = bytes.into();
    if bytes.is_empty() {
        futures::stream::empty().boxed()
    } else {
        futures::stream::once(async move { Ok(bytes) }).boxed()
    }
}

/// Reads a whole body into memory: for small objects only (and tests).
pub async fn read_all(body: ByteStream) -> Result<Vec<u8>, BlobError> {
    use futures::TryStreamExt;
    body.try_fold(Vec::new(), |mut acc, chunk| async move {
        acc.extend_from_slice(&chunk);
        Ok(acc)
    })
    .await
}

/// Checks an object name against the rules every backend shares (see the module doc).
pub fn check_name(name: &str) -> Result<(), BlobError> {
    let refuse = |reason: String| {
        Err(BlobError::InvalidName {
            name: shown(name),
            reason,
        })
    };
    if name.is_empty() {
        return refuse(
            "an object name may not be empty; give it a name like `dir/file.csv`".into(),
        );
    }
    if name.len() > MAX_NAME_BYTES {
        return refuse(format!(
            "it is {} bytes, over the limit of {MAX_NAME_BYTES} bytes; use a shorter name",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return refuse(
            "it holds NUL or another control character; use printable characters".into(),
        );
    }
    if name.starts_with('/') {
        return refuse(
            "it starts with `/`; names are relative to the bucket, drop the leading `/`".into(),
        );
    }
    if name.contains('\\') {
        return refuse("it holds `\\`; separate folders with `/`".into());
    }
    for segment in name.split('/') {
        if segment.is_empty() {
            return refuse(
                "it has an empty segment (`//`, or a trailing `/`); every part between `/` needs a name"
                    .into(),
            );
        }
        if segment == "." || segment == ".." {
            return refuse(format!(
                "it has a `{segment}` segment; name the object by its plain path inside the bucket"
            ));
        }
        if segment.starts_with(RESERVED_PREFIX) {
            return refuse(format!(
                "segment `{segment}` starts with `{RESERVED_PREFIX}`, which is reserved for the bucket's own temporary files; rename it"
            ));
        }
    }
    Ok(())
}

/// Checks a listing prefix: any start of a valid name, so no control characters and no more
/// than [`MAX_NAME_BYTES`].
pub fn check_prefix(prefix: &str) -> Result<(), BlobError> {
    let refuse = |reason: &str| {
        Err(BlobError::InvalidName {
            name: shown(prefix),
            reason: reason.to_owned(),
        })
    };
    if prefix.len() > MAX_NAME_BYTES {
        return refuse("as a listing prefix it is longer than any object name may be");
    }
    if prefix.chars().any(char::is_control) {
        return refuse(
            "as a listing prefix it holds NUL or another control character, which no object name has",
        );
    }
    Ok(())
}

/// Whether a listing skips `name`: a segment starting with `.` hides it.
pub fn is_hidden(name: &str) -> bool {
    name.split('/').any(|s| s.starts_with('.'))
}

/// `name` for an error message: very long names are cut, control characters escaped.
fn shown(name: &str) -> String {
    const KEEP: usize = 80;
    let mut out: String = name
        .chars()
        .take(KEEP)
        .flat_map(char::escape_default)
        .collect();
    if name.chars().count() > KEEP {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_pass() {
        for name in [
            "a",
            "a/b.csv",
            "dir/sub/file",
            ".env",
            "a/.hidden",
            "a..b",
            "ünï/🔑",
            "a b",
            "%2F",
            "~tilde",
            "x.tmp",
            "updraft-tmp/x",
        ] {
            check_name(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        check_name(&"x".repeat(MAX_NAME_BYTES)).expect("a name of exactly the limit");
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        for (name, needle) in [
            ("", "empty"),
            ("a\0b", "control"),
            ("a\nb", "control"),
            ("a\u{7f}", "control"),
            ("/etc/passwd", "leading `/`"),
            ("a\\b", "`\\`"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("./a", "`.` segment"),
            ("a/../../x", "`..` segment"),
            ("..", "`..` segment"),
            (".updraft-tmp/x", "reserved"),
            ("a/.updraft", "reserved"),
        ] {
            let err = check_name(name).expect_err(name);
            let text = err.to_string();
            assert!(text.contains(needle), "{name:?}: {text}");
            assert!(text.starts_with("object name `"), "{text}");
        }
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let text = check_name(&long).expect_err("long").to_string();
        assert!(text.contains("1025 bytes"), "{text}");
        assert!(text.len() < 400, "the name is cut in the message: {text}");
    }

    #[test]
    fn hidden_names() {
        assert!(is_hidden(".env"));
        assert!(is_hidden("a/.git/config"));
        assert!(!is_hidden("a/b.c"));
        assert!(!is_hidden("a..b"));
    }
}
