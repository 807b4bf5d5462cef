//! One loop per partition of a stream consumer: read from the checkpoint, run, commit;
//! retry, bisect and dead-letter a failing batch; tick when idle.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Semaphore, watch};
use updraft_runtime::{EventError, EventFunction, InvokeError, StreamHandle, now_us};
use updraft_store::{Event, StreamRecord};

use super::Start;

/// The type of the event a partition's consumer gets when the partition has been idle for
/// the stream's `tick`.
pub const TICK_TYPE: &str = "updraft.stream.tick";
/// What records and metrics call the trigger.
const TRIGGER: &str = "stream";
/// Poll interval when no wake-up arrives (another process may have appended, or a replay
/// moved the checkpoint).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// When a batch that found no free instance is tried again (no attempt spent).
const BUSY_RETRY: Duration = Duration::from_millis(200);
/// Tries of a store write (a commit, a dead letter) before the partition starts over from
/// its stored checkpoint.
const STORE_TRIES: u32 = 10;
/// The longest an idle partition goes between ticks.
const MAX_TICK_GAP: Duration = Duration::from_secs(3600);
/// How long a node's claim on a partition lasts without renewal: a dead node's partitions
/// move to another node within this.
const CLAIM_TTL: Duration = Duration::from_secs(10);

/// How a consumer runs, from its `[[trigger.stream]]` and its stream.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) batch: u32,
    pub(crate) wait: Option<Duration>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) tick: Duration,
    pub(crate) start: Start,
    pub(crate) concurrency: u32,
}

/// Starts one loop per partition; they stop when `stop` turns true.
pub(crate) fn spawn(
    stream: Arc<StreamHandle>,
    function: EventFunction,
    consumer: String,
    holder: String,
    settings: Settings,
    stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(settings.concurrency as usize));
    let shared = Arc::new(Shared {
        stream,
        function,
        consumer,
        holder,
        settings,
        slots,
    });
    for partition in 0..shared.stream.partitions {
        let p = Partition {
            shared: shared.clone(),
            partition,
            stop: stop.clone(),
            claimed_until: None,
        };
        tokio::spawn(p.run());
    }
}

struct Shared {
    stream: Arc<StreamHandle>,
    function: EventFunction,
    consumer: String,
    /// Who this node is, in partition claims.
    holder: String,
    settings: Settings,
    /// Partitions processing a batch at once.
    slots: Arc<Semaphore>,
}

struct Partition {
    shared: Arc<Shared>,
    partition: u32,
    stop: watch::Receiver<bool>,
    /// While this node holds the partition's claim (renewed at half its life).
    claimed_until: Option<Instant>,
}

/// Where a partition is after a batch.
enum Progress {
    /// Its checkpoint is here.
    At(u64),
    /// The stored checkpoint is not where this loop thought (a replay): read it again.
    Moved,
    /// The node is draining.
    Stopped,
}

/// Renews this node's claim on a partition every third of its life while a batch runs;
/// stops when dropped (also on a panic).
struct ClaimKeeper(tokio::task::JoinHandle<()>);

impl ClaimKeeper {
    fn start(shared: Arc<Shared>, partition: u32) -> Self {
        let ttl = i64::try_from(CLAIM_TTL.as_micros()).unwrap_or(i64::MAX);
        Self(tokio::spawn(async move {
            // Ends when the batch does (the keeper is dropped and aborts this task).
            loop {
                tokio::time::sleep(CLAIM_TTL / 3).await;
                let renewed = shared
                    .stream
                    .store
                    .claim(&shared.consumer, partition, &shared.holder, now_us(), ttl)
                    .await;
                if !matches!(renewed, Ok(true)) {
                    tracing::warn!(
                        stream = %shared.stream.name, consumer = %shared.consumer, partition,
                        "lost the partition's claim during a batch; another node may process it again"
                    );
                }
            }
        }))
    }
}

impl Drop for ClaimKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long an idle partition waits before its `n`-th tick since its last record (from 0):
/// the stream's `tick`, doubling per tick, at most [`MAX_TICK_GAP`].
fn tick_gap(tick: Duration, n: u32) -> Duration {
    tick.saturating_mul(1u32 << n.min(20))
        .min(MAX_TICK_GAP.max(tick))
}

/// Whether this node holds a partition.
enum Hold {
    /// It did and still does.
    Kept,
    /// It just took it (again): read the checkpoint.
    Taken,
    /// Another node does.
    Elsewhere,
}

/// How one try of a batch ended.
enum Run {
    Done,
    Failed(String),
    Stopped,
}

impl Partition {
    async fn run(mut self) {
        let Some(mut next) = self.begin().await else {
            return;
        };
        let s = self.shared.clone();
        let mut idle_since = Instant::now();
        // Ticks since the last record: each idle tick waits twice as long as the one
        // before, up to MAX_TICK_GAP, so a quiet stream costs little overnight.
        let mut ticks: u32 = 0;
        loop {
            if *self.stop.borrow() {
                return;
            }
            match self.hold().await {
                Hold::Kept => {}
                Hold::Taken => match self.begin().await {
                    // Another node may have moved the checkpoint while it held the claim.
                    Some(n) => next = n,
                    None => return,
                },
                Hold::Elsewhere => {
                    if !self.pause(IDLE_POLL).await {
                        return;
                    }
                    continue;
                }
            }
            // Listen before looking, so an append that lands meanwhile still wakes us.
            let notified = s.stream.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let records = match s
                .stream
                .store
                .read(self.partition, next, s.settings.batch)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    self.log_error("cannot read", &e);
                    self.pause(IDLE_POLL).await;
                    continue;
                }
            };
            if records.is_empty() {
                let gap = tick_gap(s.settings.tick, ticks);
                if next > 0 && idle_since.elapsed() >= gap {
                    self.tick().await;
                    idle_since = Instant::now();
                    ticks = ticks.saturating_add(1);
                }
                let until_tick =
                    tick_gap(s.settings.tick, ticks).saturating_sub(idle_since.elapsed());
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(IDLE_POLL.min(until_tick).max(Duration::from_millis(10))) => {}
                    changed = self.stop.changed() => if changed.is_err() { return },
                }
                // A replay may have moved the checkpoint while we were idle.
                if let Ok(Some(stored)) =
                    s.stream.store.checkpoint(&s.consumer, self.partition).await
                {
                    next = stored;
                }
                continue;
            }
            let records = match s.settings.wait {
                Some(wait) if records.len() < s.settings.batch as usize => {
                    self.fill(records, next, wait, notified).await
                }
                _ => records,
            };
            let Ok(permit) = s.slots.clone().acquire_owned().await else {
                return;
            };
            // A long batch keeps the partition: its claim is renewed while it runs.
            let keeper = ClaimKeeper::start(s.clone(), self.partition);
            let progress = self.process(&records, next).await;
            drop(keeper);
            drop(permit);
            idle_since = Instant::now();
            ticks = 0;
            match progress {
                Progress::At(n) => next = n,
                Progress::Stopped => return,
                Progress::Moved => match self.begin().await {
                    Some(n) => next = n,
                    None => return,
                },
            }
        }
    }

    /// Whether this node may process the partition now: its claim is kept or renewed, just
    /// taken, or held by another node.
    async fn hold(&mut self) -> Hold {
        let now = Instant::now();
        if self
            .claimed_until
            .is_some_and(|until| until > now + CLAIM_TTL / 2)
        {
            return Hold::Kept;
        }
        let s = self.shared.clone();
        let ttl = i64::try_from(CLAIM_TTL.as_micros()).unwrap_or(i64::MAX);
        let claimed = s
            .stream
            .store
            .claim(&s.consumer, self.partition, &s.holder, now_us(), ttl)
            .await;
        let had = self.claimed_until.is_some_and(|until| until > now);
        match claimed {
            Ok(true) => {
                self.claimed_until = Some(now + CLAIM_TTL);
                if had { Hold::Kept } else { Hold::Taken }
            }
            Ok(false) => {
                self.claimed_until = None;
                Hold::Elsewhere
            }
            Err(e) => {
                self.log_error("cannot claim the partition", &e);
                self.claimed_until = None;
                Hold::Elsewhere
            }
        }
    }

    /// The consumer's checkpoint, set first from `start` when it has none.
    async fn begin(&mut self) -> Option<u64> {
        let s = self.shared.clone();
        for _ in 0..u32::MAX {
            if *self.stop.borrow() {
                return None;
            }
            match s.stream.store.checkpoint(&s.consumer, self.partition).await {
                Ok(Some(next)) => return Some(next),
                Ok(None) => {
                    let first = match s.stream.store.partitions().await {
                        Ok(parts) => parts.into_iter().find(|p| p.partition == self.partition),
                        Err(e) => {
                            self.log_error("cannot read the partitions", &e);
                            self.pause(IDLE_POLL).await;
                            continue;
                        }
                    };
                    let start = first.map_or(0, |p| match s.settings.start {
                        Start::Latest => p.next,
                        Start::Earliest => p.first,
                    });
                    // Another node may set it first; then its value is read back.
                    if let Err(e) = s
                        .stream
                        .store
                        .commit(&s.consumer, self.partition, None, start)
                        .await
                    {
                        self.log_error("cannot set the first checkpoint", &e);
                        self.pause(IDLE_POLL).await;
                    }
                }
                Err(e) => {
                    self.log_error("cannot read the checkpoint", &e);
                    self.pause(IDLE_POLL).await;
                }
            }
        }
        None
    }

    /// Waits up to `wait` for a fuller batch, then reads again from `next`.
    async fn fill(
        &mut self,
        records: Vec<StreamRecord>,
        next: u64,
        wait: Duration,
        notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> Vec<StreamRecord> {
        let s = self.shared.clone();
        let appended = records.first().map_or(0, |r| r.appended_us);
        let waited = Duration::from_micros(u64::try_from(now_us() - appended).unwrap_or(0));
        let Some(left) = wait.checked_sub(waited) else {
            return records;
        };
        let deadline = tokio::time::Instant::now() + left;
        let mut notified = Some(notified);
        // Bounded by the deadline; each wake-up reads once.
        loop {
            let wake = async {
                match notified.take() {
                    Some(n) => n.await,
                    None => s.stream.notify.notified().await,
                }
            };
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep_until(deadline) => break,
                _ = self.stop.changed() => break,
            }
            match s
                .stream
                .store
                .read(self.partition, next, s.settings.batch)
                .await
            {
                Ok(more) if more.len() >= s.settings.batch as usize => return more,
                _ => {}
            }
        }
        match s
            .stream
            .store
            .read(self.partition, next, s.settings.batch)
            .await
        {
            Ok(more) if more.len() >= records.len() => more,
            _ => records,
        }
    }

    /// Runs `records` and moves the checkpoint past what succeeded or was dead-lettered.
    async fn process(&mut self, records: &[StreamRecord], mut next: u64) -> Progress {
        let s = self.shared.clone();
        let tries = |range: &Range<usize>| {
            // The whole batch and a lone record get every attempt; halves on the way to the
            // lone record get one each, so a poison record is found in log2(batch) runs.
            if range.len() == 1 || range.len() == records.len() {
                s.settings.max_attempts
            } else {
                1
            }
        };
        let whole = 0..records.len();
        let mut pending = vec![(whole.clone(), tries(&whole))];
        while let Some((range, attempts)) = pending.pop() {
            let part = &records[range.clone()];
            match self.run_batch(part, attempts).await {
                Run::Stopped => return Progress::Stopped,
                Run::Done => {}
                Run::Failed(error) if part.len() == 1 => {
                    if !self.dead_letter(&part[0], &error).await {
                        return Progress::Moved;
                    }
                }
                Run::Failed(_) => {
                    let mid = range.start + range.len() / 2;
                    let (left, right) = (range.start..mid, mid..range.end);
                    pending.push((right.clone(), tries(&right)));
                    pending.push((left.clone(), tries(&left)));
                    continue;
                }
            }
            let done = part.last().map_or(next, |r| r.offset + 1);
            match self.commit(next, done).await {
                Some(true) => next = done,
                Some(false) | None => return Progress::Moved,
            }
        }
        Progress::At(next)
    }

    /// Runs one batch up to `attempts` times with backoff.
    async fn run_batch(&mut self, part: &[StreamRecord], attempts: u32) -> Run {
        let s = self.shared.clone();
        let mut attempt = 0;
        // Bounded: each turn spends an attempt, or waits for a free instance until the drain.
        loop {
            attempt += 1;
            let events = part.iter().map(delivered).collect();
            let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
            let error = match s.function.invoke(events, TRIGGER, id).await {
                Ok(()) => return Run::Done,
                Err(EventError::Invoke(InvokeError::AtCapacity { .. })) => {
                    attempt -= 1;
                    if !self.pause(BUSY_RETRY).await {
                        return Run::Stopped;
                    }
                    continue;
                }
                Err(e) => e.to_string(),
            };
            if attempt >= attempts {
                return Run::Failed(error);
            }
            let exp = (attempt - 1).min(16);
            let delay = s.settings.backoff.saturating_mul(1 << exp).min(MAX_BACKOFF);
            tracing::warn!(
                stream = %s.stream.name, consumer = %s.consumer, partition = self.partition,
                records = part.len(), attempt, "batch failed, retrying in {delay:?}: {error}"
            );
            if !self.pause(delay).await {
                return Run::Stopped;
            }
        }
    }

    /// Stores `record` as a dead letter; `false` when the store kept failing.
    async fn dead_letter(&mut self, record: &StreamRecord, error: &str) -> bool {
        let s = self.shared.clone();
        tracing::error!(
            stream = %s.stream.name, consumer = %s.consumer, partition = record.partition,
            offset = record.offset, "dead-lettered: {error}"
        );
        for _ in 0..STORE_TRIES {
            match s
                .stream
                .store
                .dead_letter(&s.consumer, record, error, now_us())
                .await
            {
                Ok(()) => return true,
                Err(e) => {
                    self.log_error("cannot dead-letter", &e);
                    if !self.pause(IDLE_POLL).await {
                        return false;
                    }
                }
            }
        }
        false
    }

    /// Moves the checkpoint from `from` to `to`: `Some(false)` when a replay moved it
    /// first, `None` when the store kept failing.
    async fn commit(&mut self, from: u64, to: u64) -> Option<bool> {
        let s = self.shared.clone();
        for _ in 0..STORE_TRIES {
            match s
                .stream
                .store
                .commit(&s.consumer, self.partition, Some(from), to)
                .await
            {
                Ok(moved) => return Some(moved),
                Err(e) => {
                    self.log_error("cannot commit the checkpoint", &e);
                    if !self.pause(IDLE_POLL).await {
                        return None;
                    }
                }
            }
        }
        None
    }

    /// Tells the function the partition has been idle (errors are logged, not retried:
    /// the next tick comes anyway).
    async fn tick(&self) {
        let s = &self.shared;
        let now = now_us();
        let event = Event {
            id: uuid::Uuid::now_v7().to_string(),
            source: format!("/streams/{}", s.stream.name),
            ty: TICK_TYPE.to_owned(),
            time: Some(humantime::format_rfc3339_micros(SystemTime::now()).to_string()),
            datacontenttype: Some("application/json".to_owned()),
            data: serde_json::json!({ "partition": self.partition, "now_us": now })
                .to_string()
                .into_bytes(),
            extensions: vec![("partition".to_owned(), self.partition.to_string())],
            ..Event::default()
        };
        let id: Arc<str> = Arc::from(event.id.as_str());
        if let Err(e) = s.function.invoke(vec![event], TRIGGER, id).await {
            tracing::debug!(stream = %s.stream.name, partition = self.partition, "tick not handled: {e}");
        }
    }

    /// Sleeps for `d`; `false` when the node started draining meanwhile.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !*self.stop.borrow(),
            _ = self.stop.changed() => false,
        }
    }

    fn log_error(&self, what: &str, e: &dyn std::fmt::Display) {
        tracing::error!(
            stream = %self.shared.stream.name, consumer = %self.shared.consumer,
            partition = self.partition, "{what}: {e}"
        );
    }
}

/// The event as the function gets it: with its `partition` and `offset`.
fn delivered(r: &StreamRecord) -> Event {
    let mut e = r.event.clone();
    e.extensions
        .retain(|(k, _)| k != "partition" && k != "offset");
    e.extensions
        .push(("partition".to_owned(), r.partition.to_string()));
    e.extensions
        .push(("offset".to_owned(), r.offset.to_string()));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_ticks_back_off_to_an_hour() {
        let tick = Duration::from_secs(10);
        let gaps: Vec<u64> = (0..4).map(|n| tick_gap(tick, n).as_secs()).collect();
        assert_eq!(gaps, [10, 20, 40, 80]);
        assert_eq!(tick_gap(tick, 9), Duration::from_secs(3600));
        assert_eq!(tick_gap(tick, 1_000), Duration::from_secs(3600));
        // A tick longer than the cap is kept as it is.
        let long = Duration::from_secs(7200);
        assert_eq!(tick_gap(long, 3), long);
    }
}
