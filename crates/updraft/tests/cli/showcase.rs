//! `examples/showcase`, what the README's first command starts: several scenarios in one app
//! (the web app, CQRS, a CSV drop loaded into a table and charted, a cron job, background
//! work), each driven the way a user would, and the operator dashboard showing them.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use updraft_test_support::Server;

use crate::scenarios::{create_contact, send};
use crate::{bin, client, copy_examples, eventually, get};

async fn get_json(server: &Server, path: &str) -> Value {
    crate::scenarios::get_json(server, path).await.1
}

#[tokio::test]
async fn the_showcase_runs_several_scenarios_in_one_app() {
    let root = copy_examples(&[
        "showcase",
        "web-app",
        "cqrs",
        "data-pipeline",
        "scheduling",
        "async-jobs",
    ]);
    let dir = root.path().join("showcase");
    let server = Server::start(bin(), &dir, &[]);
    let started = server.stdout.text();
    assert!(
        started.contains("/_updraft/") && started.contains("/reports"),
        "up prints where the dashboard and the app's panels are:\n{started}"
    );

    // Scenario 6: the SPA and its API.
    let (s, page) = get(&server, "/").await;
    assert!(s == 200 && page.contains("<ul id=\"items\">"), "{page}");
    let (s, tea) = send(&server, Method::POST, "/api/items", json!({"name": "tea"})).await;
    assert_eq!(s, 201, "{tea}");
    assert_eq!(get_json(&server, "/api/items").await[0]["name"], "tea");

    // Scenario 2: a command becomes an event, the projection a readable view.
    create_contact(&server, "London").await;

    // Scenarios 4 and 7: a CSV dropped into the bucket is loaded and charted.
    let incoming = dir.join(".updraft/buckets/drop/incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::copy(
        root.path().join("data-pipeline/sample/sales-2026-11.csv"),
        incoming.join("sales-2026-11.csv"),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(60), async || {
            get_json(&server, "/api/sales/summary").await["totals"]["rows"].as_u64() == Some(5)
        })
        .await,
        "the sample never loaded\n{}",
        server.stderr.text()
    );
    let (s, reports) = get(&server, "/reports").await;
    assert!(
        s == 200 && reports.contains("Units sold per product") && reports.contains("<svg"),
        "{reports}"
    );

    // Scenario 5: background work answers at once and finishes later.
    let r = client()
        .post(server.url("/api/images"))
        .header("prefer", "respond-async")
        .body(crate::scenarios::bmp(64, 32))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let accepted: Value = r.json().await.unwrap();
    let status_url = accepted["status_url"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(30), async || {
            get_json(&server, &status_url).await["status"] == "succeeded"
        })
        .await
    );

    // Scenario 1: the cron job has run, and the dashboard shows every function.
    assert!(
        eventually(Duration::from_secs(30), async || {
            get_json(&server, "/_updraft/api/v1/invocations?function=scrub")
                .await
                .as_array()
                .is_some_and(|runs| !runs.is_empty())
        })
        .await,
        "the cron job never ran"
    );
    let (s, overview) = get(&server, "/_updraft/").await;
    assert_eq!(s, 200);
    for function in [
        "api",
        "commands",
        "projector",
        "ingest",
        "scrub",
        "thumbnail",
    ] {
        assert!(overview.contains(function), "{function} on the overview");
    }
}
