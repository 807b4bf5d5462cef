//! Where state lives: one trait per capability, a conformance suite per trait, the
//! embedded SQLite backends ([`sqlite`]) and the cluster backends on NATS JetStream
//! ([`nats`]), PostgreSQL (user databases, [`postgres`]) and S3 (buckets, [`s3`]).
//!
//! * [`KvStore`]: platform key-value state (a namespace per `[kv.<label>]`), kept in
//!   `.updraft/state.db` on the embedded backend.
//! * [`SqlStore`]: a user database (`[sql.<label>]`), one SQLite file each on the embedded
//!   backend, never the platform's own file, or a database on a PostgreSQL server.
//!
//! * [`StreamStore`]: a partitioned log with consumer checkpoints (`[stream.<name>]`), a
//!   SQLite file of its own per stream on the embedded backend.
//! * [`QueueStore`], [`TopicStore`], [`ScheduleStore`]: queues, topic logs, cron claims;
//!   [`RecordStore`], [`AsyncStore`]: a node's invocation records and async invocations.
//!
//! The traits use no backend types. A backend is done when its conformance suite
//! ([`conformance`]) passes against the real thing: add a module with the backend, a test
//! that calls `conformance::<trait>::run` with a factory for it, and register its maker in
//! `updraft-server`'s `backends` (one line).

pub mod asyncjobs;
pub mod blob;
pub mod conformance;
mod error;
pub mod fs;
pub mod kv;
pub mod nats;
pub mod postgres;
pub mod queue;
pub mod records;
pub mod s3;
pub mod schedule;
mod spool;
pub mod sql;
pub mod sqlite;
pub mod stream;
pub mod tls;
pub mod topic;
pub mod writers;

pub use asyncjobs::{AsyncJob, AsyncStore};
pub use blob::{
    BlobError, BlobStore, ByteStream, ObjectMeta, ObjectPage, PutCondition, PutOptions,
};
pub use error::StoreError;
pub use kv::{KeyPage, KvStore};
pub use queue::{DeadLetter, Event, Leased, NewMessage, QueueDepth, QueueStore};
pub use records::{
    Durations, InvocationQuery, InvocationRow, LogQuery, LogRow, MINUTE_US, MinuteRow, RecordStore,
};
pub use schedule::{Fired, ScheduleStore, ScheduledRun};
pub use sql::{Migration, RowSet, SqlError, SqlLimits, SqlLoad, SqlStore, TableInfo, Value};
pub use stream::{
    Checkpoint, PartitionState, StreamDeadLetter, StreamRecord, StreamStore, partition_of,
};
pub use topic::{LogEntry, ReplayFrom, Subscription, TopicStore};
