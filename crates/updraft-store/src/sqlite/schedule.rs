//! `ScheduleStore` on the platform state file.

use async_trait::async_trait;
use rusqlite::params;

use super::Db;
use crate::StoreError;
use crate::schedule::{Fired, ScheduleStore, ScheduledRun};

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

/// Claims an occurrence inside the caller's transaction; false if it was claimed before.
fn insert_claim(
    c: &rusqlite::Connection,
    trigger: &str,
    occurrence_us: i64,
    claimant: &str,
) -> Result<bool, StoreError> {
    c.execute(
        "INSERT INTO cron_claims (trigger, occurrence_us, claimant) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
        params![trigger, occurrence_us, claimant],
    )
    .map(|n| n == 1)
    .map_err(backend)
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
            .write(move |c| insert_claim(c, &trigger, occurrence_us, &claimant))
            .await
    }

    async fn claim_and_queue(
        &self,
        trigger: &str,
        occurrence_us: i64,
        claimant: &str,
        run: &ScheduledRun,
    ) -> Result<Fired, StoreError> {
        let (trigger, claimant, run) = (trigger.to_owned(), claimant.to_owned(), run.clone());
        // The cron queue lives in this same file: claim and run commit together.
        self.db
            .write(move |c| {
                if !insert_claim(c, &trigger, occurrence_us, &claimant)? {
                    return Ok(Fired::Lost);
                }
                if super::queue::holds_live(c, &run.queue)? {
                    return Ok(Fired::Skipped);
                }
                let message = std::slice::from_ref(&run.message);
                super::queue::enqueue_in(c, &run.queue, message, run.dedup_window_us, run.now_us)?;
                Ok(Fired::Queued)
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

    fn run(occurrence: i64) -> ScheduledRun {
        ScheduledRun {
            queue: "cron".into(),
            message: crate::queue::NewMessage {
                event: crate::queue::Event {
                    id: format!("t/{occurrence}"),
                    source: "/cron/t".into(),
                    ty: "updraft.cron".into(),
                    ..Default::default()
                },
                available_us: 0,
                idempotency_key: Some(format!("t/{occurrence}")),
            },
            dedup_window_us: 1_000_000,
            now_us: 0,
        }
    }

    #[tokio::test]
    async fn a_claim_and_its_run_commit_together() {
        use crate::queue::QueueStore;
        let dir = tempfile::tempdir().unwrap();
        let db = crate::sqlite::state::open(&dir.path().join("state.db")).unwrap();
        let s = SqliteSchedules::new(db.clone());
        let q = crate::sqlite::SqliteQueues::new(db.clone());
        assert_eq!(
            s.claim_and_queue("t", 1, "a", &run(1)).await.unwrap(),
            Fired::Queued
        );
        assert_eq!(q.depth("cron", 0).await.unwrap().ready, 1);
        assert_eq!(
            s.claim_and_queue("t", 1, "b", &run(1)).await.unwrap(),
            Fired::Lost
        );
        // The previous run is still queued: the next occurrence is claimed, not queued.
        assert_eq!(
            s.claim_and_queue("t", 2, "a", &run(2)).await.unwrap(),
            Fired::Skipped
        );
        assert_eq!(q.depth("cron", 0).await.unwrap().ready, 1);
        let leased = q.lease("cron", 1, 1_000, 0).await.unwrap();
        assert!(
            q.ack("cron", &leased[0].id, &leased[0].token)
                .await
                .unwrap()
        );
        assert_eq!(
            s.claim_and_queue("t", 3, "a", &run(3)).await.unwrap(),
            Fired::Queued
        );

        // A run that cannot be stored takes its claim with it: nothing half done to recover.
        db.write(|c| {
            c.execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON queue_messages
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .map_err(backend)
        })
        .await
        .unwrap();
        let leased = q.lease("cron", 1, 1_000, 0).await.unwrap();
        assert!(
            q.ack("cron", &leased[0].id, &leased[0].token)
                .await
                .unwrap()
        );
        let e = s.claim_and_queue("t", 4, "a", &run(4)).await.unwrap_err();
        assert!(e.to_string().contains("refused by the test"), "{e}");
        assert_eq!(s.last_claimed("t").await.unwrap(), Some(3));
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
