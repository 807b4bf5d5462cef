//! Scenario 6, `examples/web-app`: an SPA served statically calling a JSON API backed by sql
//! and kv, built from a clean copy and driven over HTTP and in headless Chromium.

use std::process::Command;

use serde_json::{Value, json};
use updraft_test_support::Server;

use crate::{bin, client, copy_example, get};

async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut r = client().request(method, server.url(path));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The page as headless Chromium renders it, after its scripts ran.
fn rendered(url: &str) -> String {
    rendered_page(url).dom
}

/// A page as headless Chromium rendered it.
pub(crate) struct Rendered {
    /// The DOM after the page's scripts ran.
    pub(crate) dom: String,
    /// What Chromium logged: console messages and uncaught errors among it.
    pub(crate) log: String,
}

/// `url` rendered by headless Chromium, with what it logged.
pub(crate) fn rendered_page(url: &str) -> Rendered {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new("which").arg(c).output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is needed for the SPA test; scripts/test installs the `chromium` package");
    let profile = tempfile::tempdir().unwrap();
    // Bounded: a page that never settles (an open stream) must not stall the run.
    let out = Command::new("timeout")
        .args(["--kill-after=5", "90", chromium])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .unwrap();
    Rendered {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn the_web_app_serves_its_spa_and_api() {
    let dir = copy_example("web-app");
    let server = Server::start(bin(), dir.path(), &[]);
    assert!(
        server
            .stdout
            .text()
            .contains("applied migration items/001_items.sql")
    );

    // The SPA and its assets; deep links get the page.
    let (s, page) = get(&server, "/").await;
    assert!(s == 200 && page.contains("<ul id=\"items\">"), "{page}");
    assert_eq!(get(&server, "/app.js").await.0, 200);
    assert!(
        get(&server, "/items/7/edit")
            .await
            .1
            .contains("<ul id=\"items\">")
    );

    // The API: create, list, get, delete, validation.
    let (s, body) = send(
        &server,
        reqwest::Method::POST,
        "/api/items",
        Some(json!({"name": "tea", "note": "green"})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let tea: Value = serde_json::from_str(&body).unwrap();
    let id = tea["id"].as_i64().unwrap();
    send(
        &server,
        reqwest::Method::POST,
        "/api/items",
        Some(json!({"name": "cake"})),
    )
    .await;
    let (_, body) = get(&server, "/api/items").await;
    let items: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        items
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["tea", "cake"]
    );
    let (s, body) = get(&server, &format!("/api/items/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["note"],
        "green"
    );
    let (s, body) = send(
        &server,
        reqwest::Method::POST,
        "/api/items",
        Some(json!({"note": "no name"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(body.contains("`name` is required"), "{body}");
    let (s, _) = send(
        &server,
        reqwest::Method::DELETE,
        &format!("/api/items/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(get(&server, &format!("/api/items/{id}")).await.0, 404);
    assert_eq!(
        send(
            &server,
            reqwest::Method::DELETE,
            &format!("/api/items/{id}"),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        send(&server, reqwest::Method::PUT, "/api/items", None)
            .await
            .0,
        405
    );

    // Page views: an atomic kv counter, exact under concurrency.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = server.url("/api/views");
        tasks.push(tokio::spawn(async move {
            client().post(url).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (_, body) = send(&server, reqwest::Method::POST, "/api/views", None).await;
    assert_eq!(body, r#"{"views":21}"#);

    // In a real browser the page loads, counts a view and lists what the API holds.
    let url = server.url("/");
    let dom = tokio::task::spawn_blocking(move || rendered(&url))
        .await
        .unwrap();
    assert!(dom.contains("page views: 22"), "{dom}");
    assert!(dom.contains(">cake <button>delete</button></li>"), "{dom}");
    assert!(!dom.contains("tea"), "{dom}");
}
