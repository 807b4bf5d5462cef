//! The PostgreSQL sql backend against a private server (`updraft_test_support::Postgres`:
//! initdb into a temporary folder, 127.0.0.1 on a free port), a fresh database per case.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use updraft_store::postgres::{POOL_WAIT, PostgresOptions, PostgresSql};
use updraft_store::{SqlError, SqlLimits, SqlStore, Value, conformance};
use updraft_test_support::Postgres;

fn options(url: String) -> PostgresOptions {
    PostgresOptions {
        url,
        password: None,
        pool_size: 4,
        statement_timeout: Duration::from_secs(60),
        limits: SqlLimits::default(),
        pool_wait: POOL_WAIT,
        ca: None,
    }
}

/// A fresh database on `server`, through a pool made with `tune`.
fn database(server: &Postgres, name: &str, tune: impl FnOnce(&mut PostgresOptions)) -> PostgresSql {
    server.create_database(name);
    let mut options = options(server.url(name));
    tune(&mut options);
    PostgresSql::new("orders", &options).expect("pool")
}

/// Polls `check` every 50 ms until it holds or `within` passes.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sql_passes_the_conformance_suite() {
    let server = Postgres::start();
    // The suite wants a fresh database per case (pools connect lazily, so making one is
    // synchronous).
    let n = AtomicUsize::new(0);
    let server = Arc::new(server);
    let maker = server.clone();
    conformance::sql::run(move || {
        let i = n.fetch_add(1, Ordering::Relaxed);
        Arc::new(database(&maker, &format!("case{i}"), |_| {})) as Arc<dyn SqlStore>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_types_map_onto_the_five_values_and_parameters_are_checked() {
    let server = Postgres::start();
    let db = database(&server, "types", |_| {});
    db.execute("CREATE TYPE mood AS ENUM ('calm', 'busy')", vec![])
        .await
        .expect("enum");
    db.execute(
        "CREATE TABLE t (small int2, normal int4, big int8, flag bool, price numeric(10, 2), \
         id uuid, doc jsonb, raw json, day date, at timestamptz, local timestamp, bytes bytea, \
         ratio real, took interval, feeling mood, name varchar(20))",
        vec![],
    )
    .await
    .expect("create");
    let inserted = db
        .execute(
            "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            vec![
                Value::Int(-7),
                Value::Int(2_000_000_000),
                Value::Int(9_000_000_000),
                Value::Int(1),
                Value::Text("12.50".into()),
                Value::Text("6f1c3a4e-8d2b-4c1a-9e0f-123456789abc".into()),
                Value::Text(r#"{"a": [1, 2]}"#.into()),
                Value::Text(r#"{"b":true}"#.into()),
                Value::Text("2026-12-07".into()),
                Value::Text("2026-12-07T06:22:09.5+01:00".into()),
                Value::Text("2026-12-07 06:22:09".into()),
                Value::Blob(vec![0, 1, 255]),
                Value::Float(0.5),
                Value::Text("1 day 02:00:03".into()),
                Value::Text("busy".into()),
                Value::Int(42),
            ],
        )
        .await
        .expect("insert");
    assert_eq!(inserted, 1);
    let rows = db.query("SELECT * FROM t", vec![]).await.expect("select");
    assert_eq!(
        rows.rows,
        vec![vec![
            Value::Int(-7),
            Value::Int(2_000_000_000),
            Value::Int(9_000_000_000),
            Value::Int(1),
            Value::Text("12.50".into()),
            Value::Text("6f1c3a4e-8d2b-4c1a-9e0f-123456789abc".into()),
            Value::Text(r#"{"a": [1, 2]}"#.into()),
            Value::Text(r#"{"b":true}"#.into()),
            Value::Text("2026-12-07".into()),
            Value::Text("2026-12-07T05:22:09.500Z".into()),
            Value::Text("2026-12-07T06:22:09".into()),
            Value::Blob(vec![0, 1, 255]),
            Value::Float(0.5),
            Value::Text("P1DT2H3S".into()),
            Value::Text("busy".into()),
            Value::Text("42".into()),
        ]]
    );
    // Server-side computations come back as the same five.
    let rows = db
        .query(
            "SELECT sum(price), count(*), avg(ratio), bool_and(flag) FROM t",
            vec![],
        )
        .await
        .expect("aggregates");
    assert_eq!(
        rows.rows[0],
        [
            Value::Text("12.50".into()),
            Value::Int(1),
            Value::Float(0.5),
            Value::Int(1)
        ]
    );

    // A parameter that does not fit its column's type is refused before it is sent,
    // naming the parameter.
    let e = db
        .execute(
            "UPDATE t SET normal = $1 WHERE small = $2",
            vec![Value::Int(3_000_000_000), Value::Int(-7)],
        )
        .await
        .expect_err("int4 overflow");
    assert!(
        e.to_string()
            .contains("sql `orders`: $1: 3000000000 does not fit int4"),
        "{e}"
    );
    let e = db
        .execute("UPDATE t SET flag = $1", vec![Value::Int(2)])
        .await
        .expect_err("not a bool");
    assert!(e.to_string().contains("$1: 2 is not a bool"), "{e}");
    // A text the server cannot parse as the declared type: its own message.
    let e = db
        .execute(
            "UPDATE t SET id = $1",
            vec![Value::Text("not-a-uuid".into())],
        )
        .await
        .expect_err("bad uuid");
    assert!(e.to_string().contains("uuid"), "{e}");
    // A column of a type updraft does not convert says how to read it.
    let e = db
        .query("SELECT point(1, 2) AS p", vec![])
        .await
        .expect_err("point");
    assert!(e.to_string().contains("cast it to text (`p::text`)"), "{e}");
    let rows = db
        .query("SELECT point(1, 2)::text AS p", vec![])
        .await
        .expect("point as text");
    assert_eq!(rows.rows[0][0], Value::Text("(1,2)".into()));
    let tables = db.tables().await.expect("tables");
    assert_eq!(tables.len(), 1);
    assert_eq!(
        tables[0].columns[4],
        ("price".into(), "numeric(10,2)".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statements_stop_at_the_deadline_and_the_pool_never_hangs() {
    let server = Postgres::start();
    let db = Arc::new(database(&server, "bounds", |o| {
        o.pool_size = 1;
        o.pool_wait = Duration::from_millis(300);
        o.limits.max_rows = 10;
    }));
    let running = |db: Arc<PostgresSql>| async move {
        db.query(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'",
            vec![],
        )
        .await
        .expect("activity")
        .rows[0][0]
            .clone()
    };

    // The runtime drops a host call at its invocation's deadline: the statement is
    // cancelled on the server, and its connection does not go back mid-statement.
    let call = db.query("SELECT pg_sleep(30)", vec![]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err()
    );
    assert!(
        eventually(Duration::from_secs(10), async || running(db.clone()).await
            == Value::Int(0))
        .await,
        "the abandoned statement was cancelled"
    );

    // One connection, held: the next call fails with a clear error instead of waiting.
    let holder = db.clone();
    let held = tokio::spawn(async move { holder.query("SELECT pg_sleep(3)", vec![]).await });
    // Watched from a pool of its own: the held call is running before the next one asks.
    let watcher = PostgresSql::new("orders", &options(server.url("bounds"))).expect("pool");
    assert!(
        eventually(Duration::from_secs(10), async || watcher
            .query(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3)'",
                vec![]
            )
            .await
            .is_ok_and(|r| r.rows[0][0] == Value::Int(1)))
        .await,
        "the held call started"
    );
    let e = db
        .query("SELECT 1", vec![])
        .await
        .expect_err("pool exhausted");
    assert!(
        e.to_string().contains("all 1 connections") && e.to_string().contains("pool_size"),
        "{e}"
    );
    held.await.expect("join").expect("the held call finishes");

    // Results are capped; the connection is usable after a cut-short result.
    let e = db
        .query("SELECT generate_series(1, 100000)", vec![])
        .await
        .expect_err("too many rows");
    assert!(e.to_string().contains("over 10 rows"), "{e}");
    let rows = db.query("SELECT 7", vec![]).await.expect("after the cap");
    assert_eq!(rows.rows[0][0], Value::Int(7));

    // statement_timeout is the server-side backstop.
    let short = database(&server, "backstop", |o| {
        o.statement_timeout = Duration::from_millis(200)
    });
    let e = short
        .query("SELECT pg_sleep(5)", vec![])
        .await
        .expect_err("timeout");
    assert!(e.to_string().contains("cancelled"), "{e}");

    // A session change would outlive the call on a pooled connection: refused.
    let e = db
        .execute("SET search_path = elsewhere", vec![])
        .await
        .expect_err("set");
    assert!(matches!(e, SqlError::Refused { .. }), "{e:?}");
    db.batch(vec![("SET LOCAL statement_timeout = 1000".into(), vec![])])
        .await
        .expect("SET LOCAL is the call's own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_call_leaves_nothing_behind_on_its_pooled_connection() {
    let server = Postgres::start();
    let db = database(&server, "leftovers", |o| {
        o.pool_size = 1;
        o.limits.max_bytes = 4_096;
    });
    db.execute("CREATE TABLE t (x int)", vec![])
        .await
        .expect("create");

    // A batch cut at its deadline mid-transaction: its first insert never lands, and the
    // one connection does not come back inside the transaction (the next write commits).
    let cut = db.batch(vec![
        ("INSERT INTO t VALUES (1)".into(), vec![]),
        ("SELECT pg_sleep(30)".into(), vec![]),
    ]);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), cut)
            .await
            .is_err()
    );
    db.execute("INSERT INTO t VALUES (2)", vec![])
        .await
        .expect("the next call");
    let fresh = PostgresSql::new("orders", &options(server.url("leftovers"))).expect("pool");
    let rows = fresh
        .query("SELECT x FROM t ORDER BY x", vec![])
        .await
        .expect("from another connection");
    assert_eq!(rows.rows, vec![vec![Value::Int(2)]]);

    // Session state a statement changes without `SET` (which is refused) is reset before
    // the connection serves another call: settings, temporary tables, advisory locks.
    db.query("SELECT set_config('search_path', 'nowhere', false)", vec![])
        .await
        .expect("set_config");
    db.execute("CREATE TEMP TABLE scratch AS SELECT 1 AS secret", vec![])
        .await
        .expect("temp table");
    db.query("SELECT pg_advisory_lock(42)", vec![])
        .await
        .expect("lock");
    let rows = db
        .query("SELECT current_setting('search_path')", vec![])
        .await
        .expect("setting");
    assert_eq!(rows.rows[0][0], Value::Text("\"$user\", public".into()));
    let e = db
        .query("SELECT secret FROM scratch", vec![])
        .await
        .expect_err("the temporary table is gone");
    assert!(e.to_string().contains("scratch"), "{e}");
    let rows = fresh
        .query("SELECT pg_try_advisory_lock(42)", vec![])
        .await
        .expect("lock elsewhere");
    assert_eq!(rows.rows[0][0], Value::Int(1), "the lock was released");

    // Results are capped in bytes as well as rows; the connection is usable after.
    let e = db
        .query("SELECT repeat('x', 10000)", vec![])
        .await
        .expect_err("too many bytes");
    assert!(e.to_string().contains("4096 bytes"), "{e}");
    let rows = db.query("SELECT 7", vec![]).await.expect("after the cap");
    assert_eq!(rows.rows[0][0], Value::Int(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_fails_calls_and_coming_back_heals_them() {
    let mut server = Postgres::start();
    let db = database(&server, "outage", |_| {});
    db.execute("CREATE TABLE t (x int)", vec![])
        .await
        .expect("create");
    server.stop();
    let e = db
        .execute("INSERT INTO t VALUES (1)", vec![])
        .await
        .expect_err("server down");
    assert!(matches!(e, SqlError::Backend { .. }), "{e:?}");
    assert!(!e.to_string().contains(server.password()), "{e}");
    server.resume().expect("restart");
    assert!(
        eventually(Duration::from_secs(20), async || db
            .execute("INSERT INTO t VALUES (1)", vec![])
            .await
            .is_ok())
        .await,
        "calls work again once the server is back"
    );
    let rows = db
        .query("SELECT count(*) FROM t", vec![])
        .await
        .expect("count");
    assert_eq!(rows.rows[0][0], Value::Int(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wrong_password_is_named_without_showing_it() {
    let server = Postgres::start();
    server.create_database("app");
    let url = server.url("app").replace(server.password(), "wrong-secret");
    let e = PostgresSql::connect("orders", &options(url))
        .await
        .expect_err("wrong password");
    let message = e.to_string();
    assert!(
        message.contains("sql `orders`")
            && message.contains("password authentication failed")
            && message.contains("postgres:***@127.0.0.1"),
        "{message}"
    );
    assert!(!message.contains("wrong-secret"), "{message}");
    // The password from its own setting (UPDRAFT_SQL_<LABEL>_PASSWORD) works.
    let mut given = options(server.url_without_password("app"));
    given.password = Some(server.password().to_owned());
    let db = PostgresSql::connect("orders", &given)
        .await
        .expect("password given apart");
    assert_eq!(
        db.query("SELECT 1", vec![]).await.expect("query").rows[0][0],
        Value::Int(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server() {
    let server = Postgres::start_with_tls();
    server.create_database("secure");
    let url = format!("{}?sslmode=require", server.url("secure"));

    // Trusting the server's certificate: the session is encrypted.
    let mut trusted = options(url.clone());
    trusted.ca = Some(server.certificate());
    let db = PostgresSql::connect("orders", &trusted)
        .await
        .expect("tls with the server's ca");
    let rows = db
        .query(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            vec![],
        )
        .await
        .expect("ssl status");
    assert_eq!(rows.rows, [[Value::Int(1)]]);
    // A call cut off over TLS still cancels its statement (the cancel goes over TLS too).
    let call = db.query("SELECT pg_sleep(30)", vec![]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), call)
            .await
            .is_err()
    );
    assert!(
        eventually(Duration::from_secs(10), async || db
            .query(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'",
                vec![]
            )
            .await
            .is_ok_and(|r| r.rows[0][0] == Value::Int(0)))
        .await,
        "cancelled over TLS"
    );

    // Not trusting it: refused, saying why.
    let e = PostgresSql::connect("orders", &options(url))
        .await
        .expect_err("an unknown issuer");
    assert!(
        e.to_string().contains("certificate") && !e.to_string().contains(server.password()),
        "{e}"
    );
    // A CA without TLS asked for is a mistake worth naming.
    let mut confused = options(server.url("secure"));
    confused.ca = Some(server.certificate());
    let e = PostgresSql::connect("orders", &confused)
        .await
        .expect_err("ca without sslmode");
    assert!(e.to_string().contains("sslmode=require"), "{e}");
}
