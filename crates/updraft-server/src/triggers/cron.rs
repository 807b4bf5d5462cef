//! `[[trigger.cron]]`: run an event function on a schedule.
//!
//! Each occurrence is claimed in the platform state, so however many processes share it,
//! one wins; the winner enqueues a `updraft.cron` event into the trigger's own queue
//! (`_cron.<function>.<hash>`), keyed by the occurrence. A queue trigger with one slot runs it, so a cron run gets what
//! every queued message gets: a lease kept while it runs, retries with backoff when the
//! function fails, redelivery after a `kill -9`, dead letters (`updraft dlq ls`).
//! An occurrence missed while nothing ran is caught up once, flagged `pastdue`; one that
//! comes while the previous run is still queued or running is skipped (no pile-up).

use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use tokio::sync::watch;
use updraft_runtime::{QueueHandle, now_us};
use updraft_store::{Event, NewMessage, ScheduleStore};

use super::queue::Delivery;

/// Deliveries of one occurrence before it is dead-lettered.
const MAX_ATTEMPTS: u32 = 3;
/// Tries to queue a claimed occurrence (200 ms, doubling: about 6 s in all).
const ENQUEUE_TRIES: u32 = 5;

/// One cron trigger, ready to fire.
pub struct CronPlan {
    /// Identifies the trigger in the claims table.
    pub key: String,
    /// The schedule as written.
    pub schedule: String,
    /// The parsed schedule.
    pub cron: Cron,
    /// The time zone it is read in.
    pub tz: Tz,
    /// The function it runs (for events and logs).
    pub function: String,
    /// Who claims (this process).
    pub claimant: String,
    /// The trigger's queue.
    pub queue: Arc<QueueHandle>,
}

/// The queue a cron trigger's runs go through: stable across restarts and nodes for the
/// same function, schedule and zone.
pub fn queue_name(function: &str, key: &str) -> String {
    // FNV-1a over the key's bytes: stable across processes and releases (unlike std's
    // default hasher, and unlike `Hash for str`, whose byte feed is not guaranteed).
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(key.as_bytes());
    format!("_cron.{function}.{:08x}", h.0 as u32)
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// How cron runs are delivered: one at a time, retried twice with backoff.
pub fn delivery() -> Delivery {
    Delivery {
        max_attempts: MAX_ATTEMPTS,
        lease: Duration::from_secs(10),
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        batch: 1,
        concurrency: 1,
        trigger: "cron",
    }
}

fn micros(t: &DateTime<Tz>) -> i64 {
    t.timestamp_micros()
}

/// Starts the trigger until `stop` turns true.
pub fn spawn(
    plan: CronPlan,
    store: Arc<dyn ScheduleStore>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        catch_up(&plan, &*store).await;
        loop {
            let now = Utc::now().with_timezone(&plan.tz);
            let next = match plan.cron.find_next_occurrence(&now, false) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(
                        function = plan.function,
                        "cron `{}` has no next occurrence: {e}",
                        plan.schedule
                    );
                    return;
                }
            };
            let wait = (next.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            fire(&plan, &*store, next, false).await;
        }
    })
}

/// Runs the newest occurrence missed since the last claimed one, once. Also queues the last
/// claimed occurrence again (its idempotency key makes that a no-op unless a crash came
/// between its claim and its enqueue).
async fn catch_up(plan: &CronPlan, store: &dyn ScheduleStore) {
    let last = match store.last_claimed(&plan.key).await {
        Ok(Some(last)) => last,
        Ok(None) => return, // never ran: nothing was missed
        Err(e) => {
            tracing::error!(
                function = plan.function,
                "cannot read the last cron run: {e}"
            );
            return;
        }
    };
    // Only within the dedup window (with a margin): beyond it a repeat is not recognised.
    // Not while runs are queued: the last occurrence may have been skipped for them.
    let idle = plan
        .queue
        .store
        .depth(&plan.queue.name, now_us())
        .await
        .is_ok_and(|d| d.ready + d.waiting == 0);
    if idle
        && now_us() - last < plan.queue.dedup_window_us * 9 / 10
        && let Some(at) = plan.tz.timestamp_micros(last).single()
    {
        enqueue(plan, &at, false).await;
    }
    let now = Utc::now().with_timezone(&plan.tz);
    let Ok(missed) = plan.cron.find_previous_occurrence(&now, true) else {
        return;
    };
    if micros(&missed) > last {
        fire(plan, store, missed, true).await;
    }
}

/// Claims occurrence `at` (one process wins), then queues its run unless the previous run
/// is still queued or running.
async fn fire(plan: &CronPlan, store: &dyn ScheduleStore, at: DateTime<Tz>, past_due: bool) {
    match store.claim(&plan.key, micros(&at), &plan.claimant).await {
        Ok(true) => {}
        Ok(false) => return, // another process has it
        Err(e) => {
            tracing::error!(
                function = plan.function,
                "cannot claim cron occurrence {at}: {e}"
            );
            return;
        }
    }
    let queue = &plan.queue;
    match queue.store.depth(&queue.name, now_us()).await {
        Ok(depth) if depth.ready + depth.waiting > 0 => tracing::warn!(
            function = plan.function,
            "skipping the {at} run of cron `{}`: the previous run is still going",
            plan.schedule
        ),
        Ok(_) => enqueue(plan, &at, past_due).await,
        Err(e) => {
            // Claimed, so nobody else will run it: better a possible overlap than a lost run.
            tracing::warn!(function = plan.function, "cannot read the cron queue: {e}");
            enqueue(plan, &at, past_due).await;
        }
    }
}

/// Queues the run of occurrence `at`, keyed by the occurrence.
async fn enqueue(plan: &CronPlan, at: &DateTime<Tz>, past_due: bool) {
    let queue = &plan.queue;
    let now = now_us();
    let message = NewMessage {
        idempotency_key: Some(format!("{}/{}", plan.key, micros(at))),
        event: event(plan, at, past_due),
        available_us: now,
    };
    // The occurrence is claimed, so nobody else will queue it: retry a failing store for a
    // while (the idempotency key makes a repeat harmless).
    let mut pause = Duration::from_millis(200);
    for attempt in 1..=ENQUEUE_TRIES {
        match queue
            .store
            .enqueue(
                &queue.name,
                vec![message.clone()],
                queue.dedup_window_us,
                now,
            )
            .await
        {
            Ok(_) => {
                queue.notify.notify_waiters();
                return;
            }
            Err(e) if attempt < ENQUEUE_TRIES => {
                tracing::warn!(
                    function = plan.function,
                    "cannot queue the {at} cron run yet: {e}"
                );
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => tracing::error!(
                function = plan.function,
                "gave up queueing the {at} cron run after {ENQUEUE_TRIES} tries: {e}"
            ),
        }
    }
}

fn event(plan: &CronPlan, at: &DateTime<Tz>, past_due: bool) -> Event {
    let scheduled = at
        .with_timezone(&Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Event {
        id: format!("cron/{}/{}", plan.function, micros(at)),
        source: format!("/cron/{}", plan.function),
        ty: "updraft.cron".to_owned(),
        subject: None,
        time: Some(scheduled.clone()),
        datacontenttype: Some("application/json".to_owned()),
        data: serde_json::json!({ "schedule": plan.schedule, "scheduled": scheduled, "past_due": past_due })
            .to_string()
            .into_bytes(),
        extensions: vec![("pastdue".to_owned(), past_due.to_string())],
    }
}

/// Parses a validated trigger's schedule and zone.
pub fn parse(schedule: &str, timezone: Option<&str>) -> anyhow::Result<(Cron, Tz)> {
    let cron: Cron = schedule
        .parse()
        .map_err(|e| anyhow::anyhow!("`{schedule}` is not a cron schedule: {e}"))?;
    let tz = match timezone {
        Some(tz) => tz
            .parse::<Tz>()
            .map_err(|_| anyhow::anyhow!("`{tz}` is not an IANA time zone"))?,
        None => Tz::UTC,
    };
    Ok((cron, tz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_shift_occurrences() {
        use chrono::TimeZone;
        let (cron, tz) = parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        let from = Utc
            .with_ymd_and_hms(2026, 1, 15, 0, 0, 0)
            .unwrap()
            .with_timezone(&tz);
        let next = cron.find_next_occurrence(&from, false).unwrap();
        assert_eq!(
            next.with_timezone(&Utc).to_rfc3339(),
            "2026-01-15T08:00:00+00:00"
        );
    }
}
