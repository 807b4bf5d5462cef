//! What every [`StreamStore`] must do: offsets per partition from 0 in append order,
//! ordered range reads, checkpoints that a replay can move under a consumer, dead letters
//! with their partition and offset, and retention by age and by size. On the real clock,
//! so a backend whose server stamps appends passes the same suite.

use std::sync::Arc;
use std::time::Duration;

use super::queue::now_us;
use crate::queue::Event;
use crate::stream::StreamStore;

const SEC: i64 = 1_000_000;
/// How far a server's clock may be from ours (one machine here).
const SLACK: i64 = SEC;

/// Who drops old events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// [`StreamStore::prune`] does (the embedded backend).
    Store,
    /// The server does by itself (JetStream's `max_age` and `max_bytes`); `prune` does
    /// nothing, and the suite does not check it.
    Server,
}

fn event(key: &str, seq: u32) -> Event {
    Event {
        id: format!("{key}-{seq}"),
        source: "/devices".into(),
        ty: "reading".into(),
        subject: Some(key.into()),
        data: format!("{{\"seq\":{seq}}}").into_bytes(),
        extensions: vec![("deviceid".into(), key.into())],
        ..Event::default()
    }
}

/// Runs the suite against an empty stream of at least 10 partitions.
pub async fn run(stream: Arc<dyn StreamStore>, retention: Retention) {
    let between = appends_and_reads_in_order(&*stream).await;
    checkpoints_move_only_from_where_they_were(&*stream).await;
    dead_letters_keep_partition_and_offset(&*stream).await;
    concurrent_appends_keep_per_partition_order(stream.clone()).await;
    if retention == Retention::Store {
        retention_drops_the_oldest(&*stream, between).await;
    }
}

/// Appends and reads back; returns a time between the two appends of partition 0.
async fn appends_and_reads_in_order(s: &dyn StreamStore) -> i64 {
    assert!(s.partitions().await.expect("partitions").is_empty());
    assert!(s.read(0, 0, 10).await.expect("read empty").is_empty());
    let batch = vec![
        (0, event("a", 0)),
        (1, event("b", 0)),
        (0, event("a", 1)),
        (0, event("a", 2)),
    ];
    let before = now_us();
    let offsets = s.append(batch, now_us()).await.expect("append");
    assert_eq!(offsets, [0, 0, 1, 2], "offsets count per partition from 0");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = now_us();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let offsets = s
        .append(vec![(1, event("b", 1)), (0, event("a", 3))], now_us())
        .await
        .expect("append");
    let after = now_us();
    assert_eq!(offsets, [1, 3]);
    let p0 = s.read(0, 0, 100).await.expect("read");
    assert_eq!(
        p0.iter().map(|r| r.event.id.as_str()).collect::<Vec<_>>(),
        ["a-0", "a-1", "a-2", "a-3"]
    );
    assert!(p0.iter().enumerate().all(|(i, r)| r.offset == i as u64));
    assert_eq!(p0[0].event, event("a", 0), "the event comes back whole");
    assert!(
        (before - SLACK..between).contains(&p0[0].appended_us),
        "stored when appended"
    );
    assert!((between..after + SLACK).contains(&p0[3].appended_us));
    let tail = s.read(0, 2, 1).await.expect("read from");
    assert_eq!(tail.len(), 1);
    assert_eq!((tail[0].offset, tail[0].event.id.as_str()), (2, "a-2"));
    assert!(s.read(0, 4, 10).await.expect("read past").is_empty());
    assert!(s.read(7, 0, 10).await.expect("read unknown").is_empty());
    let parts = s.partitions().await.expect("partitions");
    assert_eq!(
        parts
            .iter()
            .map(|p| (p.partition, p.first, p.next))
            .collect::<Vec<_>>(),
        [(0, 0, 4), (1, 0, 2)]
    );
    assert!(parts[0].bytes > 0);
    assert_eq!(s.offset_at(0, between).await.expect("offset_at"), 3);
    assert_eq!(s.offset_at(0, 0).await.expect("offset_at"), 0);
    assert_eq!(
        s.offset_at(0, after + 60 * SEC).await.expect("offset_at"),
        4
    );
    assert_eq!(s.offset_at(9, 0).await.expect("offset_at"), 0);
    between
}

async fn checkpoints_move_only_from_where_they_were(s: &dyn StreamStore) {
    assert_eq!(s.checkpoint("agg", 0).await.expect("checkpoint"), None);
    assert!(s.commit("agg", 0, None, 0).await.expect("first commit"));
    assert!(
        !s.commit("agg", 0, None, 3).await.expect("second first"),
        "a first commit does not overwrite one already there"
    );
    assert!(s.commit("agg", 0, Some(0), 2).await.expect("commit"));
    assert_eq!(s.checkpoint("agg", 0).await.expect("checkpoint"), Some(2));
    s.set_checkpoint("agg", 0, 0).await.expect("replay");
    assert!(
        !s.commit("agg", 0, Some(2), 4).await.expect("stale commit"),
        "a consumer that missed a replay does not undo it"
    );
    assert_eq!(s.checkpoint("agg", 0).await.expect("checkpoint"), Some(0));
    s.set_checkpoint("other", 1, 1).await.expect("set");
    let all = s.checkpoints().await.expect("checkpoints");
    assert_eq!(
        all.iter()
            .map(|c| (c.consumer.as_str(), c.partition, c.next))
            .collect::<Vec<_>>(),
        [("agg", 0, 0), ("other", 1, 1)]
    );
}

async fn dead_letters_keep_partition_and_offset(s: &dyn StreamStore) {
    let record = s.read(0, 2, 1).await.expect("read").remove(0);
    let t = now_us();
    s.dead_letter("agg", &record, "bad reading", t)
        .await
        .expect("dead letter");
    let other = s.read(1, 0, 1).await.expect("read").remove(0);
    s.dead_letter("other", &other, "nope", t + 1)
        .await
        .expect("dead letter");
    let agg = s.dead_letters(Some("agg"), 10).await.expect("list");
    assert_eq!(agg.len(), 1);
    assert_eq!(agg[0].record, record);
    assert_eq!((agg[0].error.as_str(), agg[0].dead_us), ("bad reading", t));
    assert_eq!(
        s.dead_letter_counts().await.expect("counts"),
        [("agg".to_owned(), 1), ("other".to_owned(), 1)]
    );
    let all = s.dead_letters(None, 10).await.expect("list all");
    assert_eq!(
        all.iter().map(|d| d.consumer.as_str()).collect::<Vec<_>>(),
        ["other", "agg"],
        "newest first"
    );
}

async fn concurrent_appends_keep_per_partition_order(s: Arc<dyn StreamStore>) {
    let mut tasks = Vec::new();
    for writer in 0..8u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0..25 {
                let key = format!("w{writer}");
                s.append(vec![(5, event(&key, seq))], now_us())
                    .await
                    .expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let records = s.read(5, 0, 1_000).await.expect("read");
    assert_eq!(records.len(), 200, "every acknowledged append is there");
    let mut last = std::collections::HashMap::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as u64, "offsets have no gaps");
        let key = r.event.subject.clone().unwrap_or_default();
        let seq: u32 = r
            .event
            .id
            .rsplit('-')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if let Some(prev) = last.insert(key, seq) {
            assert!(seq > prev, "one writer's events stay in order");
        }
    }
}

async fn retention_drops_the_oldest(s: &dyn StreamStore, between: i64) {
    let big = 1 << 40;
    // Nothing is old enough or big enough yet.
    assert_eq!(
        s.prune(now_us(), big, u64::MAX, big).await.expect("prune"),
        0
    );
    // By age: partition 0 holds a-0..a-2 from before `between`, a-3 from after it.
    let now = now_us();
    let went = s
        .prune(now, now - between, u64::MAX, big)
        .await
        .expect("prune by age");
    assert!(went >= 3, "{went}");
    let p0: Vec<u64> = s
        .read(0, 0, 100)
        .await
        .expect("read")
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(p0, [3], "the old ones went, the newer stayed");
    let parts = s.partitions().await.expect("partitions");
    assert_eq!((parts[0].first, parts[0].next), (3, 4));
    let offsets = s
        .append(vec![(0, event("a", 4))], now_us())
        .await
        .expect("append");
    assert_eq!(offsets, [4], "offsets go on after a prune");
    // By size: keep at most ~10 events' bytes of partition 5 (200 stored).
    let one = s.read(5, 0, 1).await.expect("read")[0].clone();
    let size = (one.event.data.len() + one.event.id.len() + 40) as u64;
    s.prune(now_us(), big, size * 10, big)
        .await
        .expect("prune by size");
    let left = s.read(5, 0, 1_000).await.expect("read");
    assert!((5..200).contains(&left.len()), "{}", left.len());
    assert_eq!(left.last().map(|r| r.offset), Some(199), "the newest stay");
    let p5 = s
        .partitions()
        .await
        .expect("partitions")
        .into_iter()
        .find(|p| p.partition == 5)
        .expect("partition 5");
    assert_eq!(p5.first, left[0].offset);
    assert!(p5.bytes <= size * 10, "{} > {}", p5.bytes, size * 10);
    // Dead letters go after their own retention.
    s.prune(now_us() + 200 * SEC, big, u64::MAX, 100 * SEC)
        .await
        .expect("prune dead");
    assert!(s.dead_letters(None, 10).await.expect("list").is_empty());
}
