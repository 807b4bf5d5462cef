//! `[[trigger.cron]]`: run an event function on a schedule. Each occurrence is claimed in the
//! platform state before it runs, so any number of processes on one store run it once. An
//! occurrence missed while nothing ran is caught up once, flagged `pastdue`; an occurrence
//! that comes while the previous run is still going is skipped (no overlap).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use tokio::sync::watch;
use updraft_runtime::{EventError, EventFunction, InvokeError};
use updraft_store::{Event, ScheduleStore};

/// One cron trigger, ready to run.
pub struct CronPlan {
    /// Identifies the trigger in the claims table.
    pub key: String,
    /// The schedule as written.
    pub schedule: String,
    /// The parsed schedule.
    pub cron: Cron,
    /// The time zone it is read in.
    pub tz: Tz,
    /// What runs.
    pub function: EventFunction,
    /// Who claims (this process).
    pub claimant: String,
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
        let plan = Arc::new(plan);
        let running = Arc::new(AtomicBool::new(false));
        catch_up(&plan, &*store, &running).await;
        loop {
            let now = Utc::now().with_timezone(&plan.tz);
            let next = match plan.cron.find_next_occurrence(&now, false) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(
                        function = plan.function.id(),
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
            fire(&plan, &*store, &running, next, false).await;
        }
    })
}

/// Runs the newest occurrence missed since the last claimed one, once.
async fn catch_up(plan: &Arc<CronPlan>, store: &dyn ScheduleStore, running: &Arc<AtomicBool>) {
    let last = match store.last_claimed(&plan.key).await {
        Ok(Some(last)) => last,
        Ok(None) => return, // never ran: nothing was missed
        Err(e) => {
            tracing::error!(
                function = plan.function.id(),
                "cannot read the last cron run: {e}"
            );
            return;
        }
    };
    let now = Utc::now().with_timezone(&plan.tz);
    let Ok(missed) = plan.cron.find_previous_occurrence(&now, true) else {
        return;
    };
    if micros(&missed) > last {
        fire(plan, store, running, missed, true).await;
    }
}

async fn fire(
    plan: &Arc<CronPlan>,
    store: &dyn ScheduleStore,
    running: &Arc<AtomicBool>,
    at: DateTime<Tz>,
    past_due: bool,
) {
    match store.claim(&plan.key, micros(&at), &plan.claimant).await {
        Ok(true) => {}
        Ok(false) => return, // another process has it
        Err(e) => {
            tracing::error!(
                function = plan.function.id(),
                "cannot claim cron occurrence {at}: {e}"
            );
            return;
        }
    }
    if running.swap(true, Ordering::AcqRel) {
        tracing::warn!(
            function = plan.function.id(),
            "skipping the {at} run of cron `{}`: the previous run is still going",
            plan.schedule
        );
        return;
    }
    let scheduled = at
        .with_timezone(&Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let event = Event {
        id: format!("cron/{}/{}", plan.function.id(), micros(&at)),
        source: format!("/cron/{}", plan.function.id()),
        ty: "updraft.cron".to_owned(),
        subject: None,
        time: Some(scheduled.clone()),
        datacontenttype: Some("application/json".to_owned()),
        data: serde_json::json!({ "schedule": plan.schedule, "scheduled": scheduled, "past_due": past_due })
            .to_string()
            .into_bytes(),
        extensions: vec![("pastdue".to_owned(), past_due.to_string())],
    };
    let (plan, running) = (plan.clone(), running.clone());
    tokio::spawn(async move {
        // Cleared however the run ends, a panic included.
        let _running = Running(running);
        // No free instance is not a run: wait for one (bounded) rather than lose the
        // occurrence.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
            match plan.function.invoke(vec![event.clone()], "cron", id).await {
                Err(EventError::Invoke(InvokeError::AtCapacity { .. }))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => break,
            }
        }
    });
}

/// Marks the trigger idle when dropped.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
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
