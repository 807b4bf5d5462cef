//! Appends the same events to SQLite (laid out as updraft's embedded stream backend lays
//! them out: one rowid table, rowid = partition << 40 | offset, WAL, `synchronous=FULL`) and
//! to fjall (an LSM key-value store: key = partition ‖ offset big-endian, `SyncAll` after each
//! batch), in durable batches the way concurrent appends are group-committed, then reads
//! every partition back in order. Prints events/s for each and the ratio.
//!
//!     cargo run --release -- [EVENTS] [BATCH]      (default 1,000,000 events, 1,000 a batch)

use std::time::Instant;

const PARTITIONS: u64 = 16;
const PAYLOAD: usize = 160;

fn event(i: u64) -> (u64, Vec<u8>) {
    let partition = i % PARTITIONS;
    let mut data = format!(
        "{{\"device\":\"dev-{:04}\",\"celsius\":21.5,\"seq\":{i}",
        i % 1000
    )
    .into_bytes();
    data.resize(PAYLOAD, b' ');
    (partition, data)
}

fn sqlite(dir: &std::path::Path, events: u64, batch: u64) -> rusqlite::Result<(f64, f64)> {
    let conn = rusqlite::Connection::open(dir.join("stream.db"))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "full")?;
    conn.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, appended_us INTEGER NOT NULL, data BLOB NOT NULL)",
    )?;
    let mut next = [0u64; PARTITIONS as usize];
    let started = Instant::now();
    let mut i = 0;
    while i < events {
        let tx = conn.unchecked_transaction()?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO events (id, appended_us, data) VALUES (?1, ?2, ?3)")?;
            for _ in 0..batch.min(events - i) {
                let (p, data) = event(i);
                let offset = next[p as usize];
                next[p as usize] += 1;
                insert.execute(rusqlite::params![
                    ((p << 40) | offset) as i64,
                    i as i64,
                    data
                ])?;
                i += 1;
            }
        }
        tx.commit()?;
    }
    let write = events as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut read = 0u64;
    for p in 0..PARTITIONS {
        let mut s =
            conn.prepare("SELECT id, data FROM events WHERE id >= ?1 AND id < ?2 ORDER BY id")?;
        let rows = s.query_map([(p << 40) as i64, ((p + 1) << 40) as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            row?;
            read += 1;
        }
    }
    assert_eq!(read, events);
    Ok((write, events as f64 / started.elapsed().as_secs_f64()))
}

fn fjall(dir: &std::path::Path, events: u64, batch: u64) -> fjall::Result<(f64, f64)> {
    let keyspace = fjall::Config::new(dir.join("fjall")).open()?;
    let part = keyspace.open_partition("events", fjall::PartitionCreateOptions::default())?;
    let mut next = [0u64; PARTITIONS as usize];
    let started = Instant::now();
    let mut i = 0;
    while i < events {
        let mut b = keyspace.batch();
        for _ in 0..batch.min(events - i) {
            let (p, data) = event(i);
            let offset = next[p as usize];
            next[p as usize] += 1;
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&p.to_be_bytes());
            key[8..].copy_from_slice(&offset.to_be_bytes());
            b.insert(&part, key, data);
            i += 1;
        }
        b.commit()?;
        keyspace.persist(fjall::PersistMode::SyncAll)?;
    }
    let write = events as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut read = 0u64;
    for p in 0..PARTITIONS {
        for kv in part.prefix(p.to_be_bytes()) {
            kv?;
            read += 1;
        }
    }
    assert_eq!(read, events);
    Ok((write, events as f64 / started.elapsed().as_secs_f64()))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let batch: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let root = std::env::temp_dir().join(format!("stream-engine-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("temp dir");
    let (sw, sr) = sqlite(&root, events, batch).expect("sqlite");
    let (fw, fr) = fjall(&root, events, batch).expect("fjall");
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "{events} events of {PAYLOAD} bytes on {PARTITIONS} partitions, durable batches of {batch}"
    );
    println!("engine   append events/s   read events/s");
    println!("sqlite   {sw:>15.0}   {sr:>13.0}");
    println!("fjall    {fw:>15.0}   {fr:>13.0}");
    println!("sqlite/fjall: append {:.2}x, read {:.2}x", sw / fw, sr / fr);
}
