//! `quota = "<count>/day"` on a `[gateway.limit.<label>]`: requests per UTC day, per client
//! IP, API key (or JWT subject) or route, as the limit's `by` says.
//!
//! Counts live in the node's state ([`QuotaStore`], a kv namespace the server provides), so
//! they survive a restart and, on a shared state store, are shared by every node. A request
//! is counted in memory at once; the counts are added to the store every
//! [`FLUSH_EVERY`], which answers with the total (other nodes' requests included). So a
//! quota can be overrun by what the nodes accept within one flush, and a crash forgets at
//! most one flush's worth of counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::{Body, error_response};

/// How often counts go to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Subjects counted in memory at most; past it, those with nothing to flush are forgotten
/// (they are read back from the store when they come again).
const MAX_COUNTED: usize = 100_000;
const DAY_SECS: u64 = 86_400;

/// Where daily counts are kept: keys are `<yyyy-mm-dd>/<label>/<subject>`.
#[async_trait::async_trait]
pub trait QuotaStore: Send + Sync + 'static {
    /// Adds `delta` to the count under `key` (0 when missing) and returns the new total.
    async fn add(&self, key: &str, delta: i64) -> Result<i64, String>;
    /// Drops the counts of days before `day` (`yyyy-mm-dd`).
    async fn forget_before(&self, day: &str) -> Result<(), String>;
}

/// What is known of one subject's day.
#[derive(Debug, Default)]
struct Count {
    /// The store's total when last read or added to.
    stored: i64,
    /// Counted here since.
    pending: i64,
    /// Whether `stored` was read (else it is read before the first decision).
    read: bool,
}

/// One label's quota: its counts per day and subject.
pub struct DailyQuota {
    label: String,
    limit: u64,
    store: Arc<dyn QuotaStore>,
    counts: Mutex<HashMap<(u64, String), Count>>,
    /// The day whose older counts were last dropped from the store.
    cleaned: AtomicU64,
}

impl std::fmt::Debug for DailyQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DailyQuota")
            .field("label", &self.label)
            .field("limit", &self.limit)
            .finish()
    }
}

/// The UTC day number (days since 1970-01-01) and the seconds left in it.
fn today() -> (u64, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (now / DAY_SECS, DAY_SECS - now % DAY_SECS)
}

/// `yyyy-mm-dd` of a day number.
fn date(day: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(day * DAY_SECS);
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .take(10)
        .collect()
}

impl DailyQuota {
    /// A quota of `limit` requests a day, counted in `store`; its counts are flushed every
    /// [`FLUSH_EVERY`] while it lives (so this runs inside a tokio runtime).
    pub fn start(label: &str, limit: u64, store: Arc<dyn QuotaStore>) -> Arc<Self> {
        let quota = Arc::new(Self {
            label: label.to_owned(),
            limit,
            store,
            counts: Mutex::new(HashMap::new()),
            cleaned: AtomicU64::new(0),
        });
        let weak: Weak<Self> = Arc::downgrade(&quota);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(quota) = weak.upgrade() else {
                    return;
                };
                quota.flush().await;
            }
        });
        quota
    }

    fn key(&self, day: u64, subject: &str) -> String {
        format!("{}/{}/{subject}", date(day), self.label)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, String), Count>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one request of `subject`; `Ok` holds the `x-quota-*` headers, `Err` the 429.
    pub async fn take(&self, subject: &str) -> Result<HeaderMap, Box<Response<Body>>> {
        let (day, reset) = today();
        let id = (day, subject.to_owned());
        let read = self.lock().get(&id).is_some_and(|c| c.read);
        if !read {
            // The first request of this subject today on this node: what the store counted.
            let stored = match self.store.add(&self.key(day, subject), 0).await {
                Ok(n) => n,
                Err(e) => {
                    // Counting from here (the next flush corrects it) beats refusing service.
                    tracing::warn!(quota = %self.label, error = %e, "cannot read a daily quota count; counting from 0 until the store answers");
                    0
                }
            };
            let mut counts = self.lock();
            if counts.len() >= MAX_COUNTED {
                counts.retain(|_, c| c.pending > 0);
            }
            let count = counts.entry(id.clone()).or_default();
            if !count.read {
                count.stored = stored;
                count.read = true;
            }
        }
        let mut counts = self.lock();
        let count = counts.entry(id).or_default();
        let used = u64::try_from(count.stored + count.pending).unwrap_or(0);
        if used >= self.limit {
            drop(counts);
            return Err(Box::new(self.refusal(reset)));
        }
        count.pending += 1;
        Ok(self.headers(self.limit - used - 1, reset))
    }

    fn headers(&self, remaining: u64, reset: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-quota-limit", HeaderValue::from(self.limit));
        h.insert("x-quota-remaining", HeaderValue::from(remaining));
        h.insert("x-quota-reset", HeaderValue::from(reset));
        h
    }

    fn refusal(&self, reset: u64) -> Response<Body> {
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "daily quota `{}` of {} requests is used up; it starts again at 00:00 UTC, in {reset}s",
                self.label, self.limit
            ),
            None,
        );
        let headers = response.headers_mut();
        headers.extend(self.headers(0, reset));
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(reset));
        metrics::counter!("updraft_gateway_quota_exceeded_total", "limit" => self.label.clone())
            .increment(1);
        response
    }

    /// Adds what was counted here to the store and takes back its totals; drops past days.
    pub async fn flush(&self) {
        let (day, _) = today();
        let due: Vec<((u64, String), i64)> = {
            let mut counts = self.lock();
            counts.retain(|(d, _), c| *d >= day || c.pending > 0);
            counts
                .iter()
                .filter(|(_, c)| c.pending > 0)
                .map(|(id, c)| (id.clone(), c.pending))
                .collect()
        };
        for ((d, subject), added) in due {
            match self.store.add(&self.key(d, &subject), added).await {
                Ok(total) => {
                    let mut counts = self.lock();
                    if let Some(c) = counts.get_mut(&(d, subject)) {
                        c.pending -= added;
                        c.stored = total;
                        c.read = true;
                    }
                    if d < day {
                        counts.retain(|(d, _), c| *d >= day || c.pending > 0);
                    }
                }
                Err(e) => {
                    tracing::warn!(quota = %self.label, error = %e, "cannot store daily quota counts; trying again in {FLUSH_EVERY:?}");
                    return;
                }
            }
        }
        if self.cleaned.swap(day, Ordering::Relaxed) != day
            && let Err(e) = self.store.forget_before(&date(day)).await
        {
            tracing::warn!(quota = %self.label, error = %e, "cannot drop past days' quota counts");
            self.cleaned.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts in memory, as the kv namespace would.
    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, i64>>);

    #[async_trait::async_trait]
    impl QuotaStore for Memory {
        async fn add(&self, key: &str, delta: i64) -> Result<i64, String> {
            let mut m = self.0.lock().unwrap();
            let v = m.entry(key.to_owned()).or_default();
            *v += delta;
            Ok(*v)
        }
        async fn forget_before(&self, day: &str) -> Result<(), String> {
            self.0.lock().unwrap().retain(|k, _| k.as_str() >= day);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_quota_admits_its_count_then_refuses_until_midnight() {
        let store = Arc::new(Memory::default());
        let q = DailyQuota::start("daily", 3, store.clone());
        for left in [2, 1, 0] {
            let h = q.take("key:a").await.unwrap();
            assert_eq!(h["x-quota-remaining"], left.to_string());
        }
        let refused = q.take("key:a").await.unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=DAY_SECS).contains(&retry));
        assert!(q.take("key:b").await.is_ok(), "another key has its own");
        q.flush().await;
        let (day, _) = today();
        assert_eq!(store.0.lock().unwrap()[&q.key(day, "key:a")], 3);
    }

    #[tokio::test]
    async fn counts_survive_a_restart_and_are_shared_through_the_store() {
        let store = Arc::new(Memory::default());
        let first = DailyQuota::start("daily", 5, store.clone());
        for _ in 0..3 {
            first.take("ip:10.0.0.1").await.unwrap();
        }
        first.flush().await;
        drop(first);
        // A node that starts later (or another node) reads the stored count.
        let second = DailyQuota::start("daily", 5, store.clone());
        second.take("ip:10.0.0.1").await.unwrap();
        let h = second.take("ip:10.0.0.1").await.unwrap();
        assert_eq!(h["x-quota-remaining"], "0");
        assert!(second.take("ip:10.0.0.1").await.is_err());
    }

    #[tokio::test]
    async fn past_days_are_dropped_from_the_store() {
        let store = Arc::new(Memory::default());
        store.add("2000-01-01/daily/key:a", 7).await.unwrap();
        let q = DailyQuota::start("daily", 5, store.clone());
        q.take("key:a").await.unwrap();
        q.flush().await;
        let keys: Vec<String> = store.0.lock().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert!(keys[0].starts_with(&date(today().0)), "{keys:?}");
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_794), "2026-12-07");
    }
}
