//! A bucket that is a plain local folder ([`FsBlobStore`]): the object `a/b.csv` is the file
//! `ROOT/a/b.csv`, so other programs can drop files in and read them out.
//!
//! * **Puts** stream into `ROOT/.updraft-tmp/<uuid>`, fsync it, then rename it into place
//!   (creating folders) and fsync the folder: readers see the old file or the new one, never
//!   part of one, and a failed, oversized or dropped put leaves nothing behind. Leftovers of
//!   a crash are swept from `.updraft-tmp` when a store is opened (those over an hour old).
//! * **Conditional puts**: `IfNoneMatch` links the finished file into place (`link(2)` fails
//!   when the name exists), which is race-free even against other processes. `IfMatch`
//!   compares the etag and renames under a per-store lock: race-free against every put and
//!   delete of this store, but not against another process writing the folder between the
//!   check and the rename.
//! * **Etag**: `{inode:x}-{mtime_ns:x}-{size:x}`, as `object_store`'s `LocalFileSystem`:
//!   cheap, and it changes on every rewrite (each put is a new inode).
//! * **Content type**: a folder cannot keep one, so it is derived from the name's extension
//!   (`mime_guess`); [`PutOptions::content_type`] is not kept. Unknown extensions have none.
//! * **Listing** walks the folder in name order, stopping after the page: regular files only.
//!   Hidden entries (a name starting with `.`, so `.updraft-tmp` too), symbolic links,
//!   sockets and the like are skipped, as are files whose path is not a valid object name.
//! * **Symbolic links are never followed**: a name that runs through or ends at a link
//!   reads as absent, and a put through one is refused, so nothing outside the folder is read
//!   or written. (Another program swapping a folder for a link while a put is between its
//!   check and its rename is not covered.)
//! * **Delete** removes the file and leaves its folders: a folder other programs drop files
//!   into (`incoming/`) stays there after its last file is handled and moved away. Empty
//!   folders hold no objects, so listings are as on S3.

use std::io::SeekFrom;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::blob::{
    BlobError, BlobStore, ByteStream, DEFAULT_MAX_OBJECT_BYTES, ObjectMeta, ObjectPage,
    PutCondition, PutOptions, check_name, check_prefix,
};

/// The folder under the root where puts are written before they are renamed into place.
pub const TMP_DIR: &str = ".updraft-tmp";
/// Most objects one listing page returns.
pub const MAX_LIST_LIMIT: u32 = 1000;
/// Bytes read from a file per chunk of a get.
const READ_CHUNK: usize = 64 * 1024;
/// Temporary files older than this are a crashed put's and are swept at open.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// A bucket in a local folder. See the module doc.
#[derive(Debug)]
pub struct FsBlobStore {
    root: PathBuf,
    max_object_bytes: u64,
    /// Held around every check-and-rename and delete, so conditions hold within the process.
    commit: Arc<tokio::sync::Mutex<()>>,
}

impl FsBlobStore {
    /// Opens (creating it if need be) the bucket folder `root`.
    pub fn open(root: PathBuf) -> Result<Self, BlobError> {
        std::fs::create_dir_all(&root)
            .map_err(|e| io_error(&format!("create the bucket folder {}", root.display()), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| io_error(&format!("open the bucket folder {}", root.display()), e))?;
        sweep_stale_tmp(&root.join(TMP_DIR));
        Ok(Self {
            root,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            commit: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Sets the largest object a put stores (default 5 GiB).
    #[must_use]
    pub fn with_max_object_bytes(mut self, limit: u64) -> Self {
        self.max_object_bytes = limit;
        self
    }

    /// The bucket folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn blocking<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&Path) -> Result<T, BlobError> + Send + 'static,
    ) -> Result<T, BlobError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| BlobError::backend(format!("{what}: the file task failed: {e}")))?
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    async fn head(&self, name: &str) -> Result<Option<ObjectMeta>, BlobError> {
        check_name(name)?;
        let owned = name.to_owned();
        self.blocking(name, move |root| {
            Ok(open_object(root, &owned)?.map(|(_, meta)| meta))
        })
        .await
    }

    async fn get(
        &self,
        name: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<(ObjectMeta, ByteStream)>, BlobError> {
        check_name(name)?;
        let owned = name.to_owned();
        let Some((file, meta)) = self
            .blocking(name, move |root| open_object(root, &owned))
            .await?
        else {
            return Ok(None);
        };
        let (start, end) = match range {
            Some(r) => {
                let start = r.start.min(meta.size);
                (start, r.end.min(meta.size).max(start))
            }
            None => (0, meta.size),
        };
        let mut file = tokio::fs::File::from_std(file);
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(|e| io_error(&format!("read object `{name}`"), e))?;
        }
        let stream = read_stream(name.to_owned(), file, end.saturating_sub(start));
        Ok(Some((meta, stream)))
    }

    async fn put(
        &self,
        name: &str,
        mut body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta, BlobError> {
        check_name(name)?;
        let context = format!("write object `{name}`");
        let tmp_dir = self.root.join(TMP_DIR);
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .map_err(|e| io_error(&context, e))?;
        let tmp = TempFile(tmp_dir.join(uuid::Uuid::now_v7().to_string()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp.0)
            .await
            .map_err(|e| io_error(&context, e))?;
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            size = size.saturating_add(chunk.len() as u64);
            if size > self.max_object_bytes {
                return Err(BlobError::TooLarge {
                    name: name.to_owned(),
                    limit: self.max_object_bytes,
                });
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| io_error(&context, e))?;
        }
        file.flush().await.map_err(|e| io_error(&context, e))?;
        file.sync_all().await.map_err(|e| io_error(&context, e))?;
        let file = file.into_std().await;
        // Owned, so that a put dropped while its commit runs still holds the lock until the
        // commit is done.
        let lock = self.commit.clone().lock_owned().await;
        let owned = name.to_owned();
        self.blocking(name, move |root| {
            let _lock = lock;
            commit(root, &owned, tmp, &file, &opts.condition)
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<bool, BlobError> {
        check_name(name)?;
        let lock = self.commit.clone().lock_owned().await;
        let owned = name.to_owned();
        self.blocking(name, move |root| {
            let _lock = lock;
            remove(root, &owned)
        })
        .await
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
        let prefix = prefix.to_owned();
        let after = cursor.map(str::to_owned);
        let mut objects = self
            .blocking("list the bucket", move |root| {
                let mut walk = Walk {
                    prefix: &prefix,
                    after: after.as_deref(),
                    want: limit + 1,
                    out: Vec::new(),
                };
                walk.dir(root, "")?;
                Ok(walk.out)
            })
            .await?;
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

/// A temporary file, removed when dropped unless it was renamed away.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        // Gone already after a rename: nothing to do.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The metadata of `file` (already opened without following links) as the object `name`.
fn object_meta(name: &str, m: &std::fs::Metadata) -> ObjectMeta {
    let mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    ObjectMeta {
        name: name.to_owned(),
        size: m.len(),
        etag: format!("{:x}-{:x}-{:x}", m.ino(), mtime_ns.max(0), m.len()),
        content_type: content_type(name),
        modified_us: i64::try_from(mtime_ns / 1000).unwrap_or(i64::MAX),
    }
}

/// The media type of `name`, from its extension.
pub fn content_type(name: &str) -> Option<String> {
    mime_guess::from_path(name).first_raw().map(str::to_owned)
}

/// Whether every folder above `name` exists and is a real folder (not a link, not a file),
/// checked without following a link.
fn parents_ready(root: &Path, name: &str) -> Result<bool, BlobError> {
    let mut dir = root.to_path_buf();
    let segments: Vec<&str> = name.split('/').collect();
    for segment in segments.iter().take(segments.len().saturating_sub(1)) {
        dir.push(segment);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(&format!("look up object `{name}`"), e)),
        }
    }
    Ok(true)
}

/// Opens the object `name` for reading: `None` if it is absent, a link, or not a file.
fn open_object(root: &Path, name: &str) -> Result<Option<(std::fs::File, ObjectMeta)>, BlobError> {
    if !parents_ready(root, name)? {
        return Ok(None);
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(root.join(name))
    {
        Ok(f) => f,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ELOOP)
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(io_error(&format!("read object `{name}`"), e)),
    };
    let m = file
        .metadata()
        .map_err(|e| io_error(&format!("read object `{name}`"), e))?;
    if !m.is_file() {
        return Ok(None);
    }
    Ok(Some((file, object_meta(name, &m))))
}

/// The bytes of `file` from where it stands, `len` of them, a chunk at a time.
fn read_stream(name: String, file: tokio::fs::File, len: u64) -> ByteStream {
    futures::stream::try_unfold((file, len), move |(mut file, left)| {
        let name = name.clone();
        async move {
            if left == 0 {
                return Ok(None);
            }
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(READ_CHUNK);
            let mut buf = BytesMut::zeroed(n);
            let read = file
                .read(&mut buf)
                .await
                .map_err(|e| io_error(&format!("read object `{name}`"), e))?;
            if read == 0 {
                return Err(BlobError::backend(format!(
                    "object `{name}` became shorter while it was read (another program truncated it); read it again"
                )));
            }
            buf.truncate(read);
            Ok(Some((buf.freeze(), (file, left - read as u64))))
        }
    })
    .boxed()
}

/// Makes the folders above `name`; returns the deepest folder that already existed (whose
/// entry list changed, so it needs an fsync).
fn make_parents(root: &Path, name: &str) -> Result<PathBuf, BlobError> {
    let context = format!("write object `{name}`");
    let segments: Vec<&str> = name.split('/').collect();
    let mut dir = root.to_path_buf();
    let mut existed = root.to_path_buf();
    for (i, segment) in segments.iter().take(segments.len() - 1).enumerate() {
        dir.push(segment);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let m = std::fs::symlink_metadata(&dir).map_err(|e| io_error(&context, e))?;
                if !m.is_dir() {
                    let shown = segments[..=i].join("/");
                    let what = if m.file_type().is_symlink() {
                        "a symbolic link, which a bucket never follows"
                    } else {
                        "a file, not a folder"
                    };
                    return Err(BlobError::backend(format!(
                        "object `{name}` was not written: `{shown}` in the bucket folder is {what}; remove or rename `{shown}`"
                    )));
                }
                existed.clone_from(&dir);
            }
            Err(e) => return Err(io_error(&context, e)),
        }
    }
    Ok(existed)
}

/// Moves the finished temporary file into place as `name` if `condition` holds.
fn commit(
    root: &Path,
    name: &str,
    tmp: TempFile,
    file: &std::fs::File,
    condition: &PutCondition,
) -> Result<ObjectMeta, BlobError> {
    let context = format!("write object `{name}`");
    let dest = root.join(name);
    let synced_from = make_parents(root, name)?;
    match condition {
        PutCondition::IfNoneMatch => match std::fs::hard_link(&tmp.0, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BlobError::PreconditionFailed {
                    name: name.to_owned(),
                });
            }
            // A file system without hard links: check, then rename, under the store's lock.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM | libc::EOPNOTSUPP | libc::EXDEV)
                ) =>
            {
                match std::fs::symlink_metadata(&dest) {
                    Ok(_) => {
                        return Err(BlobError::PreconditionFailed {
                            name: name.to_owned(),
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&context, e)),
                }
                rename_into(&tmp.0, &dest, name)?;
            }
            Err(e) => return Err(io_error(&context, e)),
        },
        PutCondition::IfMatch(etag) => {
            let current = match std::fs::symlink_metadata(&dest) {
                Ok(m) if m.is_file() => Some(object_meta(name, &m).etag),
                Ok(_) => None,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_error(&context, e)),
            };
            if current.as_ref() != Some(etag) {
                return Err(BlobError::PreconditionFailed {
                    name: name.to_owned(),
                });
            }
            rename_into(&tmp.0, &dest, name)?;
        }
        PutCondition::Always => rename_into(&tmp.0, &dest, name)?,
    }
    // The temporary name is gone (renamed, or unlinked by the guard after a link).
    drop(tmp);
    let parent = dest.parent().unwrap_or(root);
    sync_dir(parent, &context)?;
    // Folders made for this object: their parents' entries changed too.
    let mut dir = parent;
    while dir != synced_from {
        match dir.parent() {
            Some(up) if up.starts_with(root) => {
                sync_dir(up, &context)?;
                dir = up;
            }
            _ => break,
        }
    }
    let m = file.metadata().map_err(|e| io_error(&context, e))?;
    Ok(object_meta(name, &m))
}

fn rename_into(tmp: &Path, dest: &Path, name: &str) -> Result<(), BlobError> {
    std::fs::rename(tmp, dest).map_err(|e| {
        if e.raw_os_error() == Some(libc::EISDIR) || e.raw_os_error() == Some(libc::ENOTEMPTY) {
            BlobError::backend(format!(
                "object `{name}` was not written: the bucket folder has a folder of that name; remove it or pick another name"
            ))
        } else {
            io_error(&format!("write object `{name}`"), e)
        }
    })
}

fn sync_dir(dir: &Path, context: &str) -> Result<(), BlobError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(context, e))
}

/// Removes the object `name` (its folders stay); returns whether it existed.
fn remove(root: &Path, name: &str) -> Result<bool, BlobError> {
    let context = format!("delete object `{name}`");
    if !parents_ready(root, name)? {
        return Ok(false);
    }
    let path = root.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(&context, e)),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(&context, e)),
    }
    sync_dir(path.parent().unwrap_or(root), &context)?;
    Ok(true)
}

/// A listing walk: folders in name order (a folder sorts as its name plus `/`, which is
/// where its objects sort), stopping once `want` objects are found.
struct Walk<'a> {
    prefix: &'a str,
    after: Option<&'a str>,
    want: usize,
    out: Vec<ObjectMeta>,
}

impl Walk<'_> {
    /// Walks `dir`, whose objects' names start with `rel` (`""` or `a/b/`).
    fn dir(&mut self, dir: &Path, rel: &str) -> Result<(), BlobError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            // Removed while we walk: it has nothing to list.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("list the bucket", e)),
        };
        let mut keys: Vec<(String, bool, std::fs::DirEntry)> = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("list the bucket", e)),
            };
            let Ok(file_name) = entry.file_name().into_string() else {
                continue; // not UTF-8: no object name can reach it
            };
            if file_name.starts_with('.') {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                keys.push((format!("{rel}{file_name}/"), true, entry));
            } else if kind.is_file() {
                keys.push((format!("{rel}{file_name}"), false, entry));
            }
        }
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, is_dir, entry) in keys {
            if self.out.len() >= self.want {
                return Ok(());
            }
            if is_dir {
                let under_prefix = key.starts_with(self.prefix) || self.prefix.starts_with(&key);
                let before_cursor = self
                    .after
                    .is_some_and(|a| key.as_str() < a && !a.starts_with(&key));
                if under_prefix && !before_cursor && key.len() < crate::blob::MAX_NAME_BYTES {
                    self.dir(&entry.path(), &key)?;
                }
                continue;
            }
            if !key.starts_with(self.prefix) || self.after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            if check_name(&key).is_err() {
                continue;
            }
            let m = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("list the bucket", e)),
            };
            self.out.push(object_meta(&key, &m));
        }
        Ok(())
    }
}

/// Removes temporary files left by crashed puts (best effort: a put of another process on
/// the same folder may be writing a newer one).
fn sweep_stale_tmp(tmp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_TMP);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn io_error(context: &str, e: std::io::Error) -> BlobError {
    BlobError::backend(format!("{context}: {e}"))
}
