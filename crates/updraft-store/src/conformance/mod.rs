//! Conformance suites: every backend of a trait must pass its suite against the real thing.
//! They panic on the first failure, so call them from a `#[test]`.

pub mod asyncjobs;
pub mod blob;
pub mod kv;
pub mod queue;
pub mod records;
pub mod schedule;
pub mod sql;
pub mod stream;
pub mod topic;
