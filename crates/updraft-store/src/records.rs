//! Invocation records and captured guest logs: what the admin API, `updraft logs` and the
//! dashboard read. Written in batches (they are observations, not acknowledged work) and
//! pruned by age. The store also keeps per-minute rollups of the records ([`MinuteRow`]),
//! so statistics over hours read a few rows per minute, not every invocation.

use async_trait::async_trait;

use crate::StoreError;

/// One finished invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRow {
    /// Its id.
    pub id: String,
    /// The function.
    pub function: String,
    /// `http`, `cron`, …
    pub trigger: String,
    /// Start, in microseconds since the Unix epoch.
    pub started_us: i64,
    /// First invocation since the component was loaded.
    pub cold: bool,
    /// Store creation plus instantiation.
    pub instantiate_us: i64,
    /// Whole invocation.
    pub duration_us: i64,
    /// `ok`, `error`, `timeout`, `memory_limit`, `rejected`.
    pub outcome: String,
    /// The error, when it failed.
    pub error: Option<String>,
    /// What it was asked: `GET /items?page=2`, or the first event it was given.
    pub request: Option<String>,
}

/// One line a function wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Increasing position, for following (`after`); assigned by the store.
    pub seq: i64,
    /// When it was written, in microseconds since the Unix epoch.
    pub time_us: i64,
    /// The function.
    pub function: String,
    /// The invocation.
    pub invocation: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, without its newline.
    pub line: String,
}

/// Invocations of one function that started in one minute: what charts over hours read
/// instead of the raw records. The store keeps them as it appends records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteRow {
    /// The function.
    pub function: String,
    /// The minute's start, in microseconds since the Unix epoch.
    pub minute_us: i64,
    /// Invocations that started in it.
    pub invocations: u64,
    /// Those whose outcome was not `ok`.
    pub errors: u64,
    /// Those that were cold starts.
    pub cold: u64,
    /// Their durations.
    pub durations: Durations,
}

/// One minute, in microseconds.
pub const MINUTE_US: i64 = 60_000_000;

impl MinuteRow {
    /// The rollups of `rows`, one per function and minute, in that order.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a InvocationRow>) -> Vec<MinuteRow> {
        let mut by_key: std::collections::BTreeMap<(&str, i64), MinuteRow> =
            std::collections::BTreeMap::new();
        for r in rows {
            let minute_us = r.started_us.div_euclid(MINUTE_US) * MINUTE_US;
            let m = by_key
                .entry((r.function.as_str(), minute_us))
                .or_insert_with(|| MinuteRow {
                    function: r.function.clone(),
                    minute_us,
                    invocations: 0,
                    errors: 0,
                    cold: 0,
                    durations: Durations::default(),
                });
            m.invocations += 1;
            m.errors += u64::from(r.outcome != "ok");
            m.cold += u64::from(r.cold);
            m.durations.record(r.duration_us);
        }
        by_key.into_values().collect()
    }

    /// Adds `other` (the same function and minute) to this one.
    pub fn merge(&mut self, other: &MinuteRow) {
        self.invocations += other.invocations;
        self.errors += other.errors;
        self.cold += other.cold;
        self.durations.merge(&other.durations);
    }
}

/// A histogram of durations in microseconds, exact below 32 µs and within 1/32 (about 3%)
/// above: 16 buckets per power of two, kept sparse. Merging two is adding their counts, so
/// per-minute histograms add up to any window's percentiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durations {
    counts: std::collections::BTreeMap<u16, u64>,
}

impl Durations {
    /// The bucket of `us` (negative counts as 0).
    fn bucket(us: i64) -> u16 {
        let v = u64::try_from(us).unwrap_or(0);
        if v < 32 {
            return v as u16;
        }
        let e = 63 - v.leading_zeros(); // 5..=63
        let mantissa = (v >> (e - 4)) & 15;
        (32 + (e - 5) * 16) as u16 + mantissa as u16
    }

    /// The middle of bucket `b`'s range.
    fn value(b: u16) -> i64 {
        if b < 32 {
            return i64::from(b);
        }
        let e = u32::from(b - 32) / 16 + 5;
        let mantissa = u64::from(b - 32) % 16;
        let low = (16 + mantissa) << (e - 4);
        let width = 1u64 << (e - 4);
        i64::try_from(low + width / 2).unwrap_or(i64::MAX)
    }

    /// Counts one duration.
    pub fn record(&mut self, us: i64) {
        *self.counts.entry(Self::bucket(us)).or_insert(0) += 1;
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Durations) {
        for (b, n) in &other.counts {
            *self.counts.entry(*b).or_insert(0) += n;
        }
    }

    /// How many durations were counted.
    pub fn len(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The nearest-rank `p`th percentile (0 to 100), to the bucket's precision; 0 when
    /// empty.
    pub fn percentile(&self, p: u64) -> i64 {
        let n = self.len();
        if n == 0 {
            return 0;
        }
        let rank = (p.min(100) * n).div_ceil(100).max(1);
        let mut seen = 0;
        for (b, count) in &self.counts {
            seen += count;
            if seen >= rank {
                return Self::value(*b);
            }
        }
        self.counts
            .keys()
            .next_back()
            .map_or(0, |b| Self::value(*b))
    }

    /// The counts as bytes for a store: (bucket u16, count u64) little-endian pairs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.counts.len() * 10);
        for (b, n) in &self.counts {
            out.extend_from_slice(&b.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    /// Reads what [`Durations::to_bytes`] wrote; a trailing partial pair is ignored.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut counts = std::collections::BTreeMap::new();
        for pair in bytes.chunks_exact(10) {
            let (b, n) = pair.split_at(2);
            let b = u16::from_le_bytes([b[0], b[1]]);
            let mut count = [0u8; 8];
            count.copy_from_slice(n);
            *counts.entry(b).or_insert(0) += u64::from_le_bytes(count);
        }
        Self { counts }
    }
}

/// Which records to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct InvocationQuery {
    /// Only this function.
    pub function: Option<String>,
    /// Only records that started before this time (for paging back).
    pub before_us: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// Which log lines to read, oldest first.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only this function.
    pub function: Option<String>,
    /// Only this invocation.
    pub invocation: Option<String>,
    /// Only lines after this position (to follow).
    pub after: Option<i64>,
    /// At most this many (the newest ones when `after` is not given).
    pub limit: u32,
}

/// Where records and logs live.
#[async_trait]
pub trait RecordStore: Send + Sync + 'static {
    /// Appends a batch.
    async fn append(
        &self,
        invocations: Vec<InvocationRow>,
        logs: Vec<LogRow>,
    ) -> Result<(), StoreError>;
    /// Reads invocation records.
    async fn invocations(&self, query: InvocationQuery) -> Result<Vec<InvocationRow>, StoreError>;
    /// One invocation record.
    async fn invocation(&self, id: &str) -> Result<Option<InvocationRow>, StoreError>;
    /// Reads log lines.
    async fn logs(&self, query: LogQuery) -> Result<Vec<LogRow>, StoreError>;
    /// The per-function, per-minute rollups of the invocations appended so far whose minute
    /// starts at or after `since_us`, by minute then function. A record appended again
    /// with the same id is not counted twice.
    async fn minutes(&self, since_us: i64) -> Result<Vec<MinuteRow>, StoreError>;
    /// Deletes records and logs older than the given times (and the rollups of minutes that
    /// ended before `invocations_before_us`); returns how many rows went.
    async fn prune(
        &self,
        invocations_before_us: i64,
        logs_before_us: i64,
    ) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_exact_below_32_us_and_within_a_32nd_above() {
        for us in 0..32 {
            assert_eq!(Durations::value(Durations::bucket(us)), us);
        }
        let mut us = 32_i64;
        while us < 1 << 40 {
            let shown = Durations::value(Durations::bucket(us));
            assert!(
                (shown - us).abs() as f64 <= us as f64 / 32.0,
                "{us} shown as {shown}"
            );
            us = us * 9 / 8 + 1;
        }
        assert_eq!(Durations::bucket(-5), 0);
        assert!(Durations::value(Durations::bucket(i64::MAX)) > 0);
    }

    #[test]
    fn percentiles_are_nearest_rank_and_survive_merging_and_bytes() {
        let mut low = Durations::default();
        let mut high = Durations::default();
        for us in 1..=20 {
            low.record(us);
        }
        for us in 21..=30 {
            high.record(us);
        }
        low.merge(&high);
        assert_eq!(low.len(), 30);
        assert_eq!((low.percentile(50), low.percentile(99)), (15, 30));
        assert_eq!(Durations::from_bytes(&low.to_bytes()), low);
        assert_eq!(Durations::default().percentile(50), 0);
        assert!(Durations::from_bytes(&[1, 2, 3]).is_empty());
    }
}
