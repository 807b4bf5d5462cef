//! Schedules: one claim per cron occurrence, so however many nodes run a trigger, each
//! occurrence runs once.

use async_trait::async_trait;

use crate::StoreError;

/// Claims of cron occurrences.
#[async_trait]
pub trait ScheduleStore: Send + Sync + 'static {
    /// Claims occurrence `occurrence_us` of `trigger` for `claimant`; false if it was
    /// already claimed (by anyone).
    async fn claim(
        &self,
        trigger: &str,
        occurrence_us: i64,
        claimant: &str,
    ) -> Result<bool, StoreError>;
    /// Claims occurrence `occurrence_us` of `trigger` and, when the claim wins and `queue`
    /// (a queue of the same state backend) holds no live message, stores `run` on it, in
    /// one commit where the backend keeps both together, so no crash can come between the
    /// claim and the run. A backend that cannot only claims ([`Fired::Claimed`] or
    /// [`Fired::Lost`]) and the caller queues the run itself, keyed by the occurrence.
    async fn claim_and_queue(
        &self,
        trigger: &str,
        occurrence_us: i64,
        claimant: &str,
        run: &ScheduledRun,
    ) -> Result<Fired, StoreError> {
        let _ = run;
        Ok(match self.claim(trigger, occurrence_us, claimant).await? {
            true => Fired::Claimed,
            false => Fired::Lost,
        })
    }
    /// The latest claimed occurrence of `trigger`.
    async fn last_claimed(&self, trigger: &str) -> Result<Option<i64>, StoreError>;
    /// Forgets claims of occurrences before `before_us`, except each trigger's latest (which
    /// [`ScheduleStore::last_claimed`] reports); returns how many went.
    async fn prune(&self, before_us: i64) -> Result<u64, StoreError> {
        let _ = before_us;
        Ok(0)
    }
}

/// A cron occurrence's run, for [`ScheduleStore::claim_and_queue`].
#[derive(Debug, Clone)]
pub struct ScheduledRun {
    /// The queue it goes on.
    pub queue: String,
    /// The message (its idempotency key names the occurrence).
    pub message: crate::queue::NewMessage,
    /// The queue's dedup window.
    pub dedup_window_us: i64,
    /// Now.
    pub now_us: i64,
}

/// What [`ScheduleStore::claim_and_queue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    /// Another claimant had the occurrence.
    Lost,
    /// Claimed; the run is not queued yet (the caller queues it).
    Claimed,
    /// Claimed and queued, in one commit.
    Queued,
    /// Claimed, and not queued: the previous run was still queued or running.
    Skipped,
}
