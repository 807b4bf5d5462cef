//! The platform state file (`.updraft/state.db`): kv today; queues, topics, schedules and
//! invocation records as they land. Its schema version is SQLite's `user_version`.

use std::path::Path;

use super::Db;
use crate::StoreError;

/// Each entry upgrades the schema by one version; append, never edit.
const MIGRATIONS: &[&str] = &[
    super::kv::SCHEMA,
    super::records::SCHEMA,
    super::queue::SCHEMA,
    super::schedule::SCHEMA,
    super::topic::SCHEMA,
    super::asyncjobs::SCHEMA,
    RETENTION_INDEXES,
    super::records::MINUTES_SCHEMA,
    super::records::REQUEST_COLUMN,
    super::asyncjobs::CREATED_INDEX,
];

/// Lets the hourly retention find expired rows without scanning whole tables.
const RETENTION_INDEXES: &str = "
CREATE INDEX queue_dead ON queue_messages (dead_us) WHERE dead_us IS NOT NULL;
CREATE INDEX queue_dedup_expiry ON queue_dedup (expires_us);
CREATE INDEX topic_dedup_expiry ON topic_dedup (expires_us);
";

/// Opens (creating and upgrading) the platform state file.
pub fn open(path: &Path) -> Result<Db, StoreError> {
    Db::open(path, |conn| {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(i + 1).unwrap_or(i64::MAX),
            )?;
            tx.commit()?;
        }
        Ok(())
    })
}
