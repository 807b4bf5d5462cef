//! What every [`RecordStore`] must do: invocation records newest first, filtered and paged
//! by time; logs in order, followed by position, filtered by function or invocation;
//! per-minute rollups that add up what was appended; pruning by age.

use std::sync::Arc;

use crate::records::{InvocationQuery, InvocationRow, LogQuery, LogRow, MINUTE_US, RecordStore};

fn inv(id: &str, function: &str, started_us: i64) -> InvocationRow {
    InvocationRow {
        id: id.into(),
        function: function.into(),
        trigger: "http".into(),
        started_us,
        cold: false,
        instantiate_us: 10,
        duration_us: 100,
        outcome: "ok".into(),
        error: None,
        request: Some(format!("GET /{id}")),
    }
}

fn log(invocation: &str, function: &str, line: &str, time_us: i64) -> LogRow {
    LogRow {
        seq: 0,
        time_us,
        function: function.into(),
        invocation: invocation.into(),
        stream: "stdout".into(),
        line: line.into(),
    }
}

/// Runs the suite. `make` returns a fresh, empty store each call.
pub async fn run(mut make: impl FnMut() -> Arc<dyn RecordStore>) {
    page_filter_follow_and_prune(make()).await;
    pruning_many_rows_removes_them_all(make()).await;
    minutes_add_up_what_was_appended(make()).await;
}

/// Rollups count each record once (in whichever batch it came, and not again when it is
/// written twice), per function and minute, with percentiles within 3%.
async fn minutes_add_up_what_was_appended(store: Arc<dyn RecordStore>) {
    let m = MINUTE_US;
    let mut rows: Vec<InvocationRow> = (1..=100)
        .map(|d| {
            let mut r = inv(&format!("f{d}"), "f", 10 * m + d * 1_000);
            r.duration_us = d * 1_000;
            r.cold = d == 1;
            if d % 10 == 0 {
                r.outcome = "error".into();
            }
            r
        })
        .collect();
    rows.push(inv("g1", "g", 11 * m + 5));
    let later = rows.split_off(50);
    store.append(rows.clone(), vec![]).await.expect("append");
    store.append(later, vec![]).await.expect("append");
    store
        .append(vec![rows[0].clone()], vec![])
        .await
        .expect("append again");

    let minutes = store.minutes(10 * m).await.expect("minutes");
    let summary: Vec<_> = minutes
        .iter()
        .map(|r| {
            (
                r.function.as_str(),
                r.minute_us,
                r.invocations,
                r.errors,
                r.cold,
            )
        })
        .collect();
    assert_eq!(summary, [("f", 10 * m, 100, 10, 1), ("g", 11 * m, 1, 0, 0)]);
    let near = |shown: i64, exact: i64| (shown - exact).abs() * 32 <= exact;
    let f = &minutes[0].durations;
    assert_eq!(f.len(), 100);
    assert!(near(f.percentile(50), 50_000), "{}", f.percentile(50));
    assert!(near(f.percentile(99), 99_000), "{}", f.percentile(99));
    assert_eq!(store.minutes(11 * m).await.expect("minutes").len(), 1);

    // Minute 10 ended before the cut-off and goes (with its 100 records); minute 11 stays.
    assert_eq!(store.prune(11 * m + 1, 0).await.expect("prune"), 101);
    let left = store.minutes(0).await.expect("minutes");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].function, "g");
}

/// More expired rows than a backend prunes at once (SQLite: 2,000 a write) all go, and the
/// young ones stay.
async fn pruning_many_rows_removes_them_all(store: Arc<dyn RecordStore>) {
    let old: Vec<LogRow> = (0..5_000).map(|i| log("old", "f", "x", i)).collect();
    let invocations: Vec<InvocationRow> =
        (0..4_500).map(|i| inv(&format!("i{i}"), "f", i)).collect();
    store.append(invocations, old).await.expect("append");
    store
        .append(
            vec![inv("young", "f", 10_000)],
            vec![log("young", "f", "y", 10_000)],
        )
        .await
        .expect("append");
    assert_eq!(store.prune(5_000, 5_000).await.expect("prune"), 9_500);
    let left = store
        .logs(LogQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("logs");
    assert_eq!(left.len(), 1);
    assert!(store.invocation("young").await.expect("get").is_some());
}

async fn page_filter_follow_and_prune(store: Arc<dyn RecordStore>) {
    store
        .append(
            vec![inv("a", "f", 1), inv("b", "g", 2), inv("c", "f", 3)],
            vec![
                log("a", "f", "one", 1),
                log("b", "g", "two", 2),
                log("c", "f", "three", 3),
            ],
        )
        .await
        .expect("record store");
    let all = store
        .invocations(InvocationQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("record store");
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["c", "b", "a"]
    );
    let f = store
        .invocations(InvocationQuery {
            function: Some("f".into()),
            before_us: Some(3),
            limit: 10,
        })
        .await
        .expect("record store");
    assert_eq!(f.len(), 1);
    let b = store
        .invocation("b")
        .await
        .expect("record store")
        .expect("record store");
    assert_eq!(b, inv("b", "g", 2), "a record reads back as written");
    let recent = store
        .logs(LogQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .expect("record store");
    assert_eq!(
        recent.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
        ["two", "three"]
    );
    let after = store
        .logs(LogQuery {
            after: Some(recent[0].seq),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("record store");
    assert_eq!(after.len(), 1);
    let by_inv = store
        .logs(LogQuery {
            invocation: Some("a".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("record store");
    assert_eq!(by_inv[0].line, "one");
    assert_eq!(store.prune(3, 2).await.expect("record store"), 3);
    assert_eq!(
        store
            .invocations(InvocationQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("record store")
            .len(),
        1
    );
}
