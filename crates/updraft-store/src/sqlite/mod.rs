//! The embedded backends: SQLite in WAL mode with `synchronous=FULL`, writes group-committed
//! by one writer thread per file, reads from a small pool of connections.

mod asyncjobs;
mod db;
mod guest;
mod kv;
mod queue;
mod records;
mod schedule;
mod sql;
pub mod state;
mod stream;
mod topic;

pub use asyncjobs::SqliteAsyncJobs;
pub use db::{ConnectionGuard, Db};
pub use kv::SqliteKv;
pub use queue::SqliteQueues;
pub use records::SqliteRecords;
pub use schedule::SqliteSchedules;
pub use sql::SqliteSql;
pub use stream::SqliteStream;
pub use topic::SqliteTopics;

use crate::StoreError;

/// Rows one retention write deletes at most, so other writers never wait long behind it.
const PRUNE_BATCH: i64 = 2_000;

/// Runs `delete` (a statement taking the cutoff as `?1` and a batch size as `?2`) until it
/// deletes nothing, one write per batch; returns how many rows went.
pub(crate) async fn delete_in_batches(
    db: &Db,
    delete: &'static str,
    cutoff: i64,
) -> Result<u64, StoreError> {
    let mut total = 0u64;
    // Bounded: a state file with more than 20 million expired rows is pruned over several
    // passes.
    for _ in 0..10_000 {
        let n = db
            .write(move |c| {
                c.execute(delete, [cutoff, PRUNE_BATCH])
                    .map_err(|e| StoreError::Backend(e.to_string()))
            })
            .await?;
        total += n as u64;
        if (n as i64) < PRUNE_BATCH {
            break;
        }
    }
    Ok(total)
}
