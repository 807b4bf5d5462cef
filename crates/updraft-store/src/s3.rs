//! A bucket on S3-compatible storage ([`S3BlobStore`]), through the `object_store` crate
//! (runtime config `[bucket.<label>] type = "s3"`, DESIGN §9).
//!
//! * **Keys**: the object `a/b.csv` is the key `PREFIX/a/b.csv` (`prefix` from the config,
//!   none by default). Requests are path-style when an endpoint is given (MinIO, moto, …).
//! * **Credentials** come from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
//!   ([`S3Credentials::from_env`]).
//! * **Puts stream**: a body that ends within the first part (8 MiB) is one `PutObject`;
//!   a longer one is a multipart upload of 8 MiB parts, at most two in flight, so a put holds
//!   about 24 MiB whatever the object's size. A multipart upload is only visible once it is
//!   completed; a failed or oversized body aborts it. (A put dropped part-way aborts its upload
//!   in the background; a crash leaves an incomplete upload, invisible, for the bucket's
//!   lifecycle rule to clear.)
//! * **Conditional puts** are `PutObject` with `If-None-Match: *` / `If-Match: <etag>`,
//!   which the server decides atomically. `object_store` sends no condition with a multipart
//!   completion, so a conditional put is buffered and sent as one `PutObject`: its body may be
//!   at most [`DEFAULT_MAX_CONDITIONAL_BYTES`] (see
//!   [`S3BlobStore::with_max_conditional_bytes`]); a larger one is
//!   [`BlobError::TooLarge`] and writes nothing.
//! * **Content type** is kept with the object (the put's, else one derived from the name's
//!   extension) and returned by head and get. S3 listings do not carry it: listed objects
//!   have `content_type: None`.
//! * **Delete** says whether the object existed just before (a `HEAD`, then the `DELETE`).
//! * **Listing** skips hidden names and keys that are not valid object names (written to the
//!   bucket by other tools).
//!
//! HTTP goes through this crate's own transport (hyper, rustls on ring, the system's root
//! certificates; see `transport`), not `object_store`'s reqwest.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutPayload, RetryConfig, UpdateVersion,
    WriteMultipart,
};

mod transport;

use crate::blob::{
    BlobError, BlobStore, ByteStream, DEFAULT_MAX_OBJECT_BYTES, ObjectMeta, ObjectPage,
    PutCondition, PutOptions, check_name, check_prefix, is_hidden,
};

/// Size of one part of a multipart upload (S3 wants at least 5 MiB but for the last).
pub const PART_BYTES: usize = 8 << 20;
/// Parts uploaded at once by one put.
const PARTS_IN_FLIGHT: usize = 2;
/// Largest body of a conditional put unless configured otherwise (it is buffered).
pub const DEFAULT_MAX_CONDITIONAL_BYTES: u64 = 32 << 20;
/// Most objects one listing page returns (S3's own page limit).
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Where the bucket is (runtime config `[bucket.<label>] type = "s3"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible server; `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The region (`us-east-1`; any value for most S3-compatible servers).
    pub region: String,
    /// The S3 bucket.
    pub bucket: String,
    /// A key prefix the objects live under (`apps/shop`), so one S3 bucket can hold several.
    pub prefix: Option<String>,
    /// Whether a plain `http://` endpoint is allowed.
    pub allow_http: bool,
}

/// An access key.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// `AWS_ACCESS_KEY_ID`
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl S3Credentials {
    /// The key in `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    pub fn from_env() -> Result<Self, BlobError> {
        let var = |name: &str| {
            std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                BlobError::backend(format!(
                    "`{name}` is not set; an s3 bucket takes its key from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`"
                ))
            })
        };
        Ok(Self {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
        })
    }
}

/// A bucket on S3-compatible storage. See the module doc.
#[derive(Debug)]
pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    bucket: String,
    /// `""`, or the key prefix ending in `/`.
    prefix: String,
    max_object_bytes: u64,
    max_conditional_bytes: u64,
}

impl S3BlobStore {
    /// A store for `config` with the key from the environment ([`S3Credentials::from_env`]).
    pub fn open(config: &S3Config) -> Result<Self, BlobError> {
        Self::open_with_credentials(config, &S3Credentials::from_env()?)
    }

    /// A store for `config` with `credentials`. Nothing is sent until the first call.
    pub fn open_with_credentials(
        config: &S3Config,
        credentials: &S3Credentials,
    ) -> Result<Self, BlobError> {
        let bucket = config.bucket.clone();
        if bucket.is_empty() {
            return Err(BlobError::backend(
                "an s3 bucket needs `bucket`, the name of the S3 bucket",
            ));
        }
        let prefix = match config.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p) => {
                check_name(p).map_err(|e| {
                    BlobError::backend(format!(
                        "s3 bucket `{bucket}`: `prefix` is not a usable key prefix: {e}"
                    ))
                })?;
                format!("{p}/")
            }
        };
        let mut builder = AmazonS3Builder::new()
            .with_region(&config.region)
            .with_bucket_name(&bucket)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(ClientOptions::new().with_allow_http(config.allow_http))
            .with_http_connector(transport::Transport {
                allow_http: config.allow_http,
                connect_timeout: Duration::from_secs(5),
                response_timeout: Duration::from_secs(60),
                idle_timeout: Duration::from_secs(60),
            })
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| {
            BlobError::backend(format!("s3 bucket `{bucket}`: bad configuration: {e}"))
        })?;
        Ok(Self {
            store: Arc::new(store),
            bucket,
            prefix,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            max_conditional_bytes: DEFAULT_MAX_CONDITIONAL_BYTES,
        })
    }

    /// Sets the largest object a put stores (default 5 GiB).
    #[must_use]
    pub fn with_max_object_bytes(mut self, limit: u64) -> Self {
        self.max_object_bytes = limit;
        self
    }

    /// Sets the largest body of a conditional put, which is buffered (default 32 MiB).
    #[must_use]
    pub fn with_max_conditional_bytes(mut self, limit: u64) -> Self {
        self.max_conditional_bytes = limit;
        self
    }

    fn key(&self, name: &str) -> Result<Path, BlobError> {
        check_name(name)?;
        Path::parse(format!("{}{name}", self.prefix)).map_err(|e| BlobError::InvalidName {
            name: name.to_owned(),
            reason: e.to_string(),
        })
    }

    fn error(&self, name: &str, e: object_store::Error) -> BlobError {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound {
                name: name.to_owned(),
            },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => BlobError::PreconditionFailed {
                name: name.to_owned(),
            },
            other => BlobError::backend(format!(
                "s3 bucket `{}`, object `{name}`: {other}",
                self.bucket
            )),
        }
    }

    fn meta(name: &str, m: &object_store::ObjectMeta, attributes: &Attributes) -> ObjectMeta {
        ObjectMeta {
            name: name.to_owned(),
            size: m.size,
            etag: m.e_tag.clone().unwrap_or_default(),
            content_type: attributes
                .get(&Attribute::ContentType)
                .map(|v| v.as_ref().to_owned()),
            modified_us: m.last_modified.timestamp_micros(),
        }
    }

    /// `HEAD`, optionally only if the etag is `if_match` (`Ok(None)` if it is not).
    async fn head_key(
        &self,
        name: &str,
        key: &Path,
        if_match: Option<String>,
    ) -> Result<Option<ObjectMeta>, BlobError> {
        let opts = GetOptions::new().with_head(true).with_if_match(if_match);
        match self.store.get_opts(key, opts).await {
            Ok(r) => Ok(Some(Self::meta(name, &r.meta, &r.attributes))),
            Err(
                object_store::Error::NotFound { .. } | object_store::Error::Precondition { .. },
            ) => Ok(None),
            Err(e) => Err(self.error(name, e)),
        }
    }

    /// The stored object after a put that returned `e_tag`: its metadata as the server has it
    /// when it is still ours, else what the put itself tells.
    async fn written(
        &self,
        name: &str,
        key: &Path,
        e_tag: Option<String>,
        size: u64,
        content_type: Option<String>,
    ) -> Result<ObjectMeta, BlobError> {
        if let Some(meta) = self.head_key(name, key, e_tag.clone()).await? {
            return Ok(meta);
        }
        // Replaced already by another writer: describe what we wrote.
        let modified_us = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        Ok(ObjectMeta {
            name: name.to_owned(),
            size,
            etag: e_tag.unwrap_or_default(),
            content_type,
            modified_us,
        })
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn head(&self, name: &str) -> Result<Option<ObjectMeta>, BlobError> {
        let key = self.key(name)?;
        self.head_key(name, &key, None).await
    }

    async fn get(
        &self,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<Option<(ObjectMeta, ByteStream)>, BlobError> {
        let key = self.key(name)?;
        let empty = || futures::stream::empty().boxed();
        if let Some(r) = &range
            && r.start >= r.end
        {
            return Ok(self.head_key(name, &key, None).await?.map(|m| (m, empty())));
        }
        let opts = GetOptions::new().with_range(range.clone().map(GetRange::Bounded));
        match self.store.get_opts(&key, opts).await {
            Ok(r) => {
                let meta = Self::meta(name, &r.meta, &r.attributes);
                let bucket = self.bucket.clone();
                let owned = name.to_owned();
                let stream = r
                    .into_stream()
                    .map(move |chunk| {
                        chunk.map_err(|e| {
                            BlobError::backend(format!(
                                "s3 bucket `{bucket}`, object `{owned}`: read failed: {e}"
                            ))
                        })
                    })
                    .boxed();
                Ok(Some((meta, stream)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => {
                // A range starting at or past the end is refused by the server (416): that is
                // no bytes of an object that exists.
                let start = range.as_ref().map_or(0, |r| r.start);
                match self.head_key(name, &key, None).await? {
                    None => Ok(None),
                    Some(meta) if range.is_some() && start >= meta.size => {
                        Ok(Some((meta, empty())))
                    }
                    Some(_) => Err(self.error(name, e)),
                }
            }
        }
    }

    async fn put(
        &self,
        name: &str,
        mut body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta, BlobError> {
        let key = self.key(name)?;
        let content_type = opts
            .content_type
            .clone()
            .or_else(|| crate::fs::content_type(name));
        let mut attributes = Attributes::new();
        if let Some(ct) = &content_type {
            attributes.insert(Attribute::ContentType, ct.clone().into());
        }
        let mode = match opts.condition {
            PutCondition::Always => PutMode::Overwrite,
            PutCondition::IfNoneMatch => PutMode::Create,
            PutCondition::IfMatch(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag),
                version: None,
            }),
        };
        let conditional = mode != PutMode::Overwrite;
        let too_large = |limit: u64| BlobError::TooLarge {
            name: name.to_owned(),
            limit,
        };
        // The first part (or, for a conditional put, all of it), in memory.
        let mut head: Vec<Bytes> = Vec::new();
        let mut size: u64 = 0;
        let mut ended = false;
        while conditional || size < PART_BYTES as u64 {
            let Some(chunk) = body.next().await else {
                ended = true;
                break;
            };
            let chunk = chunk?;
            size = size.saturating_add(chunk.len() as u64);
            if size > self.max_object_bytes {
                return Err(too_large(self.max_object_bytes));
            }
            if conditional && size > self.max_conditional_bytes {
                return Err(too_large(self.max_conditional_bytes));
            }
            head.push(chunk);
        }
        if ended {
            let put = object_store::PutOptions {
                mode,
                attributes,
                ..Default::default()
            };
            let result = self
                .store
                .put_opts(&key, head.into_iter().collect::<PutPayload>(), put)
                .await
                .map_err(|e| self.error(name, e))?;
            return self
                .written(name, &key, result.e_tag, size, content_type)
                .await;
        }
        let upload = self
            .store
            .put_multipart_opts(
                &key,
                PutMultipartOptions {
                    attributes,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.error(name, e))?;
        let mut upload = AbortOnDrop(Some(WriteMultipart::new_with_chunk_size(
            upload, PART_BYTES,
        )));
        let failed: Result<(), PartError> = async {
            for chunk in head {
                upload.put(chunk, PARTS_IN_FLIGHT).await?;
            }
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                size = size.saturating_add(chunk.len() as u64);
                if size > self.max_object_bytes {
                    return Err(PartError::Body(too_large(self.max_object_bytes)));
                }
                upload.put(chunk, PARTS_IN_FLIGHT).await?;
            }
            Ok(())
        }
        .await;
        let Some(upload) = upload.take() else {
            return Err(BlobError::backend(format!(
                "s3 bucket `{}`, object `{name}`: the upload was lost",
                self.bucket
            )));
        };
        let result = match failed {
            Ok(()) => upload.finish().await.map_err(|e| self.error(name, e))?,
            Err(e) => {
                // Best effort: an upload left incomplete is invisible and expires by rule.
                let _ = upload.abort().await;
                return Err(match e {
                    PartError::Body(e) => e,
                    PartError::Store(e) => self.error(name, e),
                });
            }
        };
        self.written(name, &key, result.e_tag, size, content_type)
            .await
    }

    async fn delete(&self, name: &str) -> Result<bool, BlobError> {
        let key = self.key(name)?;
        if self.head_key(name, &key, None).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(&key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(name, e)),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<ObjectPage, BlobError> {
        check_prefix(prefix)?;
        if let Some(c) = cursor {
            check_name(c)?;
        }
        let limit = limit.clamp(1, MAX_LIST_LIMIT) as usize;
        let want = limit + 1;
        let full_prefix = format!("{}{prefix}", self.prefix);
        let offset = cursor.map(|c| format!("{}{c}", self.prefix));
        let mut objects = Vec::new();
        let mut page_token = None;
        'pages: loop {
            let opts = PaginatedListOptions {
                offset: offset.clone(),
                max_keys: Some(want.min(MAX_LIST_LIMIT as usize)),
                page_token: page_token.take(),
                ..Default::default()
            };
            let page = self
                .store
                .list_paginated(
                    (!full_prefix.is_empty()).then_some(full_prefix.as_str()),
                    opts,
                )
                .await
                .map_err(|e| {
                    BlobError::backend(format!(
                        "s3 bucket `{}`: list of `{prefix}` failed: {e}",
                        self.bucket
                    ))
                })?;
            for m in &page.result.objects {
                let Some(name) = m.location.as_ref().strip_prefix(&self.prefix) else {
                    continue;
                };
                if is_hidden(name) || check_name(name).is_err() {
                    continue;
                }
                objects.push(ObjectMeta {
                    name: name.to_owned(),
                    size: m.size,
                    etag: m.e_tag.clone().unwrap_or_default(),
                    content_type: None,
                    modified_us: m.last_modified.timestamp_micros(),
                });
                if objects.len() >= want {
                    break 'pages;
                }
            }
            match page.page_token {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        // Listings are in key order; sort anyway, for servers that do not keep it.
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        let cursor = if objects.len() > limit {
            objects.truncate(limit);
            objects.last().map(|o| o.name.clone())
        } else {
            None
        };
        Ok(ObjectPage { objects, cursor })
    }

    fn max_object_bytes(&self) -> u64 {
        self.max_object_bytes
    }
}

/// Why a multipart body stopped.
enum PartError {
    Body(BlobError),
    Store(object_store::Error),
}

impl From<BlobError> for PartError {
    fn from(e: BlobError) -> Self {
        Self::Body(e)
    }
}

impl From<object_store::Error> for PartError {
    fn from(e: object_store::Error) -> Self {
        Self::Store(e)
    }
}

/// A multipart upload that is aborted (in the background) if it is dropped unfinished.
struct AbortOnDrop(Option<WriteMultipart>);

impl AbortOnDrop {
    /// Adds `chunk`, waiting while `in_flight` parts are being uploaded.
    async fn put(&mut self, chunk: Bytes, in_flight: usize) -> Result<(), PartError> {
        if let Some(w) = self.0.as_mut() {
            w.wait_for_capacity(in_flight).await?;
            w.put(chunk);
        }
        Ok(())
    }

    /// The upload, no longer aborted on drop (`None` only if taken twice).
    fn take(mut self) -> Option<WriteMultipart> {
        self.0.take()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(upload) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}
