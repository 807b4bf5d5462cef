//! The scanner of one file trigger: list, compare with the persisted index, enqueue each
//! finished change once, then record it. See the module doc of [`super`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};
use updraft_runtime::QueueHandle;
use updraft_store::blob::{BlobStore, ObjectMeta, is_hidden};
use updraft_store::writers::{DELETED, Writers};
use updraft_store::{Event, KvStore, NewMessage};

use super::{Change, Existing};

/// The index key that says the first start is done (object names have no control chars).
const INITIALIZED: &str = "\u{1}initialized";
/// Objects per listing page.
const PAGE: u32 = 1000;
/// How long a burst of watch events is gathered before a scan.
const COALESCE: Duration = Duration::from_millis(10);
/// How often unsettled changes are looked at again.
const RECHECK: Duration = Duration::from_millis(200);

/// What a scanner needs to know.
pub(crate) struct Plan {
    pub(crate) bucket_name: String,
    /// The trigger's function: changes it made itself do not fire (the loop guard).
    pub(crate) function: String,
    pub(crate) key: String,
    pub(crate) prefix: String,
    pub(crate) suffix: String,
    pub(crate) events: Vec<Change>,
    pub(crate) existing: Existing,
    pub(crate) settle: Duration,
    pub(crate) poll: Duration,
}

/// What a scanner reports about itself (for `updraft ls` and the admin API).
#[derive(Debug, Default)]
pub(crate) struct Status {
    /// The index is loaded and the bucket watched: changes from now on fire.
    pub(crate) ready: std::sync::atomic::AtomicBool,
    /// Objects in the index.
    pub(crate) indexed: std::sync::atomic::AtomicUsize,
}

/// What the index keeps per object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    etag: String,
    modified_us: i64,
}

impl From<&ObjectMeta> for Entry {
    fn from(m: &ObjectMeta) -> Self {
        Self {
            size: m.size,
            etag: m.etag.clone(),
            modified_us: m.modified_us,
        }
    }
}

/// Names a watch saw closed after writing or renamed into place, and the wake-up.
#[derive(Default)]
struct Closed {
    names: Mutex<HashSet<String>>,
    wake: Notify,
}

impl Closed {
    fn take(&self) -> HashSet<String> {
        self.names
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }
}

/// Runs the scanner until `stop` turns true.
pub(crate) fn spawn(
    plan: Plan,
    bucket: Arc<dyn BlobStore>,
    index: Arc<dyn KvStore>,
    queue: Arc<QueueHandle>,
    status: Arc<Status>,
    writers: Arc<Writers>,
    stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut scanner = Scanner {
            plan,
            bucket,
            index,
            queue,
            status,
            writers,
            known: HashMap::new(),
            pending: HashMap::new(),
        };
        scanner.run(stop).await;
    });
}

struct Scanner {
    plan: Plan,
    bucket: Arc<dyn BlobStore>,
    index: Arc<dyn KvStore>,
    queue: Arc<QueueHandle>,
    status: Arc<Status>,
    writers: Arc<Writers>,
    /// The index, in memory.
    known: HashMap<String, Entry>,
    /// Changes not yet finished: what was seen and since when it has not changed.
    pending: HashMap<String, (Entry, Instant)>,
}

impl Scanner {
    async fn run(&mut self, mut stop: watch::Receiver<bool>) {
        let closed = Arc::new(Closed::default());
        if let Some(root) = self.bucket.local_root() {
            make_drop_folder(root, &self.plan.prefix);
        }
        // Kept alive for as long as the scanner runs.
        let _watcher = self
            .bucket
            .local_root()
            .and_then(|root| watch(root, closed.clone()));
        let mut ready = false;
        while !*stop.borrow() {
            if !ready {
                match self.load(&closed).await {
                    Ok(()) => {
                        ready = true;
                        self.status.ready.store(true, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(
                        "file trigger on bucket `{}`: cannot read its index: {e}; retrying",
                        self.plan.bucket_name
                    ),
                }
            }
            if ready && let Err(e) = self.scan(closed.take()).await {
                tracing::warn!(
                    "file trigger on bucket `{}`: {e}; retrying",
                    self.plan.bucket_name
                );
            }
            self.status
                .indexed
                .store(self.known.len(), Ordering::Relaxed);
            let wait = if self.pending.is_empty() && ready {
                self.plan.poll
            } else {
                RECHECK
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = closed.wake.notified() => tokio::time::sleep(COALESCE).await,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Reads the index; on the very first start, records what `existing = "skip"` skips.
    async fn load(&mut self, closed: &Closed) -> anyhow::Result<()> {
        let mut known = HashMap::new();
        let mut cursor: Option<String> = None;
        let mut initialized = false;
        loop {
            let page = self.index.list("", cursor.as_deref(), PAGE).await?;
            let values = self.index.get_many(&page.keys).await?;
            for (key, value) in page.keys.iter().zip(values) {
                if key == INITIALIZED {
                    initialized = true;
                } else if let Some(entry) = value.and_then(|v| serde_json::from_slice(&v).ok()) {
                    known.insert(key.clone(), entry);
                }
            }
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        self.known = known;
        if !initialized {
            if self.plan.existing == Existing::Skip {
                // What is there now is skipped, but for files the watch saw finish since
                // it began: those are new.
                let finished = closed.names.lock().map(|n| n.clone()).unwrap_or_default();
                for (name, meta) in self
                    .list()
                    .await?
                    .into_iter()
                    .filter(|(name, _)| !finished.contains(name))
                {
                    let entry = Entry::from(&meta);
                    self.index.set(&name, &serde_json::to_vec(&entry)?).await?;
                    self.known.insert(name, entry);
                }
            }
            self.index.set(INITIALIZED, b"1").await?;
        }
        Ok(())
    }

    /// Every object the trigger covers, by name.
    async fn list(&self) -> anyhow::Result<BTreeMap<String, ObjectMeta>> {
        let mut all = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .bucket
                .list(&self.plan.prefix, cursor.as_deref(), PAGE)
                .await?;
            for meta in page.objects {
                if covers(&self.plan, &meta.name) {
                    all.insert(meta.name.clone(), meta);
                }
            }
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(all)
    }

    /// One pass: enqueue every finished change, then record it.
    async fn scan(&mut self, closed: HashSet<String>) -> anyhow::Result<()> {
        let current = self.list().await?;
        let now = Instant::now();
        // A remote object is whole once listed; a file is once closed, or once it has not
        // changed for `settle`.
        let atomic = self.bucket.local_root().is_none();
        let mut changes: Vec<(Change, ObjectMeta)> = Vec::new();
        for (name, meta) in &current {
            let seen = Entry::from(meta);
            let change = match self.known.get(name) {
                Some(known) if known.etag == seen.etag && known.size == seen.size => {
                    self.pending.remove(name);
                    continue;
                }
                Some(_) => Change::Modified,
                None => Change::Created,
            };
            let settled = match self.pending.get(name) {
                Some((last, since)) if *last == seen => {
                    now.duration_since(*since) >= self.plan.settle
                }
                _ => false,
            };
            if atomic || settled || closed.contains(name) {
                self.pending.remove(name);
                changes.push((change, meta.clone()));
            } else if self.pending.get(name).is_none_or(|(last, _)| *last != seen) {
                self.pending.insert(name.clone(), (seen, now));
            }
        }
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|name| !current.contains_key(*name))
            .cloned()
            .collect();
        self.pending.retain(|name, _| current.contains_key(name));
        for name in gone {
            let last = self.known.get(&name).cloned();
            let meta = ObjectMeta {
                name: name.clone(),
                size: last.as_ref().map_or(0, |e| e.size),
                etag: last.as_ref().map_or_else(String::new, |e| e.etag.clone()),
                content_type: None,
                modified_us: last.as_ref().map_or(0, |e| e.modified_us),
            };
            changes.push((Change::Deleted, meta));
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.fire(&changes).await?;
        for (change, meta) in changes {
            if change == Change::Deleted {
                self.index.delete(&meta.name).await?;
                self.known.remove(&meta.name);
            } else {
                let entry = Entry::from(&meta);
                self.index
                    .set(&meta.name, &serde_json::to_vec(&entry)?)
                    .await?;
                self.known.insert(meta.name, entry);
            }
        }
        Ok(())
    }

    /// Enqueues the changes the trigger fires for, durably, before any is recorded.
    async fn fire(&self, changes: &[(Change, ObjectMeta)]) -> anyhow::Result<()> {
        let now = updraft_runtime::now_us();
        let messages: Vec<NewMessage> = changes
            .iter()
            .filter(|(change, _)| self.plan.events.contains(change))
            .filter(|(change, meta)| !self.own(*change, meta))
            .map(|(change, meta)| self.message(*change, meta, now))
            .collect();
        for chunk in messages.chunks(500) {
            self.queue
                .store
                .enqueue(
                    &self.queue.name,
                    chunk.to_vec(),
                    self.queue.dedup_window_us,
                    now,
                )
                .await?;
            self.queue.notify.notify_waiters();
        }
        Ok(())
    }

    /// Whether the trigger's own function made this change (then it does not fire).
    fn own(&self, change: Change, meta: &ObjectMeta) -> bool {
        let etag = match change {
            Change::Deleted => DELETED,
            _ => meta.etag.as_str(),
        };
        self.writers.take_own(
            &self.plan.bucket_name,
            &meta.name,
            etag,
            &self.plan.function,
        )
    }

    fn message(&self, change: Change, meta: &ObjectMeta, now_us: i64) -> NewMessage {
        let id = hex(&Sha256::digest(format!(
            "{}\0{}\0{}\0{}",
            self.plan.key,
            change.event_type(),
            meta.name,
            meta.etag
        )))[..32]
            .to_owned();
        let data = serde_json::json!({
            "bucket": self.plan.bucket_name,
            "name": meta.name,
            "size": meta.size,
            "etag": meta.etag,
            "content_type": meta.content_type,
            "modified": rfc3339(meta.modified_us),
        });
        NewMessage {
            event: Event {
                id: id.clone(),
                source: format!("/buckets/{}", self.plan.bucket_name),
                ty: change.event_type().to_owned(),
                subject: Some(meta.name.clone()),
                time: Some(rfc3339(now_us)),
                datacontenttype: Some("application/json".to_owned()),
                data: data.to_string().into_bytes(),
                extensions: vec![("bucket".to_owned(), self.plan.bucket_name.clone())],
            },
            available_us: now_us,
            idempotency_key: Some(id),
        }
    }
}

/// Whether the trigger covers `name`: its prefix and suffix, and not a temporary or hidden
/// name (`.*`, `*.tmp`, `*.part`, `~*`).
fn covers(plan: &Plan, name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    name.starts_with(&plan.prefix)
        && name.ends_with(&plan.suffix)
        && !is_hidden(name)
        && !base.ends_with(".tmp")
        && !base.ends_with(".part")
        && !base.starts_with('~')
}

/// Creates the folder of a trigger's prefix (`incoming/` of `incoming/orders-`) in a folder
/// bucket, so people and programs can drop files into it from the first start.
fn make_drop_folder(root: &Path, prefix: &str) {
    let Some((folder, _)) = prefix.rsplit_once('/') else {
        return; // the bucket's root: there already
    };
    if updraft_store::blob::check_name(folder).is_err() {
        return; // the prefix was refused when the trigger was checked
    }
    if let Err(e) = std::fs::create_dir_all(root.join(folder)) {
        tracing::warn!(
            "cannot create the folder `{folder}` in `{}`: {e}",
            root.display()
        );
    }
}

/// Watches `root` for files closed after writing or renamed into place; `None` (polling
/// only) when the platform cannot watch it.
fn watch(root: &Path, closed: Arc<Closed>) -> Option<notify::RecommendedWatcher> {
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    use notify::{EventKind, RecursiveMode, Watcher};
    let base = root.to_path_buf();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let finished: &[std::path::PathBuf] = match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => &event.paths,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                event.paths.get(1..).unwrap_or(&[])
            }
            EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Create(_) => &[],
            _ => return,
        };
        if let Ok(mut names) = closed.names.lock() {
            for path in finished {
                if let Some(name) = path
                    .strip_prefix(&base)
                    .ok()
                    .and_then(|p| p.to_str())
                    .map(|p| p.replace(std::path::MAIN_SEPARATOR, "/"))
                {
                    names.insert(name);
                }
            }
        }
        closed.wake.notify_one();
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(
                "cannot watch `{}` ({e}); listing it every poll instead",
                root.display()
            );
            return None;
        }
    };
    if let Err(e) = watcher.watch(root, RecursiveMode::Recursive) {
        tracing::warn!(
            "cannot watch `{}` ({e}); listing it every poll instead",
            root.display()
        );
        return None;
    }
    Some(watcher)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(us: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0));
    humantime::format_rfc3339_micros(t).to_string()
}
