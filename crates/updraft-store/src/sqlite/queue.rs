//! `QueueStore` on the platform state file.
//!
//! Enqueues and dead letters are on disk when they return. Leases, extends, acks, retries
//! and releases commit without waiting for the disk ([`Db::write_unsynced`]): a process
//! that is killed keeps them, and the machine losing power can only undo some, which
//! delivers those messages again (at least once, as ever) with an attempt uncounted.

use async_trait::async_trait;
use rusqlite::{Connection, Row, params};

use super::Db;
use crate::StoreError;
use crate::queue::{DeadLetter, Event, Leased, NewMessage, QueueDepth, QueueStore};

pub(crate) const SCHEMA: &str = "
CREATE TABLE queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    ce_id TEXT NOT NULL,
    ce_source TEXT NOT NULL,
    ce_type TEXT NOT NULL,
    ce_subject TEXT,
    ce_time TEXT,
    ce_datacontenttype TEXT,
    ce_extensions TEXT NOT NULL,
    data BLOB NOT NULL,
    enqueued_us INTEGER NOT NULL,
    available_us INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_token TEXT,
    dead_us INTEGER,
    last_error TEXT
);
CREATE INDEX queue_ready ON queue_messages (queue, dead_us, available_us, seq);
CREATE TABLE queue_dedup (
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_us INTEGER NOT NULL,
    PRIMARY KEY (queue, key)
) WITHOUT ROWID;
";

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Queues in a SQLite file opened with [`super::state::open`].
#[derive(Clone)]
pub struct SqliteQueues {
    db: Db,
}

impl SqliteQueues {
    /// Queues in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

pub(crate) const EVENT_COLUMNS: &str =
    "ce_id, ce_source, ce_type, ce_subject, ce_time, ce_datacontenttype, ce_extensions, data";

/// Reads the event from columns `at..at+8`.
pub(crate) fn event_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Event> {
    let extensions: String = r.get(at + 6)?;
    Ok(Event {
        id: r.get(at)?,
        source: r.get(at + 1)?,
        ty: r.get(at + 2)?,
        subject: r.get(at + 3)?,
        time: r.get(at + 4)?,
        datacontenttype: r.get(at + 5)?,
        extensions: serde_json::from_str(&extensions).unwrap_or_default(),
        data: r.get(at + 7)?,
    })
}

pub(crate) fn insert(
    conn: &Connection,
    queue: &str,
    m: &NewMessage,
    now_us: i64,
) -> Result<(), StoreError> {
    let e = &m.event;
    let extensions =
        serde_json::to_string(&e.extensions).map_err(|e| StoreError::Backend(e.to_string()))?;
    conn.prepare_cached(&format!(
        "INSERT INTO queue_messages (queue, id, {EVENT_COLUMNS}, enqueued_us, available_us)
         VALUES (?1, lower(hex(randomblob(16))), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            queue,
            e.id,
            e.source,
            e.ty,
            e.subject,
            e.time,
            e.datacontenttype,
            extensions,
            e.data,
            now_us,
            m.available_us
        ])
    })
    .map(drop)
    .map_err(backend)
}

/// Runs `sql` with `(queue, id, token, …)` and says whether a leased row matched.
/// Stores `messages` on `queue` inside the caller's transaction (a key seen within the
/// dedup window stores nothing); how many were stored.
pub(crate) fn enqueue_in(
    c: &Connection,
    queue: &str,
    messages: &[NewMessage],
    dedup_window_us: i64,
    now_us: i64,
) -> Result<u32, StoreError> {
    let mut stored = 0;
    for m in messages {
        if let Some(key) = &m.idempotency_key {
            // A key is taken while its entry has not expired.
            let taken = c
                .prepare_cached(
                    "INSERT INTO queue_dedup (queue, key, expires_us) VALUES (?1, ?2, ?3)
                     ON CONFLICT (queue, key) DO UPDATE SET expires_us = excluded.expires_us
                     WHERE queue_dedup.expires_us <= ?4",
                )
                .and_then(|mut s| s.execute(params![queue, key, now_us + dedup_window_us, now_us]))
                .map_err(backend)?
                == 0;
            if taken {
                continue;
            }
        }
        insert(c, queue, m, now_us)?;
        stored += 1;
    }
    Ok(stored)
}

/// Whether `queue` holds a message that is ready or waiting (leased ones included).
pub(crate) fn holds_live(c: &Connection, queue: &str) -> Result<bool, StoreError> {
    c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM queue_messages WHERE queue = ?1 AND dead_us IS NULL)",
    )
    .and_then(|mut s| s.query_row([queue], |r| r.get(0)))
    .map_err(backend)
}

fn update_leased(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<bool, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .map(|n| n == 1)
        .map_err(backend)
}

/// Leases the oldest deliverable messages of `?1` at `?2`, until `?3`, at most `?4`.
///
/// The outer statement picks rows by `seq` (the rowid): with `queue = ?1` there, SQLite
/// walked the queue's whole index on every lease, O(backlog) per call.
fn lease_sql() -> String {
    format!(
        "UPDATE queue_messages
         SET lease_token = lower(hex(randomblob(8))), available_us = ?3, attempts = attempts + 1
         WHERE seq IN (
             SELECT seq FROM queue_messages
             WHERE queue = ?1 AND dead_us IS NULL AND available_us <= ?2
             ORDER BY available_us, seq LIMIT ?4)
         RETURNING seq, id, attempts, lease_token, enqueued_us, {EVENT_COLUMNS}"
    )
}

#[async_trait]
impl QueueStore for SqliteQueues {
    async fn enqueue(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        dedup_window_us: i64,
        now_us: i64,
    ) -> Result<u32, StoreError> {
        let queue = queue.to_owned();
        self.db
            .write(move |c| enqueue_in(c, &queue, &messages, dedup_window_us, now_us))
            .await
    }

    async fn lease(
        &self,
        queue: &str,
        max: u32,
        lease_us: i64,
        now_us: i64,
    ) -> Result<Vec<Leased>, StoreError> {
        let queue = queue.to_owned();
        self.db
            .write_unsynced(move |c| {
                let sql = lease_sql();
                let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(params![queue, now_us, now_us + lease_us, max], |r| {
                        let seq: i64 = r.get(0)?;
                        Ok((
                            seq,
                            Leased {
                                id: r.get(1)?,
                                attempts: r.get(2)?,
                                token: r.get(3)?,
                                enqueued_us: r.get(4)?,
                                event: event_at(r, 5)?,
                            },
                        ))
                    })
                    .map_err(backend)?;
                // RETURNING comes in no particular order: hand them out oldest first.
                let mut leased = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
                leased.sort_by_key(|(seq, _)| *seq);
                Ok(leased.into_iter().map(|(_, l)| l).collect())
            })
            .await
    }

    async fn extend(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        until_us: i64,
    ) -> Result<bool, StoreError> {
        let (queue, id, token) = (queue.to_owned(), id.to_owned(), token.to_owned());
        self.db
            .write_unsynced(move |c| {
                update_leased(
                    c,
                    "UPDATE queue_messages SET available_us = ?4 WHERE queue = ?1 AND id = ?2 AND lease_token = ?3 AND dead_us IS NULL",
                    &[&queue, &id, &token, &until_us],
                )
            })
            .await
    }

    async fn ack(&self, queue: &str, id: &str, token: &str) -> Result<bool, StoreError> {
        let (queue, id, token) = (queue.to_owned(), id.to_owned(), token.to_owned());
        self.db
            .write_unsynced(move |c| {
                update_leased(
                    c,
                    "DELETE FROM queue_messages WHERE queue = ?1 AND id = ?2 AND lease_token = ?3 AND dead_us IS NULL",
                    &[&queue, &id, &token],
                )
            })
            .await
    }

    async fn retry(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        at_us: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let (queue, id, token, error) = (
            queue.to_owned(),
            id.to_owned(),
            token.to_owned(),
            error.to_owned(),
        );
        self.db
            .write_unsynced(move |c| {
                update_leased(
                    c,
                    "UPDATE queue_messages SET available_us = ?4, lease_token = NULL, last_error = ?5
                     WHERE queue = ?1 AND id = ?2 AND lease_token = ?3 AND dead_us IS NULL",
                    &[&queue, &id, &token, &at_us, &error],
                )
            })
            .await
    }

    async fn release(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        at_us: i64,
    ) -> Result<bool, StoreError> {
        let (queue, id, token) = (queue.to_owned(), id.to_owned(), token.to_owned());
        self.db
            .write_unsynced(move |c| {
                update_leased(
                    c,
                    "UPDATE queue_messages SET available_us = ?4, lease_token = NULL, attempts = max(attempts - 1, 0)
                     WHERE queue = ?1 AND id = ?2 AND lease_token = ?3 AND dead_us IS NULL",
                    &[&queue, &id, &token, &at_us],
                )
            })
            .await
    }

    async fn dead_letter(
        &self,
        queue: &str,
        id: &str,
        token: &str,
        error: &str,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let (queue, id, token, error) = (
            queue.to_owned(),
            id.to_owned(),
            token.to_owned(),
            error.to_owned(),
        );
        self.db
            .write(move |c| {
                update_leased(
                    c,
                    "UPDATE queue_messages SET dead_us = ?4, lease_token = NULL, last_error = ?5
                     WHERE queue = ?1 AND id = ?2 AND lease_token = ?3 AND dead_us IS NULL",
                    &[&queue, &id, &token, &now_us, &error],
                )
            })
            .await
    }

    async fn depth(&self, queue: &str, now_us: i64) -> Result<QueueDepth, StoreError> {
        let queue = queue.to_owned();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT
                        coalesce(sum(dead_us IS NULL AND available_us <= ?2), 0),
                        coalesce(sum(dead_us IS NULL AND available_us > ?2), 0),
                        coalesce(sum(dead_us IS NOT NULL), 0),
                        coalesce(sum(dead_us IS NULL AND available_us > ?2 AND lease_token IS NOT NULL), 0),
                        min(CASE WHEN dead_us IS NULL THEN enqueued_us END)
                     FROM queue_messages WHERE queue = ?1",
                    params![queue, now_us],
                    |r| {
                        Ok(QueueDepth {
                            ready: r.get::<_, i64>(0)? as u64,
                            waiting: r.get::<_, i64>(1)? as u64,
                            dead: r.get::<_, i64>(2)? as u64,
                            in_flight: r.get::<_, i64>(3)? as u64,
                            oldest_us: r.get(4)?,
                        })
                    },
                )
                .map_err(backend)
            })
            .await
    }

    async fn dead_letters(&self, queue: &str, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let queue = queue.to_owned();
        self.db
            .read(move |c| {
                let sql = format!(
                    "SELECT id, attempts, last_error, dead_us, {EVENT_COLUMNS} FROM queue_messages
                     WHERE queue = ?1 AND dead_us IS NOT NULL ORDER BY dead_us, seq LIMIT ?2"
                );
                let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(params![queue, limit], |r| {
                        Ok(DeadLetter {
                            id: r.get(0)?,
                            attempts: r.get(1)?,
                            last_error: r.get(2)?,
                            dead_us: r.get(3)?,
                            event: event_at(r, 4)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }

    async fn prune(&self, now_us: i64, dead_letter_retention_us: i64) -> Result<u64, StoreError> {
        let keys = super::delete_in_batches(
            &self.db,
            "DELETE FROM queue_dedup WHERE (queue, key) IN (
                 SELECT queue, key FROM queue_dedup WHERE expires_us < ?1 LIMIT ?2)",
            now_us,
        )
        .await?;
        let dead = super::delete_in_batches(
            &self.db,
            "DELETE FROM queue_messages WHERE seq IN (
                 SELECT seq FROM queue_messages WHERE dead_us < ?1 LIMIT ?2)",
            now_us.saturating_sub(dead_letter_retention_us),
        )
        .await?;
        Ok(keys + dead)
    }

    async fn delete_dead(&self, queue: &str, ids: Option<Vec<String>>) -> Result<u32, StoreError> {
        let queue = queue.to_owned();
        self.db
            .write(move |c| {
                let sql = "DELETE FROM queue_messages
                           WHERE queue = ?1 AND dead_us IS NOT NULL AND (?2 IS NULL OR id = ?2)";
                let n = match &ids {
                    None => c
                        .execute(sql, params![queue, None::<String>])
                        .map_err(backend)?,
                    Some(ids) => {
                        let mut n = 0;
                        for id in ids {
                            n += c.execute(sql, params![queue, id]).map_err(backend)?;
                        }
                        n
                    }
                };
                Ok(n as u32)
            })
            .await
    }

    async fn redrive(
        &self,
        queue: &str,
        ids: Option<Vec<String>>,
        now_us: i64,
    ) -> Result<u32, StoreError> {
        let queue = queue.to_owned();
        self.db
            .write(move |c| {
                let sql =
                    "UPDATE queue_messages SET dead_us = NULL, attempts = 0, available_us = ?2
                           WHERE queue = ?1 AND dead_us IS NOT NULL AND (?3 IS NULL OR id = ?3)";
                let n = match &ids {
                    None => c
                        .execute(sql, params![queue, now_us, None::<String>])
                        .map_err(backend)?,
                    Some(ids) => {
                        let mut n = 0;
                        for id in ids {
                            n += c
                                .execute(sql, params![queue, now_us, id])
                                .map_err(backend)?;
                        }
                        n
                    }
                };
                Ok(n as u32)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_queues_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::sqlite::state::open(&dir.path().join("state.db")).unwrap();
        crate::conformance::queue::run(Arc::new(SqliteQueues::new(db))).await;
    }

    #[test]
    fn a_lease_looks_up_only_the_rows_it_takes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(crate::sqlite::state::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {}", lease_sql()))
            .unwrap()
            .query_map(params!["q", 1, 2, 3], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan[0].contains("INTEGER PRIMARY KEY"),
            "the leased rows are found by rowid, not by walking the queue: {plan:?}"
        );
    }

    #[tokio::test]
    async fn prune_forgets_expired_keys_and_old_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::sqlite::state::open(&dir.path().join("state.db")).unwrap();
        let q = SqliteQueues::new(db);
        let message = |key: &str| NewMessage {
            event: Event {
                id: key.into(),
                source: "/t".into(),
                ty: "t".into(),
                ..Event::default()
            },
            available_us: 0,
            idempotency_key: Some(key.into()),
        };
        assert_eq!(q.enqueue("q", vec![message("k")], 10, 0).await.unwrap(), 1);
        let leased = q.lease("q", 1, 1_000, 0).await.unwrap();
        assert!(
            q.dead_letter("q", &leased[0].id, &leased[0].token, "boom", 5)
                .await
                .unwrap()
        );
        assert_eq!(q.prune(20, 100).await.unwrap(), 1, "only the expired key");
        assert_eq!(q.dead_letters("q", 10).await.unwrap().len(), 1);
        assert_eq!(q.prune(200, 100).await.unwrap(), 1, "now the dead letter");
        assert!(q.dead_letters("q", 10).await.unwrap().is_empty());
        assert_eq!(
            q.enqueue("q", vec![message("k")], 10, 200).await.unwrap(),
            1
        );
    }
}
