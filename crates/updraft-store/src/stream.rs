//! Streams: an append-only log per partition, read in order by consumers that keep a
//! checkpoint per partition (the next offset they will read). A consumer that cannot
//! process a record dead-letters it with its partition and offset and goes on.
//!
//! One [`StreamStore`] holds one `[stream.<name>]`. Which partition an event goes to is
//! the caller's choice ([`partition_of`] hashes a key), so every backend places keys alike.

use async_trait::async_trait;

use crate::StoreError;
use crate::queue::Event;

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Its partition.
    pub partition: u32,
    /// Its offset in the partition (from 0, increasing by one).
    pub offset: u64,
    /// When it was stored.
    pub appended_us: i64,
    /// The event.
    pub event: Event,
}

/// A partition's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionState {
    /// The partition.
    pub partition: u32,
    /// The oldest offset still kept (equal to `next` when it is empty).
    pub first: u64,
    /// The offset the next event will get.
    pub next: u64,
    /// Bytes of events kept.
    pub bytes: u64,
}

/// Where a consumer is in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The consumer (a stream trigger's name).
    pub consumer: String,
    /// The partition.
    pub partition: u32,
    /// The next offset it will read.
    pub next: u64,
}

/// A record a consumer gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDeadLetter {
    /// The consumer that gave up.
    pub consumer: String,
    /// The record.
    pub record: StreamRecord,
    /// Why.
    pub error: String,
    /// When.
    pub dead_us: i64,
}

/// A durable partitioned log with consumer checkpoints.
#[async_trait]
pub trait StreamStore: Send + Sync + 'static {
    /// Stores each `(partition, event)`; durable when it returns. Returns each event's
    /// offset, in the order given; events of one partition keep their order.
    async fn append(&self, events: Vec<(u32, Event)>, now_us: i64) -> Result<Vec<u64>, StoreError>;
    /// Up to `max` records of `partition` from offset `from` (inclusive), oldest first.
    async fn read(
        &self,
        partition: u32,
        from: u64,
        max: u32,
    ) -> Result<Vec<StreamRecord>, StoreError>;
    /// Every partition that has ever had an event, by number.
    async fn partitions(&self) -> Result<Vec<PartitionState>, StoreError>;
    /// The first offset of `partition` stored at or after `time_us` (its `next` when none).
    async fn offset_at(&self, partition: u32, time_us: i64) -> Result<u64, StoreError>;
    /// Where `consumer` is in `partition`, if it has started there.
    async fn checkpoint(&self, consumer: &str, partition: u32) -> Result<Option<u64>, StoreError>;
    /// Moves `consumer`'s checkpoint in `partition` to `next` if it is still `expected`
    /// (`None`: not yet set); says whether it moved. A replay that moved it meanwhile wins.
    async fn commit(
        &self,
        consumer: &str,
        partition: u32,
        expected: Option<u64>,
        next: u64,
    ) -> Result<bool, StoreError>;
    /// Sets `consumer`'s checkpoint in `partition` (a replay).
    async fn set_checkpoint(
        &self,
        consumer: &str,
        partition: u32,
        next: u64,
    ) -> Result<(), StoreError>;
    /// Every consumer's checkpoints, by consumer, then partition.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// Records that `consumer` gave up on `record`.
    async fn dead_letter(
        &self,
        consumer: &str,
        record: &StreamRecord,
        error: &str,
        now_us: i64,
    ) -> Result<(), StoreError>;
    /// Dead letters, newest first, of one consumer or all.
    async fn dead_letters(
        &self,
        consumer: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StreamDeadLetter>, StoreError>;
    /// Takes or renews `holder`'s claim on `consumer`'s `partition` until `now_us + ttl_us`;
    /// `false` while another holder's claim is live. Several nodes sharing a backend consume
    /// each partition on one node at a time this way, and a dead node's partitions move
    /// once its claims lapse. A backend only one process opens keeps this default.
    async fn claim(
        &self,
        consumer: &str,
        partition: u32,
        holder: &str,
        now_us: i64,
        ttl_us: i64,
    ) -> Result<bool, StoreError> {
        let _ = (consumer, partition, holder, now_us, ttl_us);
        Ok(true)
    }
    /// How many dead letters each consumer has.
    async fn dead_letter_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Drops events stored before `now_us - retention_us`, then the oldest of any partition
    /// holding more than `max_bytes`, and dead letters older than `dead_retention_us`;
    /// returns how many rows went.
    async fn prune(
        &self,
        now_us: i64,
        retention_us: i64,
        max_bytes: u64,
        dead_retention_us: i64,
    ) -> Result<u64, StoreError> {
        // Backends whose server applies these limits itself (JetStream) keep this default.
        let _ = (now_us, retention_us, max_bytes, dead_retention_us);
        Ok(0)
    }
}

/// The partition of `key` among `partitions`: FNV-1a, stable across processes, builds and
/// backends, so one key always lands in one partition.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    u32::try_from(hash % u64::from(partitions.max(1))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: a change here moves every stored key to another partition.
        assert_eq!(partition_of("a", 16), 12); // FNV-1a("a") = 0xaf63dc4c8601ec8c
        assert_eq!(partition_of("device-1", 1), 0);
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            counts[partition_of(&format!("device-{i}"), 16) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
