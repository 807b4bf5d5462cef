//! `ScheduleStore` on the platform state file.

use async_trait::async_trait;
use rusqlite::params;

use super::Db;
use crate::StoreError;
use crate::schedule::ScheduleStore;

pub(crate) const SCHEMA: &str = "
CREATE TABLE cron_claims (
    trigger TEXT NOT NULL,
    occurrence_us INTEGER NOT NULL,
    claimant TEXT NOT NULL,
    claimed_us INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    PRIMARY KEY (trigger, occurrence_us)
) WITHOUT ROWID;
";

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Schedules in a SQLite file opened with [`super::state::open`].
#[derive(Clone)]
pub struct SqliteSchedules {
    db: Db,
}

impl SqliteSchedules {
    /// Schedules in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl ScheduleStore for SqliteSchedules {
    async fn claim(
        &self,
        trigger: &str,
        occurrence_us: i64,
        claimant: &str,
    ) -> Result<bool, StoreError> {
        let (trigger, claimant) = (trigger.to_owned(), claimant.to_owned());
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT INTO cron_claims (trigger, occurrence_us, claimant) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                    params![trigger, occurrence_us, claimant],
                )
                .map(|n| n == 1)
                .map_err(backend)
            })
            .await
    }

    async fn last_claimed(&self, trigger: &str) -> Result<Option<i64>, StoreError> {
        let trigger = trigger.to_owned();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT max(occurrence_us) FROM cron_claims WHERE trigger = ?1",
                    [trigger],
                    |r| r.get(0),
                )
                .map_err(backend)
            })
            .await
    }

    async fn prune(&self, before_us: i64) -> Result<u64, StoreError> {
        super::delete_in_batches(
            &self.db,
            "DELETE FROM cron_claims WHERE (trigger, occurrence_us) IN (
                 SELECT c.trigger, c.occurrence_us FROM cron_claims c
                 WHERE c.occurrence_us < ?1 AND c.occurrence_us <
                     (SELECT max(m.occurrence_us) FROM cron_claims m WHERE m.trigger = c.trigger)
                 LIMIT ?2)",
            before_us,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_schedules_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::sqlite::state::open(&dir.path().join("state.db")).unwrap();
        crate::conformance::schedule::run(Arc::new(SqliteSchedules::new(db))).await;
    }

    #[tokio::test]
    async fn prune_keeps_each_triggers_latest_claim() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::sqlite::state::open(&dir.path().join("state.db")).unwrap();
        let s = SqliteSchedules::new(db);
        for t in [1, 2, 3] {
            assert!(s.claim("a", t, "me").await.unwrap());
        }
        assert!(s.claim("b", 1, "me").await.unwrap());
        assert_eq!(
            s.prune(10).await.unwrap(),
            2,
            "a@1 and a@2 go; a@3 and b@1 stay"
        );
        assert_eq!(s.last_claimed("a").await.unwrap(), Some(3));
        assert_eq!(s.last_claimed("b").await.unwrap(), Some(1));
        assert!(!s.claim("a", 3, "other").await.unwrap());
    }
}
