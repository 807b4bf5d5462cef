//! End-to-end tests of the `updraft` binary: real guest components (from `tests/guests`),
//! real processes, HTTP on real sockets.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod admin;
mod errors;
mod lifecycle;
mod limits;
mod new;
mod serve;
mod state;

use std::time::Duration;

use updraft_test_support::{AppDir, Server, guests};

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

pub fn start_no_build(app: &AppDir) -> Server {
    Server::start(bin(), app.path(), &["--no-build"])
}

/// Polls `/_updraft/metrics` until it contains every needle (invocations are recorded when
/// they finish, which may be just after the response). Returns the last scrape.
pub async fn wait_metrics(server: &Server, needles: &[&str]) -> String {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, m) = get(server, "/_updraft/metrics").await;
        if needles.iter().all(|n| m.contains(n)) || std::time::Instant::now() > end {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
