//! `TopicStore` on the platform state file: the log, and fan-out into subscription queues
//! in the same transaction.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::Db;
use super::queue::{EVENT_COLUMNS, event_at, insert};
use crate::StoreError;
use crate::queue::{Event, NewMessage};
use crate::topic::{LogEntry, ReplayFrom, Subscription, TopicStore};

/// Log entries one replay write fans out.
const REPLAY_PAGE: i64 = 1_000;

pub(crate) const SCHEMA: &str = "
CREATE TABLE topic_log (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    appended_us INTEGER NOT NULL,
    ce_id TEXT NOT NULL,
    ce_source TEXT NOT NULL,
    ce_type TEXT NOT NULL,
    ce_subject TEXT,
    ce_time TEXT,
    ce_datacontenttype TEXT,
    ce_extensions TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX topic_log_by_topic ON topic_log (topic, position);
CREATE INDEX topic_log_by_time ON topic_log (topic, appended_us);
CREATE TABLE topic_dedup (
    topic TEXT NOT NULL,
    ce_source TEXT NOT NULL,
    ce_id TEXT NOT NULL,
    expires_us INTEGER NOT NULL,
    PRIMARY KEY (topic, ce_source, ce_id)
) WITHOUT ROWID;
";

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Topics in a SQLite file opened with [`super::state::open`] (sharing it with the queues
/// their subscriptions deliver through).
#[derive(Clone)]
pub struct SqliteTopics {
    db: Db,
}

impl SqliteTopics {
    /// Topics in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn fan_out(
    conn: &Connection,
    event: &Event,
    subscriptions: &[Subscription],
    now_us: i64,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for s in subscriptions.iter().filter(|s| s.accepts(event)) {
        let message = NewMessage {
            event: event.clone(),
            available_us: now_us,
            idempotency_key: None,
        };
        insert(conn, &s.queue, &message, now_us)?;
        n += 1;
    }
    Ok(n)
}

#[async_trait]
impl TopicStore for SqliteTopics {
    async fn publish(
        &self,
        topic: &str,
        event: Event,
        subscriptions: &[Subscription],
        dedup_window_us: i64,
        now_us: i64,
    ) -> Result<Option<i64>, StoreError> {
        let (topic, subscriptions) = (topic.to_owned(), subscriptions.to_vec());
        self.db
            .write(move |c| {
                let fresh = c
                    .prepare_cached(
                        "INSERT INTO topic_dedup (topic, ce_source, ce_id, expires_us) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (topic, ce_source, ce_id) DO UPDATE SET expires_us = excluded.expires_us
                         WHERE topic_dedup.expires_us <= ?5",
                    )
                    .and_then(|mut s| {
                        s.execute(params![topic, event.source, event.id, now_us + dedup_window_us, now_us])
                    })
                    .map_err(backend)?
                    == 1;
                if !fresh {
                    return Ok(None);
                }
                let extensions = serde_json::to_string(&event.extensions).map_err(|e| StoreError::Backend(e.to_string()))?;
                c.prepare_cached(&format!(
                    "INSERT INTO topic_log (topic, appended_us, {EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        topic,
                        now_us,
                        event.id,
                        event.source,
                        event.ty,
                        event.subject,
                        event.time,
                        event.datacontenttype,
                        extensions,
                        event.data
                    ])
                })
                .map_err(backend)?;
                let position = c.last_insert_rowid();
                fan_out(c, &event, &subscriptions, now_us)?;
                Ok(Some(position))
            })
            .await
    }

    async fn read(&self, topic: &str, after: i64, limit: u32) -> Result<Vec<LogEntry>, StoreError> {
        let topic = topic.to_owned();
        self.db
            .read(move |c| {
                let sql = format!(
                    "SELECT position, appended_us, {EVENT_COLUMNS} FROM topic_log
                     WHERE topic = ?1 AND position > ?2 ORDER BY position LIMIT ?3"
                );
                let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(params![topic, after, limit], |r| {
                        Ok(LogEntry {
                            position: r.get(0)?,
                            appended_us: r.get(1)?,
                            event: event_at(r, 2)?,
                        })
                    })
                    .map_err(backend)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(backend)
            })
            .await
    }

    async fn prune(&self, now_us: i64, log_retention_us: i64) -> Result<u64, StoreError> {
        let entries = super::delete_in_batches(
            &self.db,
            "DELETE FROM topic_log WHERE position IN (
                 SELECT position FROM topic_log WHERE appended_us < ?1 LIMIT ?2)",
            now_us.saturating_sub(log_retention_us),
        )
        .await?;
        let ids = super::delete_in_batches(
            &self.db,
            "DELETE FROM topic_dedup WHERE (topic, ce_source, ce_id) IN (
                 SELECT topic, ce_source, ce_id FROM topic_dedup WHERE expires_us < ?1 LIMIT ?2)",
            now_us,
        )
        .await?;
        Ok(entries + ids)
    }

    async fn replay(
        &self,
        topic: &str,
        subscription: &Subscription,
        from: ReplayFrom,
        now_us: i64,
    ) -> Result<u64, StoreError> {
        // The range to replay: from the first entry at `from` up to the last entry now
        // (later ones are delivered as they are published).
        let name = topic.to_owned();
        let (first, last): (Option<i64>, Option<i64>) = self
            .db
            .read(move |c| {
                let (column, value) = match from {
                    ReplayFrom::Position(p) => ("position", p),
                    ReplayFrom::Time(t) => ("appended_us", t),
                };
                c.query_row(
                    &format!(
                        "SELECT min(position), max(position) FROM topic_log
                         WHERE topic = ?1 AND {column} >= ?2"
                    ),
                    params![name, value],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(backend)
            })
            .await?;
        let (Some(mut cursor), Some(last)) = (first, last) else {
            return Ok(0);
        };
        // A page per write, so publishers and workers are not held up by a long replay.
        let mut total = 0;
        while cursor <= last {
            let (topic, subscription) = (topic.to_owned(), subscription.clone());
            let (n, next) = self
                .db
                .write(move |c| {
                    let sql = format!(
                        "SELECT position, appended_us, {EVENT_COLUMNS} FROM topic_log
                         WHERE topic = ?1 AND position >= ?2 AND position <= ?3
                         ORDER BY position LIMIT ?4"
                    );
                    let mut stmt = c.prepare(&sql).map_err(backend)?;
                    let entries = stmt
                        .query_map(params![topic, cursor, last, REPLAY_PAGE], |r| {
                            Ok((r.get::<_, i64>(0)?, event_at(r, 2)?))
                        })
                        .map_err(backend)?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(backend)?;
                    let mut n = 0;
                    for (_, event) in &entries {
                        n += fan_out(c, event, std::slice::from_ref(&subscription), now_us)?;
                    }
                    let next = entries.last().map_or(last + 1, |(p, _)| p + 1);
                    Ok::<_, StoreError>((n, next))
                })
                .await?;
            total += n;
            cursor = next;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::queue::QueueStore;
    use crate::sqlite::SqliteQueues;

    #[tokio::test]
    async fn replay_pages_through_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::sqlite::state::open(&dir.path().join("state.db")).unwrap();
        let topics = SqliteTopics::new(db.clone());
        let queues = SqliteQueues::new(db);
        let n = REPLAY_PAGE * 2 + 500;
        for i in 0..n {
            let e = Event {
                id: format!("e{i}"),
                source: "/t".into(),
                ty: if i % 2 == 0 { "even" } else { "odd" }.into(),
                ..Event::default()
            };
            topics.publish("t", e, &[], 10, 0).await.unwrap();
        }
        let sub = Subscription {
            queue: "t.s".into(),
            type_filter: Some("even".into()),
            subject_prefix: None,
        };
        let replayed = topics
            .replay("t", &sub, ReplayFrom::Position(11), 0)
            .await
            .unwrap();
        assert_eq!(
            replayed,
            (n as u64 - 10) / 2,
            "the even entries from position 11"
        );
        assert_eq!(queues.depth("t.s", 0).await.unwrap().ready, replayed);
    }

    #[tokio::test]
    async fn prune_drops_old_entries_and_expired_ids() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::sqlite::state::open(&dir.path().join("state.db")).unwrap();
        let topics = SqliteTopics::new(db);
        let event = |id: &str| Event {
            id: id.into(),
            source: "/t".into(),
            ty: "t".into(),
            ..Event::default()
        };
        assert_eq!(
            topics.publish("t", event("a"), &[], 10, 0).await.unwrap(),
            Some(1)
        );
        assert_eq!(
            topics.publish("t", event("b"), &[], 10, 100).await.unwrap(),
            Some(2)
        );
        assert_eq!(
            topics.prune(120, 50).await.unwrap(),
            3,
            "entry a, ids a and b"
        );
        let left = topics.read("t", 0, 10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].event.id, "b");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_topics_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::sqlite::state::open(&dir.path().join("state.db")).unwrap();
        crate::conformance::topic::run(
            Arc::new(SqliteTopics::new(db.clone())),
            Arc::new(SqliteQueues::new(db)),
        )
        .await;
    }
}
