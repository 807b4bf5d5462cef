//! What every [`AsyncStore`] must do: `submit` stores the request and queues it (a message
//! whose event id is the job's id) so that neither happens without the other; the job
//! moves queued → running → its outcome; old outcomes are pruned.

use std::sync::Arc;

use crate::asyncjobs::{AsyncJob, AsyncStore};
use crate::queue::QueueStore;

/// Runs the suite. `make` returns a fresh, empty store each call, with the queue store its
/// `submit` enqueues into.
pub async fn run(mut make: impl FnMut() -> (Arc<dyn AsyncStore>, Arc<dyn QueueStore>)) {
    submit_queues_and_finish_records(make()).await;
    submitting_twice_runs_once(make()).await;
    recent_lists_the_newest_without_bodies(make()).await;
}

/// `recent` lists newest first, per function when asked, bounded, and leaves bodies out.
async fn recent_lists_the_newest_without_bodies(
    (jobs, _queues): (Arc<dyn AsyncStore>, Arc<dyn QueueStore>),
) {
    for (i, function) in ["f", "g", "f", "f"].iter().enumerate() {
        let job = AsyncJob {
            id: format!("j{i}"),
            function: (*function).into(),
            method: "POST".into(),
            path: "/".into(),
            body: vec![b'x'; 100],
            ..AsyncJob::default()
        };
        let at = 10 + i64::try_from(i).expect("small");
        jobs.submit(job, "_async", at).await.expect("submit");
    }
    let ids = |list: Vec<AsyncJob>| list.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let all = jobs.recent(None, 10).await.expect("recent");
    assert!(all.iter().all(|j| j.body.is_empty()), "no bodies: {all:?}");
    assert_eq!(all[0].status, "queued");
    assert_eq!(ids(all), ["j3", "j2", "j1", "j0"]);
    let f = jobs.recent(Some("f"), 2).await.expect("recent");
    assert_eq!(ids(f), ["j3", "j2"]);
    assert!(jobs.recent(Some("h"), 10).await.expect("recent").is_empty());
}

async fn submit_queues_and_finish_records(
    (jobs, queues): (Arc<dyn AsyncStore>, Arc<dyn QueueStore>),
) {
    let job = AsyncJob {
        id: "a1".into(),
        function: "f".into(),
        method: "POST".into(),
        path: "/x?y=1".into(),
        headers: vec![("content-type".into(), "text/plain".into())],
        body: b"hi".to_vec(),
        ..AsyncJob::default()
    };
    jobs.submit(job.clone(), "_async", 10)
        .await
        .expect("async store");
    let leased = queues
        .lease("_async", 10, 1_000_000, 10)
        .await
        .expect("async store");
    assert_eq!(leased[0].event.id, "a1", "queued in the same commit");
    let stored = jobs
        .get("a1")
        .await
        .expect("async store")
        .expect("async store");
    assert_eq!(
        (
            stored.status.as_str(),
            stored.headers.clone(),
            stored.body.clone()
        ),
        ("queued", job.headers.clone(), job.body.clone())
    );
    assert_eq!(
        jobs.pending("f").await.expect("pending"),
        (1, 2),
        "one unfinished job of 2 body bytes"
    );
    assert_eq!(jobs.pending("g").await.expect("pending"), (0, 0));
    jobs.start("a1").await.expect("async store");
    assert_eq!(
        jobs.get("a1")
            .await
            .expect("async store")
            .expect("async store")
            .status,
        "running"
    );
    let mut done = stored;
    done.status = "succeeded".into();
    done.response_status = Some(201);
    done.response_body = b"made".to_vec();
    jobs.finish(&done, 20).await.expect("async store");
    assert_eq!(
        jobs.pending("f").await.expect("pending"),
        (0, 0),
        "finished"
    );
    let got = jobs
        .get("a1")
        .await
        .expect("async store")
        .expect("async store");
    assert_eq!(
        (got.status.as_str(), got.response_status, got.finished_us),
        ("succeeded", Some(201), Some(20))
    );
    assert_eq!(jobs.prune(21).await.expect("async store"), 1);
    assert!(jobs.get("a1").await.expect("async store").is_none());
}

/// A client that retries a submit whose answer it lost must not get two runs.
async fn submitting_twice_runs_once((jobs, queues): (Arc<dyn AsyncStore>, Arc<dyn QueueStore>)) {
    let job = AsyncJob {
        id: "twice".into(),
        function: "f".into(),
        method: "POST".into(),
        path: "/".into(),
        ..AsyncJob::default()
    };
    jobs.submit(job.clone(), "_async", 10)
        .await
        .expect("first submit");
    // Either refused or a no-op, never a second queued run.
    let _ = jobs.submit(job, "_async", 11).await;
    let leased = queues
        .lease("_async", 10, 1_000_000, 12)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1, "one job, one run: {leased:?}");
}
