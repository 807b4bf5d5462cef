//! End-to-end tests of the `updraft` binary: real guest components (from `tests/guests`),
//! real processes, HTTP on real sockets.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod admin;
mod async_jobs;
mod blob_binding;
mod browser;
mod buckets;
mod cluster;
mod cron;
mod dashboard;
mod errors;
mod escape;
mod files;
mod gateway;
mod lifecycle;
mod limits;
mod malformed;
mod new;
mod pipelines;
mod postgres;
mod queues;
mod reliability;
mod scenarios;
mod serve;
mod showcase;
mod state;
mod streams;
mod topics;
mod web_app;

use std::time::Duration;

use updraft_test_support::{AppDir, Server, guests, run};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_updraft")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// An app whose function `kitchen` (the kitchen-sink guest) serves `/k/...`, plus `extra`
/// manifest text appended.
pub fn kitchen_app(extra: &str) -> AppDir {
    let app = AppDir::new(&format!(
        r#"
[app]
name = "kitchen"

[function.kitchen]
source = "kitchen.wasm"

[[trigger.http]]
route = "/k/..."
function = "kitchen"
{extra}"#
    ));
    app.guest(guests::KITCHEN, "kitchen.wasm");
    app
}

/// Runs the CLI against `server`; returns exit code, stdout and stderr.
pub fn cli(server: &Server, args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--server", &server.base]);
    let out = run(bin(), &all, Duration::from_secs(30));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rounds of each `kill -9` soak: two in the test command, more from `scripts/soak`
/// (`UPDRAFT_SOAK_ROUNDS`).
pub fn soak_rounds() -> usize {
    std::env::var("UPDRAFT_SOAK_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2)
}

/// Waits until `check` holds, up to `limit`.
pub async fn eventually<F: AsyncFnMut() -> bool>(limit: Duration, mut check: F) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// An app from `manifest` with the kitchen-sink guest as `kitchen.wasm` and the event
/// worker as `worker.wasm`.
pub fn kitchen_and_worker(manifest: &str) -> AppDir {
    let app = AppDir::new(manifest);
    app.guest(guests::KITCHEN, "kitchen.wasm");
    app.guest(guests::WORKER, "worker.wasm");
    app
}

pub fn start(app: &AppDir) -> Server {
    Server::start(bin(), app.path(), &[])
}

pub async fn get(server: &Server, path: &str) -> (u16, String) {
    let r = client()
        .get(server.url(path))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// POSTs `body` to `path`; the status and the body as text.
pub async fn post(server: &Server, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let r = client()
        .post(server.url(path))
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

pub fn start_no_build(app: &AppDir) -> Server {
    Server::start(bin(), app.path(), &["--no-build"])
}

/// Polls `/_updraft/metrics` until it contains every needle (invocations are recorded when
/// they finish, which may be just after the response). Returns the last scrape.
pub async fn wait_metrics(server: &Server, needles: &[&str]) -> String {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, m) = get(server, "/_updraft/metrics").await;
        if needles.iter().all(|n| m.contains(n)) || std::time::Instant::now() > end {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 30 s) until `server` has logged `needle` to stderr, and fails the test with
/// that output otherwise. Unlike `Captured::wait_for` it yields, so a request spawned on this
/// test's single-threaded runtime keeps running meanwhile.
pub async fn stderr_shows(server: &Server, needle: &str) {
    assert!(
        eventually(Duration::from_secs(30), async || server
            .stderr
            .text()
            .contains(needle))
        .await,
        "no `{needle}` in:\n{}",
        server.stderr.text()
    );
}

/// The first line `server` logged to stderr with `needle` in it, once there is one (up to
/// 30 s, as [`stderr_shows`]).
pub async fn logged_line(server: &Server, needle: &str) -> String {
    stderr_shows(server, needle).await;
    let text = server.stderr.text();
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_default()
        .to_owned()
}

/// Copies `examples/<name>` (without build output or state) into a temp folder, pointing
/// relative `path = "…"` dependencies of its Cargo.toml files back at the repository.
pub fn copy_example(name: &str) -> tempfile::TempDir {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .canonicalize()
        .unwrap();
    let dst = tempfile::tempdir().unwrap();
    copy_tree(&src, dst.path());
    share_wasm_target(dst.path());
    dst
}

/// Copies several examples side by side into one temp folder (`<tmp>/<name>/…`), as
/// [`copy_example`] copies one: for an app that uses its siblings' functions (the showcase).
pub fn copy_examples(names: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for name in names {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name)
            .canonicalize()
            .unwrap();
        let dst = root.path().join(name);
        std::fs::create_dir_all(&dst).unwrap();
        copy_tree(&src, &dst);
        share_wasm_target(&dst);
    }
    root
}

/// Points the `target/` of each cargo workspace in a copied example (its root or one folder
/// down) at one folder shared by every example, so their common wasm dependencies (wstd,
/// serde, wit-bindgen, the SDK) are compiled once per test run, not once per example. The
/// examples' binary names are distinct and cargo locks the folder while it builds.
fn share_wasm_target(example: &std::path::Path) {
    let shared = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("example-wasm");
    std::fs::create_dir_all(&shared).unwrap();
    let mut dirs = vec![example.to_path_buf()];
    for entry in std::fs::read_dir(example).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            dirs.push(entry.path());
        }
    }
    for dir in dirs {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        if manifest.lines().any(|l| l.trim() == "[workspace]") {
            std::os::unix::fs::symlink(&shared, dir.join("target")).unwrap();
        }
    }
}

fn copy_tree(src: &std::path::Path, dst: &std::path::Path) {
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".updraft" {
            continue;
        }
        let to = dst.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            copy_tree(&entry.path(), &to);
        } else if name == "Cargo.toml" {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let mut out = String::new();
            for line in text.lines() {
                let absolute = line.split_once("path = \"").and_then(|(before, rest)| {
                    let (rel, after) = rest.split_once('"')?;
                    let target = src.join(rel).canonicalize().ok()?;
                    Some(format!("{before}path = \"{}\"{after}", target.display()))
                });
                out.push_str(&absolute.unwrap_or_else(|| line.to_owned()));
                out.push('\n');
            }
            std::fs::write(&to, out).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}
