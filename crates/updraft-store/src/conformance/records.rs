//! What every [`RecordStore`] must do: invocation records newest first, filtered and paged
//! by time; logs in order, followed by position, filtered by function or invocation; pruning
//! by age.

use std::sync::Arc;

use crate::records::{InvocationQuery, InvocationRow, LogQuery, LogRow, RecordStore};

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
    assert_eq!(
        store
            .invocation("b")
            .await
            .expect("record store")
            .expect("record store")
            .function,
        "g"
    );
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
