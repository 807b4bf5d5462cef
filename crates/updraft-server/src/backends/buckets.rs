//! Bucket backends: a local folder (`type = "fs"`, the default) and S3-compatible storage
//! (`type = "s3"`).

use std::sync::Arc;

use serde::Deserialize;
use updraft_manifest::{BucketDecl, LoadedManifest};
use updraft_store::blob::BlobStore;
use updraft_store::fs::FsBlobStore;
use updraft_store::s3::{S3BlobStore, S3Config};

use super::LabelBackend;
use super::sqlite::NoConfig;

/// `[bucket.<label>] type = "fs"`: the manifest's `path`, or `.updraft/buckets/<label>`.
pub struct FolderBucket;

impl LabelBackend for FolderBucket {
    const TYPE: &'static str = "fs";
    type Decl = BucketDecl;
    type Store = dyn BlobStore;
    type Config = NoConfig;

    async fn open(
        label: &str,
        decl: &BucketDecl,
        _config: NoConfig,
        app: &LoadedManifest,
    ) -> anyhow::Result<Arc<dyn BlobStore>> {
        let path = match &decl.path {
            Some(p) => app.resolve(p),
            None => app.state_dir().join("buckets").join(label),
        };
        let mut store = FsBlobStore::open(path.clone()).map_err(|e| {
            anyhow::anyhow!(
                "bucket `{label}`: cannot open the folder `{}`: {e}",
                path.display()
            )
        })?;
        if let Some(max) = decl.max_object_size {
            store = store.with_max_object_bytes(max.0);
        }
        Ok(Arc::new(store))
    }
}

/// `[bucket.<label>] type = "s3"`: keys from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
pub struct S3Bucket;

/// The keys of `[bucket.<label>] type = "s3"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Table {
    /// `http(s)://host:port` of an S3-compatible server; none for AWS.
    #[serde(default)]
    endpoint: Option<String>,
    /// Default `us-east-1`.
    #[serde(default)]
    region: Option<String>,
    /// The S3 bucket.
    bucket: String,
    /// A key prefix the objects live under.
    #[serde(default)]
    prefix: Option<String>,
}

impl LabelBackend for S3Bucket {
    const TYPE: &'static str = "s3";
    type Decl = BucketDecl;
    type Store = dyn BlobStore;
    type Config = S3Table;

    async fn open(
        label: &str,
        decl: &BucketDecl,
        config: S3Table,
        _app: &LoadedManifest,
    ) -> anyhow::Result<Arc<dyn BlobStore>> {
        let allow_http = config
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        let s3 = S3Config {
            endpoint: config.endpoint,
            region: config.region.unwrap_or_else(|| "us-east-1".to_owned()),
            bucket: config.bucket,
            prefix: config.prefix,
            allow_http,
        };
        let mut store =
            S3BlobStore::open(&s3).map_err(|e| anyhow::anyhow!("bucket `{label}`: {e}"))?;
        if let Some(max) = decl.max_object_size {
            store = store.with_max_object_bytes(max.0);
        }
        Ok(Arc::new(store))
    }
}
