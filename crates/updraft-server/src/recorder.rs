//! Invocation records and guest logs: metrics and the terminal right away, the platform
//! state in batches (every 100 ms), pruned by age.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use updraft_runtime::{InvocationObserver, InvocationRecord, LogStream};
use updraft_store::{InvocationRow, LogRow, RecordStore};

/// Rows waiting to be written; past this, new ones are dropped (and counted).
const QUEUE: usize = 65_536;
/// Bytes of log lines waiting to be written; past this, new lines are dropped (and
/// counted), so a function printing as fast as it can holds at most this much memory.
const MAX_PENDING_LOG_BYTES: usize = 16 << 20;
/// How often pending rows are written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Retention (DESIGN §9): invocation records and logs, 7 days.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

enum Row {
    Invocation(InvocationRow),
    Log(LogRow),
}

/// The node's [`InvocationObserver`].
pub struct Recorder {
    tx: mpsc::Sender<Row>,
    /// Bytes of the log lines queued and not yet written.
    pending_log_bytes: Arc<AtomicUsize>,
}

/// Handle to the writer task; flushes what is pending when finished.
pub struct RecorderTask {
    done: tokio::task::JoinHandle<()>,
}

impl RecorderTask {
    /// Waits until the rows observed so far are written: the writer ends once every
    /// recorder handle is gone, and in any case its next flush covers them. Invocations cut
    /// off by the drain may still hold a handle, so this waits a few flushes at most.
    pub async fn finish(self) {
        let _ = tokio::time::timeout(FLUSH_EVERY * 5, self.done).await;
    }
}

impl Recorder {
    /// A recorder writing to `store`, and its writer task.
    pub fn start(store: Arc<dyn RecordStore>) -> (Arc<Self>, RecorderTask) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let pending_log_bytes = Arc::new(AtomicUsize::new(0));
        let done = tokio::spawn(write_loop(store, rx, pending_log_bytes.clone()));
        let recorder = Self {
            tx,
            pending_log_bytes,
        };
        (Arc::new(recorder), RecorderTask { done })
    }

    fn push(&self, row: Row) {
        let bytes = log_bytes(&row);
        let pending = self.pending_log_bytes.fetch_add(bytes, Ordering::Relaxed);
        if pending + bytes > MAX_PENDING_LOG_BYTES || self.tx.try_send(row).is_err() {
            self.pending_log_bytes.fetch_sub(bytes, Ordering::Relaxed);
            metrics::counter!("updraft_records_dropped_total").increment(1);
        }
    }
}

fn now_us() -> i64 {
    micros_since_epoch(SystemTime::now())
}

fn micros_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl InvocationObserver for Recorder {
    fn log_line(&self, function: &str, invocation_id: &str, stream: LogStream, line: &str) {
        tracing::info!(target: "updraft::guest", function = %function, invocation = %invocation_id, stream = stream.as_str(), "{line}");
        self.push(Row::Log(LogRow {
            seq: 0,
            time_us: now_us(),
            function: function.to_owned(),
            invocation: invocation_id.to_owned(),
            stream: stream.as_str().to_owned(),
            line: line.to_owned(),
        }));
    }

    fn finished(&self, r: &InvocationRecord) {
        crate::metrics::record(r);
        self.push(Row::Invocation(InvocationRow {
            id: r.id.clone(),
            function: r.function.clone(),
            trigger: r.trigger.to_owned(),
            started_us: micros_since_epoch(r.started),
            cold: r.cold,
            instantiate_us: i64::try_from(r.instantiate_us).unwrap_or(i64::MAX),
            duration_us: i64::try_from(r.duration_us).unwrap_or(i64::MAX),
            outcome: r.outcome.as_str().to_owned(),
            error: r.error.clone(),
            request: r.request.clone(),
        }));
    }
}

/// What a row's log line counts against [`MAX_PENDING_LOG_BYTES`].
fn log_bytes(row: &Row) -> usize {
    match row {
        Row::Log(l) => l.line.len() + l.function.len() + l.invocation.len(),
        Row::Invocation(_) => 0,
    }
}

async fn write_loop(
    store: Arc<dyn RecordStore>,
    mut rx: mpsc::Receiver<Row>,
    pending_log_bytes: Arc<AtomicUsize>,
) {
    let mut last_prune = tokio::time::Instant::now() - Duration::from_secs(3600);
    loop {
        let Some(first) = rx.recv().await else { break };
        // Gather what arrives within one flush interval.
        tokio::time::sleep(FLUSH_EVERY).await;
        let mut invocations = Vec::new();
        let mut logs = Vec::new();
        let mut next = Some(first);
        while let Some(row) = next {
            pending_log_bytes.fetch_sub(log_bytes(&row), Ordering::Relaxed);
            match row {
                Row::Invocation(r) => invocations.push(r),
                Row::Log(l) => logs.push(l),
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = store.append(invocations, logs).await {
            tracing::warn!("cannot write invocation records: {e}");
        }
        if last_prune.elapsed() > Duration::from_secs(3600) {
            last_prune = tokio::time::Instant::now();
            let cutoff = now_us() - i64::try_from(RETENTION.as_micros()).unwrap_or(0);
            if let Err(e) = store.prune(cutoff, cutoff).await {
                tracing::warn!("cannot prune old invocation records: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use updraft_store::{InvocationQuery, LogQuery, StoreError};

    use super::*;

    /// A store whose writes wait until the test lets them through, counting what arrives.
    #[derive(Default)]
    struct Stalled {
        gate: tokio::sync::Notify,
        written: Mutex<usize>,
    }

    #[async_trait::async_trait]
    impl RecordStore for Stalled {
        async fn append(
            &self,
            _invocations: Vec<InvocationRow>,
            logs: Vec<LogRow>,
        ) -> Result<(), StoreError> {
            self.gate.notified().await;
            *self.written.lock().unwrap() += logs.len();
            Ok(())
        }
        async fn invocations(&self, _: InvocationQuery) -> Result<Vec<InvocationRow>, StoreError> {
            Ok(Vec::new())
        }
        async fn invocation(&self, _: &str) -> Result<Option<InvocationRow>, StoreError> {
            Ok(None)
        }
        async fn logs(&self, _: LogQuery) -> Result<Vec<LogRow>, StoreError> {
            Ok(Vec::new())
        }
        async fn minutes(&self, _: i64) -> Result<Vec<updraft_store::MinuteRow>, StoreError> {
            Ok(Vec::new())
        }
        async fn prune(&self, _: i64, _: i64) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn pending_log_lines_are_bounded_by_bytes_not_rows() {
        let store = Arc::new(Stalled::default());
        let (recorder, _task) = Recorder::start(store.clone());
        // 4,000 lines of 16 KiB (64 MiB) while the store does not take them: far fewer rows
        // than the row cap, far more bytes than the byte cap.
        let line = "x".repeat(16 << 10);
        for _ in 0..4_000 {
            recorder.log_line("f", "i", LogStream::Stdout, &line);
        }
        let pending = recorder.pending_log_bytes.load(Ordering::Relaxed);
        assert!(
            pending <= MAX_PENDING_LOG_BYTES,
            "{pending} bytes of logs held while the store is stalled"
        );
        assert!(
            pending > MAX_PENDING_LOG_BYTES / 2,
            "the buffer was used: {pending}"
        );
    }
}
