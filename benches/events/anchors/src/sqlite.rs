//! The SQLite anchor: updraft's queue table and statements, its group-committing writer,
//! nothing else (no savepoint per write, no async runtime, no dedup table).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde_json::json;

use crate::{Common, left, log, now_us, num, pct};

/// Most writes committed in one transaction (updraft's `MAX_GROUP`).
const MAX_GROUP: usize = 512;
/// Writes waiting for the writer thread before submitters block (updraft's
/// `MAX_QUEUED_WRITES`).
const MAX_QUEUED_WRITES: usize = 4_096;
/// Messages one lease takes.
const CHUNK: u32 = 100;
/// The lease a leased message gets (updraft's default, 30 s).
const LEASE_US: i64 = 30_000_000;
/// Longest wait for one write to be committed.
const WRITE_WAIT: Duration = Duration::from_secs(30);
/// The queue the rows belong to.
const QUEUE: &str = "jobs";

/// updraft's `queue_messages` table and its indexes (`crates/updraft-store/src/sqlite/
/// queue.rs` and `state.rs`).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
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
CREATE INDEX IF NOT EXISTS queue_ready ON queue_messages (queue, dead_us, available_us, seq);
CREATE INDEX IF NOT EXISTS queue_dead ON queue_messages (dead_us) WHERE dead_us IS NOT NULL;
";

const INSERT: &str = "INSERT INTO queue_messages (queue, id, ce_id, ce_source, ce_type, \
    ce_subject, ce_time, ce_datacontenttype, ce_extensions, data, enqueued_us, available_us)
    VALUES (?1, lower(hex(randomblob(16))), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

const LEASE: &str = "UPDATE queue_messages
    SET lease_token = lower(hex(randomblob(8))), available_us = ?3, attempts = attempts + 1
    WHERE seq IN (
        SELECT seq FROM queue_messages
        WHERE queue = ?1 AND dead_us IS NULL AND available_us <= ?2
        ORDER BY available_us, seq LIMIT ?4)
    RETURNING seq, id, attempts, lease_token, enqueued_us, ce_id, ce_source, ce_type, \
    ce_subject, ce_time, ce_datacontenttype, ce_extensions, data";

const ACK: &str = "DELETE FROM queue_messages \
    WHERE queue = ?1 AND id = ?2 AND lease_token = ?3 AND dead_us IS NULL";

/// Runs inside the group's transaction; what it returns runs after the commit (with the
/// commit's error, if any).
type Done = Box<dyn FnOnce(Option<&str>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Done + Send>;

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

/// One connection on its own thread, committing queued writes together.
struct Writer {
    tx: Option<mpsc::SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "full")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

impl Writer {
    fn start(path: &Path, deadline: Instant) -> Result<Self, String> {
        let conn = open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(|e| e.to_string())?;
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if mode != "wal" || sync != 2 {
            return Err(format!(
                "journal_mode {mode}, synchronous {sync}: want wal, 2 (FULL)"
            ));
        }
        let (tx, rx) = mpsc::sync_channel::<Job>(MAX_QUEUED_WRITES);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, deadline, &c))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            counters,
        })
    }

    /// Queues `f`; its result (or the commit's error) goes to `reply` once committed.
    fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        reply: mpsc::Sender<Result<R, String>>,
    ) -> Result<(), String> {
        let job: Job = Box::new(move |conn| {
            let result = f(conn).map_err(|e| e.to_string());
            Box::new(move |commit_error: Option<&str>| {
                let outcome = match (result, commit_error) {
                    (Ok(r), None) => Ok(r),
                    (Ok(_), Some(e)) => Err(format!("commit failed: {e}")),
                    (Err(e), _) => Err(e),
                };
                let _ = reply.send(outcome);
            })
        });
        self.tx
            .as_ref()
            .ok_or("the writer is closed")?
            .send(job)
            .map_err(|_| "the writer thread has stopped".to_string())
    }

    /// Queues `f` and waits for it to be committed.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, String> {
        let (tx, rx) = mpsc::channel();
        self.submit(f, tx)?;
        rx.recv_timeout(WRITE_WAIT)
            .map_err(|e| format!("a write was not committed: {e}"))?
    }

    fn commits(&self) -> (u64, u64) {
        (
            self.counters.commits.load(Ordering::Relaxed),
            self.counters.writes.load(Ordering::Relaxed),
        )
    }

    fn close(mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>, deadline: Instant, counters: &Counters) {
    // Each turn takes at least one job; it ends when every sender is gone or at the deadline
    // (queued jobs are then dropped, which fails their callers).
    while Instant::now() < deadline {
        let first = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            log(format!("cannot begin a write transaction: {e}"));
            continue;
        }
        let n = jobs.len() as u64;
        let done: Vec<Done> = jobs.into_iter().map(|job| job(&conn)).collect();
        let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters.writes.fetch_add(n, Ordering::Relaxed);
        for d in done {
            d(commit.as_ref().err().map(String::as_str));
        }
    }
}

fn insert(conn: &Connection, k: u64, data: &[u8], enqueued_us: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT)?
        .execute(params![
            QUEUE,
            format!("a-{k}"),
            "/bench",
            "bench.event",
            Option::<String>::None,
            "2026-01-01T00:00:00.000000Z",
            "text/plain",
            "[]",
            data,
            enqueued_us,
            enqueued_us
        ])
        .map(drop)
}

/// A leased message: id, token, enqueued µs.
type Leased = (String, String, i64);

fn lease(conn: &Connection, max: u32) -> rusqlite::Result<Vec<Leased>> {
    let now = now_us();
    let mut stmt = conn.prepare_cached(LEASE)?;
    let rows = stmt.query_map(params![QUEUE, now, now + LEASE_US, max], |r| {
        // Read every column, as updraft builds its `Leased` from them.
        let seq: i64 = r.get(0)?;
        let id: String = r.get(1)?;
        let _attempts: u32 = r.get(2)?;
        let token: String = r.get(3)?;
        let enqueued: i64 = r.get(4)?;
        for i in 5..12 {
            let _: Option<String> = r.get(i)?;
        }
        let _data: Vec<u8> = r.get(12)?;
        Ok((seq, (id, token, enqueued)))
    })?;
    let mut leased = rows.collect::<Result<Vec<_>, _>>()?;
    leased.sort_by_key(|(seq, _)| *seq);
    Ok(leased.into_iter().map(|(_, l)| l).collect())
}

/// Acks `leased` in one write; how many were deleted.
fn ack(conn: &Connection, leased: &[Leased]) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare_cached(ACK)?;
    let mut n = 0;
    for (id, token, _) in leased {
        n += stmt.execute(params![QUEUE, id, token])? as u64;
    }
    Ok(n)
}

fn data(bytes: usize) -> Arc<Vec<u8>> {
    Arc::new((0..bytes).map(|i| b'a' + (i % 26) as u8).collect())
}

/// Queues `n` one-message writes (keys from `first`) and waits for them all to commit;
/// how many did, and the seconds from the first submit to the last commit.
fn enqueue(
    writer: &Writer,
    n: u64,
    first: u64,
    payload: &Arc<Vec<u8>>,
    deadline: Instant,
) -> Result<(u64, f64), String> {
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    let mut submitted = 0;
    for k in first..first + n {
        if Instant::now() >= deadline {
            break;
        }
        let d = payload.clone();
        let at = now_us();
        writer.submit(move |conn| insert(conn, k, &d, at), tx.clone())?;
        submitted += 1;
    }
    drop(tx);
    let mut enqueued = 0u64;
    for _ in 0..submitted {
        match rx.recv_timeout(left(deadline).min(WRITE_WAIT)) {
            Ok(Ok(())) => enqueued += 1,
            Ok(Err(e)) => return Err(format!("enqueue: {e}")),
            Err(e) => return Err(format!("enqueue: {enqueued} of {submitted} committed: {e}")),
        }
    }
    Ok((enqueued, t0.elapsed().as_secs_f64()))
}

pub fn run(dir: &Path, poll: bool, c: &Common) -> Result<serde_json::Value, String> {
    let deadline = Instant::now() + Duration::from_secs_f64(c.limit);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("anchor.db");
    let writer = Writer::start(&path, deadline)?;
    let payload = data(c.payload);
    let n = c.messages;

    // (a) Enqueue: every message its own write, all queued at once (the channel holds
    // 4,096; the submitter then waits for room), so the writer's groups fill up.
    let (c0, w0) = writer.commits();
    let (enqueued, enqueue_secs) = enqueue(&writer, n, 0, &payload, deadline)?;
    let (c1, w1) = writer.commits();
    let enqueue_rate = enqueued as f64 / enqueue_secs;
    log(format!(
        "sqlite enqueue: {enqueued} in {enqueue_secs:.2} s = {enqueue_rate:.0}/s, {} commits \
         ({:.0} writes each)",
        c1 - c0,
        (w1 - w0) as f64 / (c1 - c0).max(1) as f64
    ));

    // (b) Drain: lease 100 (one commit), ack them (one write holding 100 deletes, one
    // commit), again.
    let t0 = Instant::now();
    let mut drained = 0u64;
    for _ in 0..(n / u64::from(CHUNK) + 100) {
        if drained >= n || Instant::now() >= deadline {
            break;
        }
        let leased = writer.call(|conn| lease(conn, CHUNK))?;
        if leased.is_empty() {
            break;
        }
        drained += writer.call(move |conn| ack(conn, &leased))?;
    }
    let drain_secs = t0.elapsed().as_secs_f64();
    let drain_rate = drained as f64 / drain_secs;
    log(format!(
        "sqlite drain: {drained} leased and acked in {drain_secs:.2} s = {drain_rate:.0} msg/s"
    ));
    if drained != enqueued {
        return Err(format!("drained {drained} of {enqueued}"));
    }

    // (b') The same backlog again, drained with each ack group and the next lease in one
    // write (one commit per 100 instead of two), as updraft's writer folds the acks and
    // leases of concurrent handlers into shared commits.
    let (again, _) = enqueue(&writer, n, n, &payload, deadline)?;
    let t0 = Instant::now();
    let mut fused = 0u64;
    let mut held: Vec<Leased> = Vec::new();
    for _ in 0..(n / u64::from(CHUNK) + 100) {
        if Instant::now() >= deadline {
            break;
        }
        let acking = std::mem::take(&mut held);
        let (acked, leased) = writer.call(move |conn| {
            let acked = ack(conn, &acking)?;
            Ok((acked, lease(conn, CHUNK)?))
        })?;
        fused += acked;
        if leased.is_empty() {
            break;
        }
        held = leased;
    }
    let fused_secs = t0.elapsed().as_secs_f64();
    let fused_rate = fused as f64 / fused_secs;
    log(format!(
        "sqlite drain, ack + next lease in one commit: {fused} in {fused_secs:.2} s = \
         {fused_rate:.0} msg/s"
    ));
    if fused != again {
        return Err(format!("drained {fused} of {again} (ack + next lease)"));
    }

    let paced = paced(&writer, poll, c, &payload, deadline)?;
    writer.close();
    let mut out = json!({
        "engine": "sqlite",
        "messages": enqueued,
        "payload": c.payload,
        "enqueue_rate": num(enqueue_rate),
        "enqueue_secs": num(enqueue_secs),
        "enqueue_commits": c1 - c0,
        "drain_rate": num(drain_rate),
        "drain_secs": num(drain_secs),
        "drained": drained,
        "drain_fused_rate": num(fused_rate),
        "drain_fused_secs": num(fused_secs),
        "wake": if poll { "poll 1 ms" } else { "channel" },
    });
    if let (Some(o), serde_json::Value::Object(p)) = (out.as_object_mut(), paced) {
        o.extend(p);
    }
    Ok(out)
}

/// (c) One message enqueued every 1/rate s by a producer thread (each its own write, not
/// waited for); the consumer (this thread) leases up to 100 whenever woken and acks them in
/// one write it does not wait for. Latency: the producer's clock when it queued the insert
/// to this thread's clock when the lease that took it was committed.
fn paced(
    writer: &Writer,
    poll: bool,
    c: &Common,
    payload: &Arc<Vec<u8>>,
    deadline: Instant,
) -> Result<serde_json::Value, String> {
    let n = c.paced_count();
    let (c0, w0) = writer.commits();
    let start = Instant::now() + Duration::from_millis(100);
    let end = (start + Duration::from_secs_f64(c.duration + 30.0)).min(deadline);
    let (etx, erx) = mpsc::channel::<Result<(), String>>();
    let (atx, arx) = mpsc::channel::<Result<u64, String>>();
    let period = Duration::from_secs_f64(1.0 / c.rate);

    std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let etx = etx;
            let mut lags = Vec::with_capacity(n as usize);
            let mut sent = 0u64;
            for k in 0..n {
                let due = start + period.mul_f64(k as f64);
                if due >= end {
                    break;
                }
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                lags.push(Instant::now().saturating_duration_since(due).as_secs_f64() * 1e3);
                let d = payload.clone();
                let at = now_us();
                let key = 1_000_000_000 + k;
                if writer
                    .submit(move |conn| insert(conn, key, &d, at), etx.clone())
                    .is_err()
                {
                    break;
                }
                sent += 1;
            }
            (sent, pct(&mut lags, 99.0))
        });

        let mut latencies: Vec<f64> = Vec::with_capacity(n as usize);
        let (mut committed, mut errors, mut acks_sent) = (0u64, 0u64, 0u64);
        let mut producer_done = false;
        // Bounded by `end`; each turn waits up to 100 ms (channel) or 1 ms (poll).
        while Instant::now() < end {
            let mut drain = |r: Result<(), String>| match r {
                Ok(()) => committed += 1,
                Err(_) => errors += 1,
            };
            if poll {
                std::thread::sleep(Duration::from_millis(1));
            } else {
                match erx.recv_timeout(Duration::from_millis(100)) {
                    Ok(r) => drain(r),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => producer_done = true,
                }
            }
            for _ in 0..n + 1 {
                match erx.try_recv() {
                    Ok(r) => drain(r),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        producer_done = true;
                        break;
                    }
                }
            }
            for _ in 0..n / u64::from(CHUNK) + 2 {
                let leased = writer.call(|conn| lease(conn, CHUNK))?;
                let t = now_us();
                latencies.extend(leased.iter().map(|l| (t - l.2) as f64 / 1e3));
                let full = leased.len() == CHUNK as usize;
                if !leased.is_empty() {
                    writer.submit(move |conn| ack(conn, &leased), atx.clone())?;
                    acks_sent += 1;
                }
                if !full {
                    break;
                }
            }
            if producer_done && latencies.len() as u64 >= committed {
                break;
            }
        }
        let (sent, lag99) = producer.join().map_err(|_| "the producer panicked")?;
        drop(atx);
        let mut acked = 0u64;
        for _ in 0..acks_sent {
            match arx.recv_timeout(left(deadline).min(WRITE_WAIT)) {
                Ok(Ok(k)) => acked += k,
                Ok(Err(e)) => return Err(format!("paced ack: {e}")),
                Err(e) => return Err(format!("paced ack: {e}")),
            }
        }
        let (c1, w1) = writer.commits();
        let leased = latencies.len();
        let max = latencies.iter().copied().fold(f64::NAN, f64::max);
        let (p50, p99) = (pct(&mut latencies, 50.0), pct(&mut latencies, 99.0));
        log(format!(
            "sqlite paced @{:.0}/s: {sent} sent, {committed} committed ({errors} errors), \
             {leased} leased, {acked} acked; enqueue -> leased p50 {p50:.2} ms, p99 {p99:.2} \
             ms, max {max:.2} ms; send lag p99 {lag99:.2} ms; {} commits ({:.1} writes each)",
            c.rate,
            c1 - c0,
            (w1 - w0) as f64 / (c1 - c0).max(1) as f64
        ));
        Ok(json!({
            "paced_rate": num(c.rate),
            "paced_duration": num(c.duration),
            "paced_sent": sent,
            "paced_committed": committed,
            "paced_leased": leased,
            "paced_acked": acked,
            "p50_ms": num(p50),
            "p99_ms": num(p99),
            "max_ms": num(max),
            "lag99_ms": num(lag99),
            "paced_commits": c1 - c0,
        }))
    })
}
