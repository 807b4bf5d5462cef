//! The embedded backends: SQLite in WAL mode with `synchronous=FULL`, writes group-committed
//! by one writer thread per file, reads from a small pool of connections.

mod asyncjobs;
mod db;
mod kv;
mod queue;
mod records;
mod schedule;
mod sql;
pub mod state;
mod topic;

pub use asyncjobs::SqliteAsyncJobs;
pub use db::Db;
pub use kv::SqliteKv;
pub use queue::SqliteQueues;
pub use records::SqliteRecords;
pub use schedule::SqliteSchedules;
pub use sql::SqliteSql;
pub use topic::SqliteTopics;
