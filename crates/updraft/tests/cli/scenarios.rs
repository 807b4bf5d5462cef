//! The event-driven scenarios as their examples ship: each is copied from `examples/`,
//! built by `updraft up` and driven over HTTP and the CLI the way a user would.
//!
//! * scenario 1, `examples/scheduling`: a cron function scrubs a legacy database;
//! * scenario 2, `examples/cqrs`: commands → events → projector → read model → queries;
//! * scenario 3, `examples/event-sourcing`: an event log, its projections, rebuilt by replay;
//! * scenario 5, `examples/async-jobs`: background thumbnails with a completion notification.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use updraft_test_support::Server;

use crate::{bin, cli, client, copy_example, eventually, get};

pub(crate) async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = client()
        .request(method, server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub(crate) async fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let (status, text) = get(server, path).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Rows of a SQLite file, each as a JSON object of its columns.
fn rows(db: &Path, query: &str) -> Vec<Value> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(query).unwrap();
    let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    stmt.query_map([], |r| {
        let mut o = serde_json::Map::new();
        for (i, n) in names.iter().enumerate() {
            let v = match r.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(n) => json!(n),
                rusqlite::types::ValueRef::Real(f) => json!(f),
                rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                rusqlite::types::ValueRef::Blob(b) => json!(String::from_utf8_lossy(b)),
            };
            o.insert(n.clone(), v);
        }
        Ok(Value::Object(o))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// A contact for `examples/cqrs`'s commands, living in `city`.
pub(crate) fn contact(city: &str) -> Value {
    json!({
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.org",
        "address": {"street": "12 St James's Square", "city": city, "postcode": "SW1Y 4JH", "country": "GB"}
    })
}

/// Creates a contact living in `city` through the CQRS commands and waits until the
/// projector has built its read model; returns the contact's path.
pub(crate) async fn create_contact(server: &Server, city: &str) -> String {
    let (status, created) = send(
        server,
        reqwest::Method::POST,
        "/api/contacts",
        contact(city),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let path = format!("/api/contacts/{}", created["id"].as_str().unwrap());
    assert!(
        eventually(Duration::from_secs(30), async || get(server, &path).await.0
            == 200)
        .await,
        "the projector never built the read model"
    );
    path
}

#[tokio::test]
async fn cqrs_commands_project_into_a_flattened_read_model() {
    let dir = copy_example("cqrs");
    let server = Server::start(bin(), dir.path(), &[]);
    assert!(
        server.stdout.text().contains(
            "topic `contacts` subscription `directory` (type contact.)  ->  function `projector`"
        ),
        "{}",
        server.stdout.text()
    );
    use reqwest::Method;

    let path = create_contact(&server, "London").await;
    let id = path.trim_start_matches("/api/contacts/").to_owned();
    let (_, view) = get_json(&server, &path).await;
    assert_eq!(view["name"], "Ada Lovelace", "{view}");
    assert_eq!(view["city"], "London");
    assert_eq!(
        view["mailing_label"],
        "Ada Lovelace\n12 St James's Square\nSW1Y 4JH London\nGB"
    );

    // The write model keeps a header and a child address; the read model is one flat row.
    let state = dir.path().join(".updraft/sql");
    let header = rows(&state.join("contacts.db"), "SELECT * FROM contact");
    let address = rows(&state.join("contacts.db"), "SELECT * FROM address");
    assert_eq!(header.len(), 1);
    assert_eq!(address[0]["contact_id"], id.as_str());
    assert!(header[0].get("city").is_none(), "{}", header[0]);

    // An update moves the read model forward; the query side filters on the flat columns.
    let (status, _) = send(&server, Method::PUT, &path, contact("Paris")).await;
    assert_eq!(status, 202);
    assert!(
        eventually(Duration::from_secs(30), async || {
            get_json(&server, "/api/contacts?city=Paris").await.1[0]["version"] == 2
        })
        .await
    );
    assert_eq!(
        get_json(&server, "/api/contacts?city=London").await.1,
        json!([])
    );

    // A stale event delivered again (say, replayed) cannot move the read model back.
    let stale = json!({"id": id, "version": 1, "contact": contact("Berlin")}).to_string();
    let (code, _, err) = cli(
        &server,
        &[
            "events",
            "publish",
            "contacts",
            "--type",
            "contact.updated",
            "--data",
            &stale,
        ],
    );
    assert_eq!(code, 0, "{err}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get_json(&server, &path).await.1["city"], "Paris");

    // Bad commands are refused with what to fix; nothing is published for them.
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/contacts",
        json!({"first_name": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let mut no_email = contact("Rome");
    no_email["email"] = json!("nobody");
    let (status, body) = send(&server, Method::POST, "/api/contacts", no_email).await;
    assert_eq!(status, 422);
    assert!(body.to_string().contains("`email`"), "{body}");
    let (status, _) = send(&server, Method::PUT, "/api/contacts/nope", contact("Rome")).await;
    assert_eq!(status, 404);

    // A delete leaves a tombstone in the read model: gone from every query.
    let (status, _) = send(&server, Method::DELETE, &path, json!(null)).await;
    assert_eq!(status, 202);
    assert!(
        eventually(Duration::from_secs(30), async || get(&server, &path)
            .await
            .0
            == 404)
        .await
    );
    assert_eq!(get_json(&server, "/api/contacts").await.1, json!([]));
}

async fn account(server: &Server, id: &str) -> Value {
    get_json(server, &format!("/api/accounts/{id}")).await.1
}

async fn move_money(server: &Server, id: &str, op: &str, amount: i64, key: &str) -> (u16, Value) {
    let r = client()
        .post(server.url(&format!("/api/accounts/{id}/{op}")))
        .header("idempotency-key", key)
        .json(&json!({ "amount": amount }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap_or_default(),
    )
}

#[tokio::test]
async fn event_sourcing_balances_come_from_the_log_and_replay_rebuilds_them() {
    let dir = copy_example("event-sourcing");
    let mut server = Server::start(bin(), dir.path(), &[]);

    let (status, opened) = send(
        &server,
        reqwest::Method::POST,
        "/api/accounts",
        json!({"owner": "Ada"}),
    )
    .await;
    assert_eq!(status, 201, "{opened}");
    let id = opened["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(30), async || account(&server, &id)
            .await["balance"]
            == 0)
        .await
    );

    assert_eq!(
        move_money(&server, &id, "deposit", 5_000, "d1").await.0,
        202
    );
    assert!(
        eventually(Duration::from_secs(30), async || account(&server, &id)
            .await["balance"]
            == 5_000)
        .await
    );
    // The same idempotency key twice is one event in the log.
    assert_eq!(move_money(&server, &id, "withdraw", 800, "w1").await.0, 202);
    assert_eq!(move_money(&server, &id, "withdraw", 800, "w1").await.0, 202);
    assert!(
        eventually(Duration::from_secs(30), async || account(&server, &id)
            .await["balance"]
            == 4_200)
        .await
    );
    let (status, refused) = move_money(&server, &id, "withdraw", 100_000, "w2").await;
    assert_eq!(status, 422);
    assert!(
        refused.to_string().contains("insufficient funds"),
        "{refused}"
    );
    assert_eq!(move_money(&server, &id, "send", 1, "x").await.0, 404);
    let before = account(&server, &id).await;
    assert_eq!(before["entries"].as_array().unwrap().len(), 2, "{before}");

    // The second subscriber only sees withdrawals (its filter) and flags the large one
    // (over the example's limit of 1,000).
    assert_eq!(
        move_money(&server, &id, "withdraw", 1_500, "w3").await.0,
        202
    );
    let state = dir.path().join(".updraft/state.db");
    assert!(
        eventually(Duration::from_secs(30), async || {
            rows(&state, "SELECT key FROM kv WHERE namespace = 'alerts'").len() == 1
        })
        .await
    );
    assert_eq!(
        rows(&state, "SELECT key FROM kv WHERE namespace = 'alerts'")[0]["key"],
        format!("large/{id}-w3")
    );
    assert!(
        eventually(Duration::from_secs(30), async || account(&server, &id)
            .await["balance"]
            == 2_700)
        .await
    );
    let before = account(&server, &id).await;

    // Lose the read model entirely, then rebuild it from the log.
    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(20)).is_some());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!(".updraft/sql/views.db{suffix}")));
    }
    server = Server::start(bin(), dir.path(), &["--no-build"]);
    assert_eq!(get(&server, &format!("/api/accounts/{id}")).await.0, 404);
    let (code, out, err) = cli(
        &server,
        &[
            "events",
            "replay",
            "accounts",
            "--subscription",
            "balances",
            "--from-position",
            "0",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replayed 4"), "{out}");
    assert!(
        eventually(Duration::from_secs(30), async || account(&server, &id)
            .await
            == before)
        .await,
        "rebuilt {} != {before}",
        account(&server, &id).await
    );
}

#[tokio::test]
async fn scheduling_scrubs_the_legacy_database_on_a_timer() {
    let dir = copy_example("scheduling");
    let server = Server::start(bin(), dir.path(), &[]);
    assert!(
        server
            .stdout
            .text()
            .contains("cron `*/5 * * * * *` (UTC)  ->  function `scrub`"),
        "{}",
        server.stdout.text()
    );
    let report = async || get_json(&server, "/api/report").await.1;
    assert!(
        eventually(Duration::from_secs(60), async || report().await["runs"]
            .as_u64()
            >= Some(1))
        .await,
        "the scrubber never ran"
    );
    let legacy = dir.path().join("legacy/customers.db");
    assert!(legacy.exists(), "`path =` names the legacy file");
    let customers = rows(
        &legacy,
        "SELECT id, name, email, country FROM customers ORDER BY id",
    );
    assert_eq!(
        customers,
        vec![
            json!({"id": 1, "name": "Ada Lovelace", "email": "ada@example.org", "country": "GB"}),
            json!({"id": 2, "name": "Grace Hopper", "email": "grace.hopper@example.com", "country": "US"}),
            json!({"id": 5, "name": "nameless", "email": "nameless@example.net", "country": "FR"}),
        ]
    );
    let quarantine = rows(
        &legacy,
        "SELECT source_table, source_id, reason FROM quarantine ORDER BY rowid",
    );
    let reasons: Vec<(String, i64)> = quarantine
        .iter()
        .map(|q| {
            (
                q["source_table"].as_str().unwrap().to_owned(),
                q["source_id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("customers".into(), 3),
            ("customers".into(), 4),
            ("orders".into(), 3)
        ],
        "{quarantine:?}"
    );
    let orders = rows(&legacy, "SELECT id, customer_id FROM orders ORDER BY id");
    assert_eq!(
        orders,
        vec![
            json!({"id": 1, "customer_id": 1}),
            json!({"id": 2, "customer_id": 2})
        ]
    );

    // New bad data from the legacy app is cleaned by a later run.
    let (status, _) = send(
        &server,
        reqwest::Method::POST,
        "/api/customers",
        json!({"name": " Edsger ", "email": "EWD@Example.NL", "country": "nl"}),
    )
    .await;
    assert_eq!(status, 201);
    assert!(
        eventually(Duration::from_secs(60), async || {
            get_json(&server, "/api/customers")
                .await
                .1
                .as_array()
                .unwrap()
                .iter()
                .any(|c| {
                    c["email"] == "ewd@example.nl" && c["name"] == "Edsger" && c["country"] == "NL"
                })
        })
        .await
    );
    let latest = report().await;
    assert!(latest["latest"]["at"].is_string(), "{latest}");
}

/// An uncompressed 24-bit BMP of `w`×`h` pixels (a gradient).
pub(crate) fn bmp(w: u32, h: u32) -> Vec<u8> {
    let row = (w * 3).div_ceil(4) * 4;
    let size = 54 + row * h;
    let mut b = Vec::with_capacity(size as usize);
    b.extend(b"BM");
    b.extend(size.to_le_bytes());
    b.extend([0u8; 4]);
    b.extend(54u32.to_le_bytes());
    b.extend(40u32.to_le_bytes());
    b.extend(w.to_le_bytes());
    b.extend(h.to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(24u16.to_le_bytes());
    b.extend([0u8; 24]);
    for y in 0..h {
        for x in 0..w {
            b.extend([(x % 256) as u8, (y % 256) as u8, 128]);
        }
        b.extend(vec![0u8; (row - w * 3) as usize]);
    }
    b
}

#[tokio::test]
async fn async_jobs_make_thumbnails_in_the_background_and_notify() {
    let dir = copy_example("async-jobs");
    let server = Server::start(bin(), dir.path(), &[]);
    let r = client()
        .post(server.url("/api/images"))
        .header("prefer", "respond-async")
        .body(bmp(300, 200))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let accepted: Value = r.json().await.unwrap();
    let id = accepted["invocation_id"].as_str().unwrap().to_owned();
    let status_url = accepted["status_url"].as_str().unwrap().to_owned();
    let mut outcome = Value::Null;
    assert!(
        eventually(Duration::from_secs(30), async || {
            outcome = get_json(&server, &status_url).await.1;
            outcome["status"] == "succeeded"
        })
        .await,
        "{outcome}"
    );
    let metadata: Value =
        serde_json::from_str(outcome["response"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(metadata["width"], 300);
    assert_eq!(metadata["format"], "bmp");
    assert_eq!(metadata["thumbnail"]["width"], 128);
    assert_eq!(metadata["thumbnail"]["height"], 85);

    // The thumbnail is a real PNG of that size.
    let r = client()
        .get(server.url(&format!("/api/images/{id}/thumbnail")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let png = r.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 128);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 85);

    // Completion reached `notify` through the completion topic.
    let mut notes = Value::Null;
    assert!(
        eventually(Duration::from_secs(30), async || {
            notes = get_json(&server, "/api/notifications").await.1;
            notes.as_array().is_some_and(|n| !n.is_empty())
        })
        .await
    );
    assert_eq!(notes[0]["invocation_id"], id.as_str());
    assert_eq!(notes[0]["status"], "succeeded");
    assert!(
        notes[0]["message"]
            .as_str()
            .unwrap()
            .contains("300x200 image is ready"),
        "{notes}"
    );

    // Something that is not an image is refused with what to send.
    let r = client()
        .post(server.url("/api/images"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("PNG, JPEG, GIF or BMP"));
}
