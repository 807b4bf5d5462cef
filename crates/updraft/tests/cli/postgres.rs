//! The same apps on PostgreSQL: `examples/web-app` and `examples/cqrs`, unchanged, with a
//! `runtime.toml` that puts their `[sql.<label>]` databases on a private PostgreSQL server
//! (`updraft_test_support::Postgres`), and what a user sees when that server is wrong or
//! goes away.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use updraft_test_support::{Postgres, Server};

use crate::scenarios::{contact, create_contact, send};
use crate::{bin, copy_example, eventually, get};

/// `[sql.<label>]` on `server`'s database `database`, the password left to the environment.
fn runtime_toml(server: &Postgres, databases: &[(&str, &str)]) -> String {
    databases
        .iter()
        .map(|(label, database)| {
            format!(
                "[sql.{label}]\ntype = \"postgres\"\nurl = \"{}\"\n",
                server.url_without_password(database)
            )
        })
        .collect()
}

#[tokio::test]
async fn the_web_app_runs_unchanged_on_postgres_and_survives_an_outage() {
    let mut pg = Postgres::start();
    pg.create_database("webapp");
    let dir = copy_example("web-app");
    std::fs::write(
        dir.path().join("runtime.toml"),
        runtime_toml(&pg, &[("items", "webapp")]),
    )
    .unwrap();
    let server = Server::start_with_env(
        bin(),
        dir.path(),
        &[],
        &[("UPDRAFT_SQL_ITEMS_PASSWORD", pg.password())],
    );
    assert!(
        server
            .stdout
            .text()
            .contains("applied migration items/001_items.sql"),
        "{}",
        server.stdout.text()
    );

    let (s, tea) = send(
        &server,
        Method::POST,
        "/api/items",
        json!({"name": "tea", "note": "green"}),
    )
    .await;
    assert_eq!(s, 201, "{tea}");
    let id = tea["id"].as_i64().expect("an integer id");
    assert!(
        tea["created"].as_str().is_some_and(|c| c.ends_with('Z')),
        "{tea}"
    );
    send(&server, Method::POST, "/api/items", json!({"name": "cake"})).await;
    let (_, body) = get(&server, "/api/items").await;
    let items: Vec<Value> = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tea", "cake"]);
    let (s, body) = get(&server, &format!("/api/items/{id}")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        send(
            &server,
            Method::DELETE,
            &format!("/api/items/{id}"),
            json!(null)
        )
        .await
        .0,
        204
    );
    assert_eq!(get(&server, &format!("/api/items/{id}")).await.0, 404);
    // The rows are in PostgreSQL, not in a SQLite file.
    assert_eq!(
        pg.psql("webapp", "SELECT string_agg(name, ',') FROM items")
            .unwrap(),
        "cake"
    );
    assert!(!dir.path().join(".updraft/sql/items.db").exists());

    // The table explorer's API reads the PostgreSQL catalogue and runs read-only queries.
    let (s, body) = get(&server, "/_updraft/api/v1/sql").await;
    assert_eq!(s, 200, "{body}");
    let databases: Value = serde_json::from_str(&body).unwrap();
    let items = &databases[0]["tables"][0];
    assert_eq!(items["name"], "items", "{databases}");
    assert_eq!(items["columns"][0], json!({"name": "id", "type": "bigint"}));
    let (s, result) = send(
        &server,
        Method::POST,
        "/_updraft/api/v1/sql/items/query",
        json!({"sql": "SELECT count(*) AS n FROM items"}),
    )
    .await;
    assert_eq!((s, &result["rows"]), (200, &json!([[1]])), "{result}");
    let (s, refused) = send(
        &server,
        Method::POST,
        "/_updraft/api/v1/sql/items/query",
        json!({"sql": "DELETE FROM items"}),
    )
    .await;
    assert_eq!(s, 400, "{refused}");
    assert!(refused.to_string().contains("may only read"), "{refused}");

    // A second node of the app, with the same runtime.toml, shares the database: what one
    // node writes the other reads (the reason to put it on PostgreSQL).
    let second_dir = copy_example("web-app");
    std::fs::copy(
        dir.path().join("runtime.toml"),
        second_dir.path().join("runtime.toml"),
    )
    .unwrap();
    let second = Server::start_with_env(
        bin(),
        second_dir.path(),
        &[],
        &[("UPDRAFT_SQL_ITEMS_PASSWORD", pg.password())],
    );
    assert!(
        !second.stdout.text().contains("applied migration"),
        "the first node applied them: {}",
        second.stdout.text()
    );
    let (s, scone) = send(
        &second,
        Method::POST,
        "/api/items",
        json!({"name": "scone"}),
    )
    .await;
    assert_eq!(s, 201, "{scone}");
    let (_, body) = get(&server, "/api/items").await;
    assert!(body.contains("scone") && body.contains("cake"), "{body}");
    drop(second);

    // The server goes away: the API fails with an error naming the database, the rest of
    // the app keeps serving, and the API heals once the server is back.
    pg.stop();
    let (s, body) = get(&server, "/api/items").await;
    assert_eq!(s, 500, "{body}");
    assert!(body.contains("items"), "{body}");
    assert_eq!(get(&server, "/").await.0, 200);
    assert_eq!(get(&server, "/_updraft/api/v1/functions").await.0, 200);
    pg.resume().unwrap();
    assert!(
        eventually(Duration::from_secs(30), async || get(&server, "/api/items")
            .await
            .0
            == 200)
        .await,
        "the API works again once PostgreSQL is back"
    );
    assert!(
        !server.stdout.text().contains(pg.password())
            && !server.stderr.text().contains(pg.password()),
        "the password never shows"
    );
}

#[tokio::test]
async fn cqrs_runs_unchanged_on_postgres() {
    let pg = Postgres::start();
    pg.create_database("contacts");
    pg.create_database("directory");
    let dir = copy_example("cqrs");
    std::fs::write(
        dir.path().join("runtime.toml"),
        runtime_toml(&pg, &[("contacts", "contacts"), ("directory", "directory")]),
    )
    .unwrap();
    let server = Server::start_with_env(
        bin(),
        dir.path(),
        &[],
        &[
            ("UPDRAFT_SQL_CONTACTS_PASSWORD", pg.password()),
            ("UPDRAFT_SQL_DIRECTORY_PASSWORD", pg.password()),
        ],
    );
    let path = create_contact(&server, "London").await;
    let (status, _) = send(&server, Method::PUT, &path, contact("Paris")).await;
    assert_eq!(status, 202);
    assert!(
        eventually(Duration::from_secs(30), async || {
            let (_, body) = get(&server, "/api/contacts?city=Paris").await;
            serde_json::from_str::<Value>(&body).is_ok_and(|v| v[0]["version"] == 2)
        })
        .await
    );
    // Write model and read model, each in its own PostgreSQL database.
    assert_eq!(
        pg.psql("contacts", "SELECT city FROM address").unwrap(),
        "Paris"
    );
    assert_eq!(
        pg.psql(
            "directory",
            "SELECT city || ' ' || version FROM contact_view"
        )
        .unwrap(),
        "Paris 2"
    );
    let (status, _) = send(&server, Method::DELETE, &path, json!(null)).await;
    assert_eq!(status, 202);
    assert!(
        eventually(Duration::from_secs(30), async || get(&server, &path)
            .await
            .0
            == 404)
        .await
    );
}

/// `updraft up` on `dir`, expected to fail; its stderr.
fn up_fails(dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let args = ["up", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    let out = updraft_test_support::run_with_env(bin(), &args, env, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn a_wrong_password_or_a_broken_migration_stops_up_with_what_to_fix() {
    let pg = Postgres::start();
    pg.create_database("webapp");
    let dir = copy_example("web-app");
    let wrong = pg.url("webapp").replace(pg.password(), "not-the-password");
    std::fs::write(
        dir.path().join("runtime.toml"),
        format!("[sql.items]\ntype = \"postgres\"\nurl = \"{wrong}\"\n"),
    )
    .unwrap();
    let stderr = up_fails(dir.path(), &[]);
    assert!(
        stderr.contains("[sql.items]")
            && stderr.contains("password authentication failed")
            && stderr.contains("UPDRAFT_SQL_ITEMS_PASSWORD"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");

    // A URL nothing answers at, and one that is not a URL: each named, with the fix.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("runtime.toml"),
        format!(
            "[sql.items]\ntype = \"postgres\"\nurl = \"postgres://updraft:sekrit@127.0.0.1:{closed}/webapp\"\n"
        ),
    )
    .unwrap();
    let stderr = up_fails(dir.path(), &[]);
    assert!(
        stderr.contains("[sql.items]")
            && stderr.contains(&format!(
                "cannot connect to `postgres://updraft:***@127.0.0.1:{closed}/webapp`"
            )),
        "{stderr}"
    );
    assert!(!stderr.contains("sekrit"), "{stderr}");
    std::fs::write(
        dir.path().join("runtime.toml"),
        "[sql.items]\ntype = \"postgres\"\nurl = \"postgres://updraft@127.0.0.1:notaport/webapp\"\n",
    )
    .unwrap();
    let stderr = up_fails(dir.path(), &[]);
    assert!(
        stderr.contains("[sql.items]")
            && stderr.contains("is not a PostgreSQL URL")
            && stderr.contains("postgres://USER@HOST:PORT/DATABASE"),
        "{stderr}"
    );

    // A migration the server refuses: `up` names the file and the server's error.
    std::fs::write(
        dir.path().join("runtime.toml"),
        runtime_toml(&pg, &[("items", "webapp")]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("migrations/postgres/002_broken.sql"),
        "ALTER TABLE items ADD COLUMN price nosuchtype;",
    )
    .unwrap();
    let stderr = up_fails(dir.path(), &[("UPDRAFT_SQL_ITEMS_PASSWORD", pg.password())]);
    assert!(
        stderr.contains("migration `002_broken.sql`") && stderr.contains("nosuchtype"),
        "{stderr}"
    );
    // The first migration stayed applied; the broken one left nothing behind.
    assert_eq!(
        pg.psql(
            "webapp",
            "SELECT string_agg(name, ',') FROM _updraft_migrations"
        )
        .unwrap(),
        "001_items.sql"
    );
}
