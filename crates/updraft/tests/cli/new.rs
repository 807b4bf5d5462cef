//! `updraft new`: a project that builds and runs outside this repository.

use std::time::Duration;

use updraft_test_support::{Server, run};

use crate::{bin, get};

#[tokio::test]
async fn a_new_http_rust_project_builds_and_serves_outside_the_repo() {
    let parent = tempfile::tempdir().unwrap();
    let out = run(
        bin(),
        &[
            "new",
            "http-rust",
            "hello-world",
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
    let dir = parent.path().join("hello-world");
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
        e.contains("no template `http-cobol`") && e.contains("`http-rust`"),
        "{e}"
    );
    let e = err(&["new", "http-rust", "Bad_Name", "--dir", p]);
    assert!(e.contains("not a valid project name"), "{e}");
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    let e = err(&["new", "http-rust", "taken", "--dir", p]);
    assert!(e.contains("already exists"), "{e}");
}
