//! What every [`StreamStore`] must do: offsets per partition from 0 in append order,
//! ordered range reads, checkpoints that a replay can move under a consumer, dead letters
//! with their partition and offset, and retention by age and by size.

use std::sync::Arc;

use crate::queue::Event;
use crate::stream::StreamStore;

const SEC: i64 = 1_000_000;

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

/// Runs the suite against an empty stream.
pub async fn run(stream: Arc<dyn StreamStore>) {
    appends_and_reads_in_order(&*stream).await;
    checkpoints_move_only_from_where_they_were(&*stream).await;
    dead_letters_keep_partition_and_offset(&*stream).await;
    concurrent_appends_keep_per_partition_order(stream.clone()).await;
    retention_drops_the_oldest(&*stream).await;
}

async fn appends_and_reads_in_order(s: &dyn StreamStore) {
    assert!(s.partitions().await.expect("partitions").is_empty());
    assert!(s.read(0, 0, 10).await.expect("read empty").is_empty());
    let batch = vec![
        (0, event("a", 0)),
        (1, event("b", 0)),
        (0, event("a", 1)),
        (0, event("a", 2)),
    ];
    let offsets = s.append(batch, 100 * SEC).await.expect("append");
    assert_eq!(offsets, [0, 0, 1, 2], "offsets count per partition from 0");
    let offsets = s
        .append(vec![(1, event("b", 1)), (0, event("a", 3))], 200 * SEC)
        .await
        .expect("append");
    assert_eq!(offsets, [1, 3]);
    let p0 = s.read(0, 0, 100).await.expect("read");
    assert_eq!(
        p0.iter().map(|r| r.event.id.as_str()).collect::<Vec<_>>(),
        ["a-0", "a-1", "a-2", "a-3"]
    );
    assert!(p0.iter().enumerate().all(|(i, r)| r.offset == i as u64));
    assert_eq!(p0[0].event, event("a", 0), "the event comes back whole");
    assert_eq!(
        (p0[0].appended_us, p0[3].appended_us),
        (100 * SEC, 200 * SEC)
    );
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
    assert_eq!(s.offset_at(0, 150 * SEC).await.expect("offset_at"), 3);
    assert_eq!(s.offset_at(0, 0).await.expect("offset_at"), 0);
    assert_eq!(s.offset_at(0, 999 * SEC).await.expect("offset_at"), 4);
    assert_eq!(s.offset_at(9, 0).await.expect("offset_at"), 0);
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
    s.dead_letter("agg", &record, "bad reading", 300 * SEC)
        .await
        .expect("dead letter");
    let other = s.read(1, 0, 1).await.expect("read").remove(0);
    s.dead_letter("other", &other, "nope", 301 * SEC)
        .await
        .expect("dead letter");
    let agg = s.dead_letters(Some("agg"), 10).await.expect("list");
    assert_eq!(agg.len(), 1);
    assert_eq!(agg[0].record, record);
    assert_eq!(
        (agg[0].error.as_str(), agg[0].dead_us),
        ("bad reading", 300 * SEC)
    );
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
                s.append(vec![(5, event(&key, seq))], 400 * SEC)
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

async fn retention_drops_the_oldest(s: &dyn StreamStore) {
    let big = 1 << 40;
    // Nothing is old enough or big enough yet.
    assert_eq!(
        s.prune(400 * SEC, big, u64::MAX, big).await.expect("prune"),
        0
    );
    // By age: partition 0 holds a-0..a-2 at 100 s and a-3 at 200 s.
    let went = s
        .prune(250 * SEC, 100 * SEC, u64::MAX, 1_000 * SEC)
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
        .append(vec![(0, event("a", 4))], 500 * SEC)
        .await
        .expect("append");
    assert_eq!(offsets, [4], "offsets go on after a prune");
    // By size: keep at most ~10 events' bytes of partition 5 (200 stored).
    let one = s.read(5, 0, 1).await.expect("read")[0].clone();
    let size = (one.event.data.len() + one.event.id.len() + 40) as u64;
    s.prune(500 * SEC, big, size * 10, big)
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
    s.prune(1_000 * SEC, big, u64::MAX, 100 * SEC)
        .await
        .expect("prune dead");
    assert!(s.dead_letters(None, 10).await.expect("list").is_empty());
}
