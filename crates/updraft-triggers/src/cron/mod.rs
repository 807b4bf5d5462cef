//! `[[trigger.cron]]`: run an event function on a schedule.
//!
//! Each occurrence is claimed in the platform state, so however many processes share it,
//! one wins; the winner enqueues a `updraft.cron` event into the trigger's own queue
//! (`_cron.<function>.<hash>`), keyed by the occurrence. The shared worker loop runs it with
//! one slot, so a cron run gets what every queued message gets: a lease kept while it runs,
//! retries with backoff when the function fails, redelivery after a `kill -9`, dead letters
//! (`updraft dlq ls`). An occurrence missed while nothing ran is caught up once, flagged
//! `pastdue`; one that comes while the previous run is still queued or running is skipped
//! (no pile-up). The schedule and zone are parsed once, when the manifest is read.

use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron as Schedule;
use serde::Deserialize;
use tokio::sync::watch;
use updraft_manifest::{LoadedManifest, ManifestError, unknown_function};
use updraft_runtime::{QueueHandle, now_us};
use updraft_store::{Event, Fired, NewMessage, ScheduleStore, ScheduledRun};

use crate::worker::{self, Delivery, EventConsumer};
use crate::{At, InfoContext, StartContext, Trigger, TriggerInfo};

/// One `[[trigger.cron]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronConfig {
    /// 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or an
    /// alias (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`).
    pub schedule: String,
    /// IANA time zone the schedule is read in (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// The event function to run.
    pub function: String,
}

/// A checked cron trigger, its schedule parsed.
pub struct Cron {
    function: String,
    schedule: String,
    cron: Schedule,
    tz: Tz,
    /// Identifies the trigger in the claims table (and its queue's name).
    key: String,
}

impl Trigger for Cron {
    const KIND: &'static str = "cron";
    type Config = CronConfig;

    fn new(config: CronConfig, app: &LoadedManifest, at: At) -> Result<Self, ManifestError> {
        let cron = parse_schedule(&config.schedule).map_err(|e| {
            let field = bad_cron_field(&config.schedule)
                .map(|f| format!("its {f} field is wrong: "))
                .unwrap_or_default();
            at.invalid(
                "schedule",
                format!(
                    "`{}` is not a cron schedule ({field}{e}); write 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or an alias like \"@hourly\"",
                    config.schedule
                ),
            )
        })?;
        let tz = match &config.timezone {
            None => Tz::UTC,
            Some(tz) => tz.parse::<Tz>().map_err(|_| {
                at.invalid(
                    "timezone",
                    format!(
                        "`{tz}` is not an IANA time zone; write one like \"Europe/Berlin\" or \"UTC\""
                    ),
                )
            })?,
        };
        if !app.manifest.function.contains_key(&config.function) {
            return Err(unknown_function(
                &app.manifest,
                at.key("function"),
                &config.function,
            ));
        }
        Ok(Self {
            key: format!("{}|{}|{}", config.function, config.schedule, tz.name()),
            function: config.function,
            schedule: config.schedule,
            cron,
            tz,
        })
    }

    fn function(&self) -> Option<&str> {
        Some(&self.function)
    }

    fn start(&self, at: At, node: &mut StartContext<'_>) -> anyhow::Result<()> {
        let function = node.event_function(at, &self.function)?;
        let queue = (node.platform_queue)(&queue_name(&self.function, &self.key));
        // Listed with the app's queues, so `updraft dlq` reaches its dead letters.
        node.queues.insert(queue.name.clone(), queue.clone());
        let consumer = Arc::new(EventConsumer {
            function,
            trigger: Self::KIND,
        });
        worker::spawn(queue.clone(), consumer, delivery(), node.stop.clone());
        let plan = CronPlan {
            key: self.key.clone(),
            schedule: self.schedule.clone(),
            cron: self.cron.clone(),
            tz: self.tz,
            function: self.function.clone(),
            claimant: node.claimant.clone(),
            queue,
        };
        spawn(plan, node.schedules.clone(), node.stop.clone());
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        Some(format!("cron `{}` ({})", self.schedule, self.tz.name()))
    }

    async fn info(&self, node: &InfoContext<'_>) -> anyhow::Result<TriggerInfo> {
        let last = node.schedules.last_claimed(&self.key).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot read the last run of cron trigger `{}` of function `{}`: {e}",
                self.schedule,
                self.function
            )
        })?;
        let now = Utc::now().with_timezone(&self.tz);
        let last_run = last
            .and_then(DateTime::from_timestamp_micros)
            .map(|t| utc_rfc3339(&t));
        let next_run = self
            .cron
            .find_next_occurrence(&now, false)
            .ok()
            .map(|t| utc_rfc3339(&t));
        Ok(TriggerInfo {
            kind: Self::KIND.to_owned(),
            summary: format!(
                "cron `{}` {}  last {}  next {}",
                self.schedule,
                self.tz.name(),
                last_run.as_deref().unwrap_or("-"),
                next_run.as_deref().unwrap_or("-")
            ),
            details: serde_json::json!({
                "schedule": self.schedule,
                "timezone": self.tz.name(),
                "last_run": last_run,
                "next_run": next_run,
            }),
        })
    }
}

fn utc_rfc3339<Z: TimeZone>(t: &DateTime<Z>) -> String {
    t.with_timezone(&Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse_schedule(s: &str) -> Result<Schedule, croner::errors::CronError> {
    s.parse()
}

/// Names the field that makes `schedule` invalid: the one whose replacement by `*` fixes it.
fn bad_cron_field(schedule: &str) -> Option<&'static str> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let names: &[&str] = match fields.len() {
        5 => &["minute", "hour", "day-of-month", "month", "day-of-week"],
        6 => &[
            "second",
            "minute",
            "hour",
            "day-of-month",
            "month",
            "day-of-week",
        ],
        _ => return None,
    };
    (0..fields.len()).find_map(|i| {
        let mut fixed = fields.clone();
        fixed[i] = "*";
        parse_schedule(&fixed.join(" ")).is_ok().then_some(names[i])
    })
}

/// Deliveries of one occurrence before it is dead-lettered.
const MAX_ATTEMPTS: u32 = 3;
/// Tries to queue a claimed occurrence (200 ms, doubling: about 6 s in all).
const ENQUEUE_TRIES: u32 = 5;

/// One cron trigger, ready to fire.
struct CronPlan {
    /// Identifies the trigger in the claims table.
    key: String,
    /// The schedule as written.
    schedule: String,
    /// The parsed schedule.
    cron: Schedule,
    /// The time zone it is read in.
    tz: Tz,
    /// The function it runs (for events and logs).
    function: String,
    /// Who claims (this process).
    claimant: String,
    /// The trigger's queue.
    queue: Arc<QueueHandle>,
}

/// The queue a cron trigger's runs go through: stable across restarts and nodes for the
/// same function, schedule and zone.
fn queue_name(function: &str, key: &str) -> String {
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
fn delivery() -> Delivery {
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
fn spawn(
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

/// Claims occurrence `at` (one process wins) and queues its run unless the previous run
/// is still queued or running: in one commit where the state backend can (SQLite), so no
/// crash comes between the claim and the run.
///
/// Elsewhere (JetStream) they are two steps, and a process that loses the claim queues the
/// run too, keyed by the occurrence: the queue's dedup makes that a no-op when the winner
/// queued it, and it is what runs the occurrence when the winner died between its claim
/// and its enqueue.
async fn fire(plan: &CronPlan, store: &dyn ScheduleStore, at: DateTime<Tz>, past_due: bool) {
    let queue = &plan.queue;
    let run = ScheduledRun {
        queue: queue.name.clone(),
        message: message(plan, &at, past_due),
        dedup_window_us: queue.dedup_window_us,
        now_us: now_us(),
    };
    let fired = match store
        .claim_and_queue(&plan.key, micros(&at), &plan.claimant, &run)
        .await
    {
        Ok(fired) => fired,
        Err(e) => {
            tracing::error!(
                function = plan.function,
                "cannot claim cron occurrence {at}: {e}"
            );
            return;
        }
    };
    if fired != Fired::Lost && failpoint("cron-after-claim") {
        // Tests arm this to die right after the claim.
        std::process::abort();
    }
    match fired {
        Fired::Queued => queue.notify.notify_waiters(),
        Fired::Skipped => skipped(plan, &at),
        Fired::Claimed | Fired::Lost => {
            let won = fired == Fired::Claimed;
            match queue.store.depth(&queue.name, now_us()).await {
                Ok(depth) if depth.ready + depth.waiting > 0 => {
                    if won {
                        skipped(plan, &at);
                    }
                }
                Ok(_) => enqueue(plan, &at, past_due).await,
                Err(e) => {
                    // Whether the previous run is going is unknown: better an overlap than
                    // a lost run.
                    tracing::warn!(function = plan.function, "cannot read the cron queue: {e}");
                    enqueue(plan, &at, past_due).await;
                }
            }
        }
    }
}

fn skipped(plan: &CronPlan, at: &DateTime<Tz>) {
    tracing::warn!(
        function = plan.function,
        "skipping the {at} run of cron `{}`: the previous run is still going",
        plan.schedule
    );
}

/// Whether the failure point `name` is armed (`UPDRAFT_FAILPOINT=<name>`): tests use it
/// to kill a process at a precise step. Never set in production.
fn failpoint(name: &str) -> bool {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var("UPDRAFT_FAILPOINT").ok())
        .as_deref()
        == Some(name)
}

/// Queues the run of occurrence `at`, keyed by the occurrence.
async fn enqueue(plan: &CronPlan, at: &DateTime<Tz>, past_due: bool) {
    let queue = &plan.queue;
    let now = now_us();
    let message = message(plan, at, past_due);
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

/// The run of occurrence `at`, keyed by the occurrence.
fn message(plan: &CronPlan, at: &DateTime<Tz>, past_due: bool) -> NewMessage {
    NewMessage {
        idempotency_key: Some(format!("{}/{}", plan.key, micros(at))),
        event: event(plan, at, past_due),
        available_us: now_us(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_shift_occurrences() {
        use chrono::TimeZone;
        let cron = parse_schedule("0 9 * * *").unwrap();
        let tz: Tz = "Europe/Berlin".parse().unwrap();
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
