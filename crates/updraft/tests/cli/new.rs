//! `updraft new`: a project that builds and runs outside this repository.

use std::time::Duration;

use updraft_test_support::{Server, run};

use crate::{bin, cli, eventually, get};

/// Runs `updraft new TEMPLATE NAME` in a fresh temp folder (outside this repository);
/// returns the folder (kept while alive) and the project.
fn new_project(template: &str, name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let parent = tempfile::tempdir().unwrap();
    let out = run(
        bin(),
        &[
            "new",
            template,
            name,
            "--dir",
            parent.path().to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = parent.path().join(name);
    (parent, dir)
}

#[tokio::test]
async fn a_new_http_rust_project_builds_and_serves_outside_the_repo() {
    let (_parent, dir) = new_project("http-rust", "hello-world");
    assert!(
        dir.join("updraft-sdk/wit/updraft.wit").is_file(),
        "the SDK and WIT are vendored"
    );
    // `up` runs the project's own build (cargo, wasm32-wasip2, crates from the registry).
    let server = Server::start(bin(), &dir, &[]);
    let (s, body) = get(&server, "/anything").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body, r#"{"message":"Hello from /anything","visits":1}"#);
    assert_eq!(
        get(&server, "/").await.1,
        r#"{"message":"Hello from /","visits":2}"#
    );
}

/// The function's log lines (`updraft logs --function`), as text.
fn logs(server: &Server, function: &str) -> String {
    let (code, out, err) = cli(server, &["logs", "--function", function, "--limit", "1000"]);
    assert_eq!(code, 0, "{err}");
    out
}

#[tokio::test]
async fn a_new_event_rust_project_builds_and_handles_work_from_a_topic_a_queue_and_cron() {
    let (_parent, dir) = new_project("event-rust", "jobs");
    for vendored in [
        "updraft-sdk/src/event.rs",
        "updraft-sdk/src/messaging.rs",
        "updraft-sdk/wit/updraft.wit",
    ] {
        assert!(dir.join(vendored).is_file(), "`{vendored}` is vendored");
    }
    // `updraft build` first: a cold cargo build (crates from the registry) on a busy machine
    // can outlast `up`'s start-up wait, and then `up` finds nothing stale.
    let out = run(
        bin(),
        &["build", dir.to_str().unwrap()],
        Duration::from_secs(600),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(bin(), &dir, &[]);

    let (code, out, err) = cli(&server, &["ls", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let functions: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(functions[0]["id"], "jobs", "{out}");
    assert_eq!(functions[0]["kind"], "event", "{out}");

    // Work from outside, the way the manifest's comment says: a topic the function consumes.
    let (code, _, err) = cli(
        &server,
        &[
            "events",
            "publish",
            "jobs-events",
            "--type",
            "task.created",
            "--data",
            r#"{"task":"hello"}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let handled = eventually(Duration::from_secs(30), async || {
        logs(&server, "jobs").contains(r#"handled task.created"#)
    })
    .await;
    let text = logs(&server, "jobs");
    assert!(handled, "the published event was not handled: {text}");
    assert!(
        text.contains(r#"(attempt 1, 1 so far): {"task":"hello"}"#),
        "{text}"
    );

    // By hand, and the kv count goes on.
    let (code, out, err) = cli(&server, &["invoke", "jobs", "--data", "by hand"]);
    assert_eq!(code, 0, "{out} {err}");
    // Log lines are stored in batches, a moment after the call returns.
    let logged = eventually(Duration::from_secs(30), async || {
        logs(&server, "jobs").contains("so far): by hand")
    })
    .await;
    let text = logs(&server, "jobs");
    assert!(logged && text.contains("handled updraft.invoke"), "{text}");

    // The cron trigger runs at the next full minute and queues a job, which the queue trigger
    // runs. (The job's run may log before the cron run's line, and land in an earlier batch.)
    let ticked = eventually(Duration::from_secs(120), async || {
        let text = logs(&server, "jobs");
        text.contains("handled job.tick") && text.contains("queued a `job.tick`")
    })
    .await;
    let text = logs(&server, "jobs");
    assert!(ticked, "no cron tick went through the queue: {text}");
    assert!(text.contains("queued a `job.tick`"), "{text}");
}

#[test]
fn new_refuses_unknown_templates_bad_names_and_existing_folders() {
    let parent = tempfile::tempdir().unwrap();
    let p = parent.path().to_str().unwrap();
    let err = |args: &[&str]| {
        let out = run(bin(), args, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(&["new", "http-cobol", "x", "--dir", p]);
    assert!(
        e.contains("no template `http-cobol`")
            && e.contains("`http-rust`")
            && e.contains("`event-rust`"),
        "{e}"
    );
    let help = run(bin(), &["new", "--help"], Duration::from_secs(30));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("`http-rust`") && help.contains("`event-rust`"),
        "{help}"
    );
    let e = err(&["new", "http-rust", "Bad_Name", "--dir", p]);
    assert!(e.contains("not a valid project name"), "{e}");
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    let e = err(&["new", "http-rust", "taken", "--dir", p]);
    assert!(e.contains("already exists"), "{e}");
}
