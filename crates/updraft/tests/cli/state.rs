//! State bindings: kv (wasi:keyvalue + updraft:platform/kv) and sql, with allow-lists.

use serde_json::json;

use crate::{client, get, kitchen_app, post, start};

const STATE: &str = r#"
[kv.cache]
[kv.secret-store]
[sql.orders]
migrations = "migrations"

[function.reader]
source = "kitchen.wasm"

[[trigger.http]]
route = "/reader/..."
function = "reader"
"#;

fn app() -> updraft_test_support::AppDir {
    // `kitchen` may use `cache` and `orders`; `reader` may use nothing.
    let app = kitchen_app(STATE);
    let manifest = std::fs::read_to_string(app.path().join("updraft.toml")).unwrap();
    let manifest = manifest.replacen(
        "source = \"kitchen.wasm\"\n",
        "source = \"kitchen.wasm\"\nkv = [\"cache\"]\nsql = [\"orders\"]\n",
        1,
    );
    app.write("updraft.toml", manifest);
    app.write(
        "migrations/001_items.sql",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL);",
    );
    app.write(
        "migrations/002_seed.sql",
        "INSERT INTO items (name, price) VALUES ('seed', 1.5);",
    );
    app
}

#[tokio::test]
async fn kv_through_wasi_keyvalue_and_the_platform_extras() {
    let app = app();
    let server = start(&app);
    assert_eq!(
        post(&server, "/k/kv/set?store=cache&key=user/1", "ada").await,
        (200, "ok".into())
    );
    assert_eq!(
        post(&server, "/k/kv/set?store=cache&key=user/2", "bob")
            .await
            .0,
        200
    );
    assert_eq!(
        post(&server, "/k/kv/set?store=cache&key=visits", "")
            .await
            .0,
        200
    );
    assert_eq!(
        get(&server, "/k/kv/get?store=cache&key=user/1").await,
        (200, "ada".into())
    );
    assert_eq!(get(&server, "/k/kv/get?store=cache&key=nope").await.0, 404);
    assert_eq!(
        get(&server, "/k/kv/list?store=cache&prefix=user/").await,
        (200, "user/1,user/2".into())
    );
    assert_eq!(
        get(&server, "/k/kv/incr?store=cache&key=hits&by=5").await,
        (200, "5".into())
    );
    assert_eq!(
        get(&server, "/k/kv/incr?store=cache&key=hits&by=2").await,
        (200, "7".into())
    );
    assert_eq!(
        get(&server, "/k/kv/cas?store=cache&key=lock&new=me").await,
        (200, "true".into())
    );
    assert_eq!(
        get(&server, "/k/kv/cas?store=cache&key=lock&new=you").await,
        (200, "false".into())
    );
    assert_eq!(
        get(
            &server,
            "/k/kv/cas?store=cache&key=lock&expected=me&new=you"
        )
        .await,
        (200, "true".into())
    );
    // Concurrent increments from many instances lose nothing.
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let url = server.url("/k/kv/incr?store=cache&key=race");
        tasks.push(tokio::spawn(async move {
            client().get(url).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        get(&server, "/k/kv/get?store=cache&key=race").await,
        (200, "40".into())
    );
    // State survives a restart.
    drop(server);
    let server = start(&app);
    assert_eq!(
        get(&server, "/k/kv/get?store=cache&key=user/2").await,
        (200, "bob".into())
    );
}

#[tokio::test]
async fn kv_limits_and_allow_lists() {
    let app = app();
    let server = start(&app);
    let (s, body) = post(
        &server,
        "/k/kv/set?store=cache&key=big",
        vec![b'x'; (1 << 20) + 1],
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("over the limit of 1048576 bytes"), "{body}");
    // Declared but not listed for this function: access denied, and logged.
    let (s, body) = get(&server, "/k/kv/get?store=secret-store&key=x").await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("AccessDenied"), "{body}");
    let (s, body) = get(&server, "/reader/kv/get?store=cache&key=x").await;
    assert!(s == 403 && body.contains("AccessDenied"), "{body}");
    let (s, body) = get(&server, "/k/kv/get?store=undeclared&key=x").await;
    assert!(s == 403 && body.contains("NoSuchStore"), "{body}");
    assert!(
        server
            .stderr
            .wait_for("may not open kv store", std::time::Duration::from_secs(5))
    );
}

#[tokio::test]
async fn sql_with_migrations_parameters_and_clear_errors() {
    let app = app();
    let server = start(&app);
    assert!(
        server
            .stdout
            .text()
            .contains("applied migration orders/001_items.sql"),
        "{}",
        server.stdout.text()
    );
    let exec =
        |sql: &str, params: serde_json::Value| json!({ "sql": sql, "params": params }).to_string();
    let (s, body) = post(
        &server,
        "/k/sql/execute?db=orders",
        exec(
            "INSERT INTO items (name, price) VALUES ($1, $2)",
            json!(["tea", 2.5]),
        ),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, r#"{"changed":1}"#));
    let (s, body) = post(
        &server,
        "/k/sql/query?db=orders",
        exec(
            "SELECT id, name, price FROM items WHERE price > $1 ORDER BY id",
            json!([1]),
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({ "columns": ["id", "name", "price"], "rows": [[1, "seed", 1.5], [2, "tea", 2.5]] })
    );
    // A syntax error names the database and carries the database's message.
    let (s, body) = post(
        &server,
        "/k/sql/query?db=orders",
        exec("SELEC * FROM items", json!([])),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        body.contains("sql `orders`") && body.contains("syntax error"),
        "{body}"
    );
    // A parameter count mismatch says what was expected.
    let (s, body) = post(
        &server,
        "/k/sql/execute?db=orders",
        exec("INSERT INTO items (name) VALUES ($1)", json!([])),
    )
    .await;
    assert_eq!(s, 400);
    assert!(body.contains("1 parameter(s) but 0 were given"), "{body}");
    // Not listed for `reader`.
    let (s, body) = post(
        &server,
        "/reader/sql/query?db=orders",
        exec("SELECT 1", json!([])),
    )
    .await;
    assert_eq!(s, 403);
    assert!(
        body.contains("AccessDenied") && body.contains("sql = [...]"),
        "{body}"
    );
    // Migrations run once: a restart applies nothing and keeps the rows.
    drop(server);
    let server = start(&app);
    assert!(
        !server.stdout.text().contains("applied migration"),
        "{}",
        server.stdout.text()
    );
    let (_, body) = post(
        &server,
        "/k/sql/query?db=orders",
        exec("SELECT count(*) FROM items", json!([])),
    )
    .await;
    assert!(body.contains("[[2]]"), "{body}");
    // The database is its own file, never the platform state.
    assert!(app.path().join(".updraft/sql/orders.db").is_file());
    assert!(app.path().join(".updraft/state.db").is_file());
}

#[tokio::test]
async fn a_function_written_with_the_sdk() {
    let app = updraft_test_support::AppDir::new(
        r#"
[app]
name = "sdk"

[variables]
greeting = { default = "hi" }

[kv.default]
[kv.private]
[sql.app]

[function.sdk]
source = "sdk.wasm"
kv = ["default"]
sql = ["app"]
[function.sdk.variables]
greeting = "{{ greeting }}"

[[trigger.http]]
route = "/..."
function = "sdk"
"#,
    );
    app.guest(updraft_test_support::guests::SDK, "sdk.wasm");
    let server = start(&app);
    assert_eq!(
        get(&server, "/visit").await,
        (200, r#"{"greeting":"hi","visits":1}"#.into())
    );
    assert_eq!(
        get(&server, "/visit").await,
        (200, r#"{"greeting":"hi","visits":2}"#.into())
    );
    get(&server, "/items").await;
    assert_eq!(
        get(&server, "/items").await,
        (200, r#"[{"n":2,"name":"widget"}]"#.into())
    );
    let (s, body) = get(&server, "/denied").await;
    assert_eq!(s, 403);
    assert!(
        body.contains(
            "kv store `private`: access denied; list the store in the function's `kv = [...]`"
        ),
        "{body}"
    );
}

/// Runs `statement` through the kitchen guest's `/sql/execute` or `/sql/query` on `orders`.
async fn sql(
    server: &updraft_test_support::Server,
    op: &str,
    statement: &str,
    params: serde_json::Value,
) -> (u16, String) {
    let body = json!({ "sql": statement, "params": params }).to_string();
    post(server, &format!("/k/sql/{op}?db=orders"), body).await
}

/// A function allowed one database cannot leave it: every way out through `execute` and
/// through `query` is refused with what was refused, logged, and changes nothing.
#[tokio::test]
async fn guest_sql_cannot_leave_its_database_or_end_the_shared_transaction() {
    let app = app();
    let server = start(&app);
    assert_eq!(
        post(&server, "/k/kv/set?store=cache&key=balance", "100").await,
        (200, "ok".into())
    );
    let state = app.path().join(".updraft/state.db");
    let escape = app.path().join("escape.db");
    let copy = app.path().join("copy.db");
    let attempts = [
        (
            format!("ATTACH DATABASE '{}' AS p", state.display()),
            "`ATTACH` is refused",
        ),
        (
            format!("ATTACH DATABASE '{}' AS e", escape.display()),
            "`ATTACH` is refused",
        ),
        ("DETACH DATABASE main".to_owned(), "`DETACH` is refused"),
        (format!("VACUUM INTO '{}'", copy.display()), "sql `orders`"),
        (
            "SELECT load_extension('/tmp/evil')".to_owned(),
            "`load_extension` is refused",
        ),
        (
            "PRAGMA journal_mode = DELETE".to_owned(),
            "`PRAGMA journal_mode` is refused",
        ),
        (
            "PRAGMA writable_schema = ON".to_owned(),
            "`PRAGMA writable_schema` is refused",
        ),
        (
            "PRAGMA database_list".to_owned(),
            "`PRAGMA database_list` is refused",
        ),
        ("BEGIN".to_owned(), "`BEGIN` is refused"),
        ("COMMIT".to_owned(), "`COMMIT` is refused"),
        ("ROLLBACK".to_owned(), "`ROLLBACK` is refused"),
        ("SAVEPOINT a".to_owned(), "`SAVEPOINT` is refused"),
        ("RELEASE a".to_owned(), "`RELEASE` is refused"),
    ];
    let mut tried = 0;
    let mut denied = 0;
    for (statement, why) in &attempts {
        for op in ["execute", "query"] {
            tried += 1;
            let (status, body) = sql(&server, op, statement, json!([])).await;
            assert!(
                (400..500).contains(&status) && body.contains(why),
                "{op} `{statement}` was not refused: {status} {body}"
            );
            denied += 1;
        }
    }
    println!("guest SQL escapes: {tried} attempted, {denied} denied");
    assert_eq!(tried, denied);
    crate::stderr_shows(&server, "`ATTACH` is refused").await;
    // Nothing outside the database changed, and the database still works.
    assert!(!escape.exists(), "ATTACH created {}", escape.display());
    assert!(!copy.exists(), "VACUUM INTO wrote {}", copy.display());
    assert_eq!(
        crate::get(&server, "/k/kv/get?store=cache&key=balance").await,
        (200, "100".into())
    );
    let (s, body) = sql(
        &server,
        "execute",
        "INSERT INTO items (name) VALUES ($1)",
        json!(["after"]),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, r#"{"changed":1}"#));
    let (s, body) = sql(
        &server,
        "query",
        "SELECT name FROM items ORDER BY id",
        json!([]),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains(r#"[["seed"],["after"]]"#), "{body}");
}

/// A runaway statement is cut off at its function's deadline (the database's one writer is
/// free again and nothing of it is kept), and a result over the caps is refused with how to
/// page it.
#[tokio::test]
async fn guest_sql_is_cut_off_at_the_deadline_and_results_are_capped() {
    let app = app();
    let manifest = std::fs::read_to_string(app.path().join("updraft.toml")).unwrap();
    let manifest = manifest
        .replacen(
            "sql = [\"orders\"]\n",
            "sql = [\"orders\"]\ntimeout = \"2s\"\n",
            1,
        )
        .replace("[sql.orders]\n", "[sql.orders]\nmax_rows = 1000\n");
    app.write("updraft.toml", manifest);
    let server = start(&app);
    let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)";
    let (s, body) = sql(
        &server,
        "execute",
        &format!("INSERT INTO items (name) {endless} SELECT 'runaway' FROM n"),
        json!([]),
    )
    .await;
    assert_eq!(s, 504, "{body}");
    // The writer is free: the next write commits promptly, and the runaway kept nothing.
    let started = std::time::Instant::now();
    let (s, body) = sql(
        &server,
        "execute",
        "INSERT INTO items (name) VALUES ($1)",
        json!(["next"]),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, r#"{"changed":1}"#));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the writer was held for {:?}",
        started.elapsed()
    );
    let (_, body) = sql(&server, "query", "SELECT count(*) FROM items", json!([])).await;
    assert!(body.contains("[[2]]"), "{body}");
    // Over `max_rows`: refused, saying how to read it.
    let (s, body) = sql(
        &server,
        "query",
        &format!("{endless} SELECT i FROM n LIMIT 5000"),
        json!([]),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("over 1000 rows") && body.contains("LIMIT"),
        "{body}"
    );
    let (s, body) = sql(
        &server,
        "query",
        &format!("{endless} SELECT i FROM n LIMIT 1000"),
        json!([]),
    )
    .await;
    assert_eq!(s, 200, "{body}");
}

/// `batch`: several statements in one transaction from a guest; a failing one undoes the
/// others and is named.
#[tokio::test]
async fn a_guest_batch_is_one_transaction() {
    let app = app();
    let server = start(&app);
    let batch = |statements: serde_json::Value| json!({ "batch": statements }).to_string();
    let (s, body) = post(
        &server,
        "/k/sql/batch?db=orders",
        batch(json!([
            { "sql": "INSERT INTO items (name, price) VALUES ($1, $2)", "params": ["a", 1] },
            { "sql": "UPDATE items SET price = price * 2 WHERE name = $1", "params": ["a"] },
        ])),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, r#"{"changed":[1,1]}"#));
    let (s, body) = post(
        &server,
        "/k/sql/batch?db=orders",
        batch(json!([
            { "sql": "DELETE FROM items", "params": [] },
            { "sql": "INSERT INTO items (name) VALUES (NULL)", "params": [] },
        ])),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("statement #1") && body.contains("NOT NULL"),
        "{body}"
    );
    let (_, body) = sql(
        &server,
        "query",
        "SELECT name, price FROM items ORDER BY id",
        json!([]),
    )
    .await;
    assert!(
        body.contains(r#"[["seed",1.5],["a",2.0]]"#),
        "nothing was deleted: {body}"
    );
}
