//! One SQLite file: a writer thread that commits queued writes together, and readers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

/// Most writes committed in one transaction.
const MAX_GROUP: usize = 512;
/// Idle reader connections kept open.
const MAX_IDLE_READERS: usize = 4;
/// Writes waiting for the writer thread; more callers wait for room (backpressure)
/// instead of queueing without bound.
const MAX_QUEUED_WRITES: usize = 4_096;

type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A queued write: given the connection inside the group's transaction it runs and returns
/// its completion; given the error that kept the transaction from starting (another program
/// holding the file's write lock past the busy timeout) it fails its caller with it.
type Job = Box<dyn FnOnce(Result<&mut Connection, &StoreError>) -> Option<Completion> + Send>;

/// A queued write and whether its caller waits for it to reach the disk.
struct Queued {
    job: Job,
    synced: bool,
}

/// A SQLite database file shared by async callers.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

/// Runs on every connection a [`Db`] opens (hooks, limits).
pub type ConnectionGuard = fn(&mut Connection) -> rusqlite::Result<()>;

struct Inner {
    path: PathBuf,
    guard: Option<ConnectionGuard>,
    writer: Mutex<Option<mpsc::Sender<Queued>>>,
    readers: Mutex<Vec<Connection>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer thread after it drains.
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn open_connection(
    path: &Path,
    write: bool,
    guard: Option<ConnectionGuard>,
) -> Result<Connection, StoreError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Backend(format!("cannot open `{}`: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(backend)?;
    if write {
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(backend)?;
    }
    // Every acknowledged write survives power loss.
    conn.pragma_update(None, "synchronous", "full")
        .map_err(backend)?;
    conn.pragma_update(None, "foreign_keys", "on")
        .map_err(backend)?;
    let mut conn = conn;
    if let Some(guard) = guard {
        guard(&mut conn).map_err(backend)?;
    }
    Ok(conn)
}

impl Db {
    /// Opens (creating) the file, runs `setup` on the writer connection, and starts the
    /// writer thread.
    pub fn open(
        path: &Path,
        setup: impl FnOnce(&mut Connection) -> rusqlite::Result<()>,
    ) -> Result<Self, StoreError> {
        Self::open_guarded(path, setup, None)
    }

    /// [`Db::open`], with `guard` run on every connection (the writer's and each reader's)
    /// right after it opens.
    pub fn open_guarded(
        path: &Path,
        setup: impl FnOnce(&mut Connection) -> rusqlite::Result<()>,
        guard: Option<ConnectionGuard>,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!("cannot create `{}`: {e}", dir.display()))
            })?;
        }
        let mut conn = open_connection(path, true, guard)?;
        setup(&mut conn).map_err(backend)?;
        let (tx, rx) = mpsc::channel::<Queued>(MAX_QUEUED_WRITES);
        let name = format!(
            "sqlite-writer-{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        std::thread::Builder::new()
            .name(name)
            .spawn(move || writer_loop(conn, rx))
            .map_err(backend)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                guard,
                writer: Mutex::new(Some(tx)),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` inside a write transaction shared with other queued writes. `f`'s changes are
    /// rolled back alone if it fails. Returns once the transaction is durably committed.
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    {
        self.queue_write(f, true).await
    }

    /// [`Db::write`] for bookkeeping whose loss would only repeat work (a lease, an ack):
    /// returns once committed to the file, which survives the process being killed, but
    /// without waiting for the disk, so it may be lost with the machine (power loss, a
    /// kernel crash). Never after a later [`Db::write`]: that one's sync flushes it too.
    pub async fn write_unsynced<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    {
        self.queue_write(f, false).await
    }

    async fn queue_write<R, E, F>(&self, f: F, synced: bool) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn: Result<&mut Connection, &StoreError>| {
            let conn = match conn {
                Ok(conn) => conn,
                Err(e) => {
                    let _ = tx.send(Err(E::from(e.clone())));
                    return None;
                }
            };
            let result = run_in_savepoint(conn, f);
            Some(Box::new(move |commit_error: Option<&StoreError>| {
                let outcome = match (result, commit_error) {
                    (Ok(r), None) => Ok(r),
                    (Ok(_), Some(e)) => Err(E::from(e.clone())),
                    (Err(e), _) => Err(e),
                };
                let _ = tx.send(outcome);
            }) as Completion)
        });
        let sender = self
            .inner
            .writer
            .lock()
            .map_err(backend)?
            .clone()
            .ok_or_else(|| StoreError::Unavailable("database is closed".into()))?;
        sender
            .send(Queued { job, synced })
            .await
            .map_err(|_| StoreError::Unavailable("the writer thread has stopped".into()))?;
        rx.await.map_err(|_| {
            E::from(StoreError::Backend(
                "the writer thread dropped a write".into(),
            ))
        })?
    }

    /// Runs `f` on a read connection (it sees every committed write).
    pub async fn read<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().map_err(backend)?.pop();

            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&inner.path, false, inner.guard)?,
            };
            let result = f(&conn);
            // A connection left inside a transaction would pin an old snapshot: drop it.
            if conn.is_autocommit()
                && let Ok(mut pool) = inner.readers.lock()
                && pool.len() < MAX_IDLE_READERS
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| E::from(backend(e)))?
    }
}

fn run_in_savepoint<R, E: From<StoreError>>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<R, E>,
) -> Result<R, E> {
    let sp = conn.savepoint().map_err(backend)?;
    let r = f(&sp)?;
    sp.commit().map_err(backend)?;
    Ok(r)
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<Queued>) {
    // What the connection's `synchronous` is now (it opens with `full`).
    let mut syncing = true;
    while let Some(first) = rx.blocking_recv() {
        let mut synced = first.synced;
        let mut jobs = vec![first.job];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(queued) => {
                    synced |= queued.synced;
                    jobs.push(queued.job);
                }
                Err(_) => break,
            }
        }
        // A group of bookkeeping alone commits without waiting for the disk (in WAL mode
        // `normal` still writes the commit to the file before it returns); any other write
        // in the group makes it wait, which flushes everything before it too.
        if synced != syncing {
            let level = if synced { "full" } else { "normal" };
            match conn.pragma_update(None, "synchronous", level) {
                Ok(()) => syncing = synced,
                // Left syncing: slower, never less safe.
                Err(e) if !synced => tracing::warn!("cannot set `synchronous = {level}`: {e}"),
                Err(e) => {
                    let e = StoreError::Backend(format!("cannot set `synchronous = full`: {e}"));
                    tracing::error!("{e}");
                    for job in jobs {
                        let _ = job(Err(&e));
                    }
                    continue;
                }
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Each caller's write fails with why; nothing was acknowledged.
            let e = StoreError::Backend(format!(
                "cannot start a write transaction: {e} (another program may hold the database's write lock)"
            ));
            tracing::error!("{e}");
            for job in jobs {
                let _ = job(Err(&e));
            }
            continue;
        }
        let mut completions = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter();
        for job in jobs.by_ref() {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(&mut conn)))) {
                Ok(done) => completions.extend(done),
                Err(_) => tracing::error!("a database write panicked; it is dropped"),
            }
            // An error that makes SQLite roll the whole transaction back (disk full, I/O)
            // leaves us outside it: run nothing more in this group.
            if conn.is_autocommit() {
                tracing::error!(
                    "the write transaction was rolled back by SQLite; failing its group"
                );
                break;
            }
        }
        // Jobs not run are dropped, which fails their callers.
        drop(jobs);
        if conn.is_autocommit() {
            let lost = StoreError::Backend("the write transaction was rolled back".into());
            for done in completions {
                done(Some(&lost));
            }
            continue;
        }
        let commit = conn.execute_batch("COMMIT").map_err(backend);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for done in completions {
            done(commit.as_ref().err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `synchronous` the write runs under: 1 is `normal`, 2 is `full`.
    fn level(c: &Connection) -> Result<i64, StoreError> {
        c.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(backend)
    }

    #[tokio::test]
    async fn bookkeeping_commits_without_a_sync_and_other_writes_with_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), |_| Ok(())).unwrap();
        assert_eq!(db.write(level).await.unwrap(), 2);
        assert_eq!(db.write_unsynced(level).await.unwrap(), 1);
        assert_eq!(db.write_unsynced(level).await.unwrap(), 1);
        assert_eq!(db.write(level).await.unwrap(), 2, "back to syncing");
    }
}
