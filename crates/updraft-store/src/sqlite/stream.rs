//! `StreamStore` in a SQLite file of its own per stream (`.updraft/streams/<name>.db`),
//! never the platform's `state.db`, so a busy stream never holds up queues and kv.
//!
//! Every partition's log is one range of a single rowid table: a record's rowid is
//! `partition << 40 | offset`, so an append is an insert at the end of its partition's
//! range, a read is a range scan, and no second index is written per event. Appends go
//! through the file's writer thread, which commits concurrent appends together (group
//! commit) with `synchronous=FULL`.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::Db;
use super::queue::{EVENT_COLUMNS, event_at};
use crate::StoreError;
use crate::queue::Event;
use crate::stream::{Checkpoint, PartitionState, StreamDeadLetter, StreamRecord, StreamStore};

/// Bits of a rowid that hold the offset (about 10^12 events per partition).
const OFFSET_BITS: u32 = 40;
/// The largest offset a rowid holds.
const MAX_OFFSET: u64 = (1 << OFFSET_BITS) - 1;
/// Rows one retention write deletes at most.
const PRUNE_BATCH: u64 = 2_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    appended_us INTEGER NOT NULL,
    size INTEGER NOT NULL,
    ce_id TEXT NOT NULL,
    ce_source TEXT NOT NULL,
    ce_type TEXT NOT NULL,
    ce_subject TEXT,
    ce_time TEXT,
    ce_datacontenttype TEXT,
    ce_extensions TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    partition INTEGER PRIMARY KEY,
    first INTEGER NOT NULL,
    next INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next INTEGER NOT NULL,
    PRIMARY KEY (consumer, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    appended_us INTEGER NOT NULL,
    error TEXT NOT NULL,
    dead_us INTEGER NOT NULL,
    ce_id TEXT NOT NULL,
    ce_source TEXT NOT NULL,
    ce_type TEXT NOT NULL,
    ce_subject TEXT,
    ce_time TEXT,
    ce_datacontenttype TEXT,
    ce_extensions TEXT NOT NULL,
    data BLOB NOT NULL
);
";

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn rowid(partition: u32, offset: u64) -> i64 {
    // Offsets stay below 2^40 and partitions below 2^23, so this never reaches the sign bit.
    ((i64::from(partition)) << OFFSET_BITS) | ((offset & MAX_OFFSET) as i64)
}

fn split_rowid(id: i64) -> (u32, u64) {
    (
        u32::try_from(id >> OFFSET_BITS).unwrap_or(0),
        id as u64 & MAX_OFFSET,
    )
}

fn size_of(e: &Event) -> u64 {
    let ext: usize = e.extensions.iter().map(|(k, v)| k.len() + v.len()).sum();
    (e.data.len() + e.id.len() + e.source.len() + e.ty.len() + ext) as u64
}

/// One stream in its own SQLite file.
#[derive(Clone)]
pub struct SqliteStream {
    db: Db,
}

impl SqliteStream {
    /// Opens (creating) the stream file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Db::open(path, |conn| conn.execute_batch(SCHEMA))?;
        Ok(Self { db })
    }
}

/// Every row `sql` returns for `params`, each made by `map`.
fn all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut s = conn.prepare_cached(sql).map_err(backend)?;
    let rows = s.query_map(params, map).map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

fn record_at(r: &rusqlite::Row<'_>) -> rusqlite::Result<StreamRecord> {
    let (partition, offset) = split_rowid(r.get(0)?);
    Ok(StreamRecord {
        partition,
        offset,
        appended_us: r.get(1)?,
        event: event_at(r, 2)?,
    })
}

fn append_in(
    conn: &Connection,
    events: &[(u32, Event)],
    now_us: i64,
) -> Result<Vec<u64>, StoreError> {
    let mut heads: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
    let mut offsets = Vec::with_capacity(events.len());
    let mut insert = conn
        .prepare_cached(&format!(
            "INSERT INTO events (id, appended_us, size, {EVENT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ))
        .map_err(backend)?;
    for (partition, e) in events {
        let head = match heads.get_mut(partition) {
            Some(h) => h,
            None => {
                let next: u64 = conn
                    .prepare_cached("SELECT next FROM partitions WHERE partition = ?1")
                    .and_then(|mut s| s.query_row([partition], |r| r.get::<_, i64>(0)).optional())
                    .map_err(backend)?
                    .map_or(0, |n| n as u64);
                heads.entry(*partition).or_insert((next, 0))
            }
        };
        let offset = head.0;
        let size = size_of(e);
        let extensions = serde_json::to_string(&e.extensions).map_err(backend)?;
        insert
            .execute(params![
                rowid(*partition, offset),
                now_us,
                size as i64,
                e.id,
                e.source,
                e.ty,
                e.subject,
                e.time,
                e.datacontenttype,
                extensions,
                e.data
            ])
            .map_err(backend)?;
        head.0 += 1;
        head.1 += size;
        offsets.push(offset);
    }
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO partitions (partition, first, next, bytes) VALUES (?1, 0, ?2, ?3)
             ON CONFLICT (partition) DO UPDATE SET next = excluded.next, bytes = bytes + excluded.bytes",
        )
        .map_err(backend)?;
    for (partition, (next, bytes)) in heads {
        upsert
            .execute(params![partition, next as i64, bytes as i64])
            .map_err(backend)?;
    }
    Ok(offsets)
}

/// When `partition` holds more than `max_bytes`: the offset before which the oldest events
/// must go to bring it under (at most a batch's worth at a time).
fn over_cap(conn: &Connection, partition: u32, max_bytes: u64) -> Result<Option<u64>, StoreError> {
    let bytes: i64 = conn
        .query_row(
            "SELECT bytes FROM partitions WHERE partition = ?1",
            [partition],
            |r| r.get(0),
        )
        .map_err(backend)?;
    let Some(excess) = (bytes as u64).checked_sub(max_bytes).filter(|e| *e > 0) else {
        return Ok(None);
    };
    let (lo, hi) = (rowid(partition, 0), rowid(partition + 1, 0));
    let found: Option<i64> = conn
        .query_row(
            "SELECT id FROM (SELECT id, sum(size) OVER (ORDER BY id) AS run FROM
               (SELECT id, size FROM events WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?4))
             WHERE run >= ?3 ORDER BY id LIMIT 1",
            params![lo, hi, excess as i64, PRUNE_BATCH as i64],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    let last: Option<i64> = match found {
        Some(id) => Some(id),
        None => conn
            .query_row(
                "SELECT max(id) FROM (SELECT id FROM events WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3)",
                params![lo, hi, PRUNE_BATCH as i64],
                |r| r.get(0),
            )
            .map_err(backend)?,
    };
    Ok(last.map(|id| split_rowid(id).1 + 1))
}

/// Deletes the oldest events of `partition` up to (not including) offset `until`, at most
/// one batch, and moves its `first`; returns how many went.
fn drop_before(conn: &Connection, partition: u32, until: u64) -> Result<u64, StoreError> {
    let (lo, hi) = (rowid(partition, 0), rowid(partition, until));
    let (n, bytes): (i64, i64) = conn
        .query_row(
            "SELECT count(*), coalesce(sum(size), 0) FROM
               (SELECT size FROM events WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3)",
            params![lo, hi, PRUNE_BATCH as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(backend)?;
    if n == 0 {
        return Ok(0);
    }
    let last: i64 = conn
        .query_row(
            "SELECT id FROM events WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT 1 OFFSET ?3",
            params![lo, hi, n - 1],
            |r| r.get(0),
        )
        .map_err(backend)?;
    conn.execute(
        "DELETE FROM events WHERE id >= ?1 AND id <= ?2",
        params![lo, last],
    )
    .map_err(backend)?;
    let first = split_rowid(last).1 + 1;
    conn.execute(
        "UPDATE partitions SET first = max(first, ?2), bytes = max(0, bytes - ?3) WHERE partition = ?1",
        params![partition, first as i64, bytes],
    )
    .map_err(backend)?;
    Ok(n as u64)
}

#[async_trait]
impl StreamStore for SqliteStream {
    async fn append(&self, events: Vec<(u32, Event)>, now_us: i64) -> Result<Vec<u64>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.db
            .write(move |conn| append_in(conn, &events, now_us))
            .await
    }

    async fn read(
        &self,
        partition: u32,
        from: u64,
        max: u32,
    ) -> Result<Vec<StreamRecord>, StoreError> {
        self.db
            .read(move |conn| {
                all(
                    conn,
                    &format!(
                        "SELECT id, appended_us, {EVENT_COLUMNS} FROM events
                         WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3"
                    ),
                    params![
                        rowid(partition, from),
                        rowid(partition + 1, 0),
                        i64::from(max)
                    ],
                    record_at,
                )
            })
            .await
    }

    async fn partitions(&self) -> Result<Vec<PartitionState>, StoreError> {
        self.db
            .read(|conn| {
                all(
                    conn,
                    "SELECT partition, first, next, bytes FROM partitions ORDER BY partition",
                    [],
                    |r| {
                        Ok(PartitionState {
                            partition: r.get(0)?,
                            first: r.get::<_, i64>(1)? as u64,
                            next: r.get::<_, i64>(2)? as u64,
                            bytes: r.get::<_, i64>(3)? as u64,
                        })
                    },
                )
            })
            .await
    }

    async fn offset_at(&self, partition: u32, time_us: i64) -> Result<u64, StoreError> {
        self.db
            .read(move |conn| {
                let found: Option<i64> = conn
                    .query_row(
                        "SELECT id FROM events WHERE id >= ?1 AND id < ?2 AND appended_us >= ?3
                         ORDER BY id LIMIT 1",
                        params![rowid(partition, 0), rowid(partition + 1, 0), time_us],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some(id) = found {
                    return Ok(split_rowid(id).1);
                }
                let next: Option<i64> = conn
                    .query_row(
                        "SELECT next FROM partitions WHERE partition = ?1",
                        [partition],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                Ok(next.map_or(0, |n| n as u64))
            })
            .await
    }

    async fn checkpoint(&self, consumer: &str, partition: u32) -> Result<Option<u64>, StoreError> {
        let consumer = consumer.to_owned();
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT next FROM checkpoints WHERE consumer = ?1 AND partition = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![consumer, partition], |r| r.get::<_, i64>(0))
                        .optional()
                })
                .map(|n| n.map(|n| n as u64))
                .map_err(backend)
            })
            .await
    }

    async fn commit(
        &self,
        consumer: &str,
        partition: u32,
        expected: Option<u64>,
        next: u64,
    ) -> Result<bool, StoreError> {
        let consumer = consumer.to_owned();
        self.db
            .write(move |conn| {
                let changed = match expected {
                    None => conn.execute(
                        "INSERT INTO checkpoints (consumer, partition, next) VALUES (?1, ?2, ?3)
                         ON CONFLICT DO NOTHING",
                        params![consumer, partition, next as i64],
                    ),
                    Some(old) => conn.execute(
                        "UPDATE checkpoints SET next = ?3
                         WHERE consumer = ?1 AND partition = ?2 AND next = ?4",
                        params![consumer, partition, next as i64, old as i64],
                    ),
                }
                .map_err(backend)?;
                Ok(changed == 1)
            })
            .await
    }

    async fn set_checkpoint(
        &self,
        consumer: &str,
        partition: u32,
        next: u64,
    ) -> Result<(), StoreError> {
        let consumer = consumer.to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO checkpoints (consumer, partition, next) VALUES (?1, ?2, ?3)
                     ON CONFLICT (consumer, partition) DO UPDATE SET next = excluded.next",
                    params![consumer, partition, next as i64],
                )
                .map(drop)
                .map_err(backend)
            })
            .await
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.db
            .read(|conn| {
                all(conn, "SELECT consumer, partition, next FROM checkpoints ORDER BY consumer, partition", [], |r| {
                        Ok(Checkpoint {
                            consumer: r.get(0)?,
                            partition: r.get(1)?,
                            next: r.get::<_, i64>(2)? as u64,
                        })
                    })
            })
            .await
    }

    async fn dead_letter(
        &self,
        consumer: &str,
        record: &StreamRecord,
        error: &str,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let (consumer, record, error) = (consumer.to_owned(), record.clone(), error.to_owned());
        self.db
            .write(move |conn| {
                let e = &record.event;
                let extensions = serde_json::to_string(&e.extensions).map_err(backend)?;
                conn.prepare_cached(&format!(
                    "INSERT INTO dead_letters (consumer, partition, offset, appended_us, error, dead_us, {EVENT_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        consumer,
                        record.partition,
                        record.offset as i64,
                        record.appended_us,
                        error,
                        now_us,
                        e.id,
                        e.source,
                        e.ty,
                        e.subject,
                        e.time,
                        e.datacontenttype,
                        extensions,
                        e.data
                    ])
                })
                .map(drop)
                .map_err(backend)
            })
            .await
    }

    async fn dead_letters(
        &self,
        consumer: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StreamDeadLetter>, StoreError> {
        let consumer = consumer.map(str::to_owned);
        self.db
            .read(move |conn| {
                all(conn, &format!(
                        "SELECT consumer, partition, offset, appended_us, error, dead_us, {EVENT_COLUMNS}
                         FROM dead_letters WHERE ?1 IS NULL OR consumer = ?1
                         ORDER BY seq DESC LIMIT ?2"
                    ), params![consumer, i64::from(limit)], |r| {
                        Ok(StreamDeadLetter {
                            consumer: r.get(0)?,
                            record: StreamRecord {
                                partition: r.get(1)?,
                                offset: r.get::<_, i64>(2)? as u64,
                                appended_us: r.get(3)?,
                                event: event_at(r, 6)?,
                            },
                            error: r.get(4)?,
                            dead_us: r.get(5)?,
                        })
                    })
            })
            .await
    }

    async fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.db
            .read(|conn| {
                all(conn, "SELECT consumer, count(*) FROM dead_letters GROUP BY consumer ORDER BY consumer", [], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            })
            .await
    }

    async fn prune(
        &self,
        now_us: i64,
        retention_us: i64,
        max_bytes: u64,
        dead_retention_us: i64,
    ) -> Result<u64, StoreError> {
        let cutoff = now_us.saturating_sub(retention_us);
        let mut total = 0;
        for p in self.partitions().await? {
            // Bounded: each pass drops up to a batch; a partition this far over is caught up
            // at the next hourly pass.
            for _ in 0..10_000 {
                let n = self
                    .db
                    .write(move |conn| {
                        // The first offset stored at or after the cutoff, or the end.
                        let keep: Option<i64> = conn
                            .query_row(
                                "SELECT id FROM events WHERE id >= ?1 AND id < ?2 AND appended_us >= ?3
                                 ORDER BY id LIMIT 1",
                                params![rowid(p.partition, 0), rowid(p.partition + 1, 0), cutoff],
                                |r| r.get(0),
                            )
                            .optional()
                            .map_err(backend)?;
                        let mut until = keep.map_or(MAX_OFFSET, |id| split_rowid(id).1);
                        if let Some(over) = over_cap(conn, p.partition, max_bytes)? {
                            until = until.max(over);
                        }
                        drop_before(conn, p.partition, until)
                    })
                    .await?;
                total += n;
                if n < PRUNE_BATCH {
                    break;
                }
            }
        }
        let dead_cutoff = now_us.saturating_sub(dead_retention_us);
        total += self
            .db
            .write(move |conn| {
                conn.execute("DELETE FROM dead_letters WHERE dead_us < ?1", [dead_cutoff])
                    .map_err(backend)
            })
            .await? as u64;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stream = SqliteStream::open(&dir.path().join("streams/readings.db")).expect("open");
        crate::conformance::stream::run(
            Arc::new(stream),
            crate::conformance::stream::Retention::Store,
        )
        .await;
    }
}
