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
    /// The latest claimed occurrence of `trigger`.
    async fn last_claimed(&self, trigger: &str) -> Result<Option<i64>, StoreError>;
    /// Forgets claims of occurrences before `before_us`, except each trigger's latest (which
    /// [`ScheduleStore::last_claimed`] reports); returns how many went.
    async fn prune(&self, before_us: i64) -> Result<u64, StoreError> {
        let _ = before_us;
        Ok(0)
    }
}
