//! What every [`SqlStore`] must do (in the SQL subset SQLite and PostgreSQL share).

use std::sync::Arc;

use crate::sql::{Migration, SqlError, SqlStore, Value};

/// Runs the suite. `make` returns a fresh, empty database labelled `orders` each call.
pub async fn run(mut make: impl FnMut() -> Arc<dyn SqlStore>) {
    typed_round_trip(make()).await;
    errors_name_the_database(make()).await;
    bulk_loads_are_atomic(make()).await;
    streamed_loads_commit_once(make()).await;
    migrations_apply_once(make()).await;
    transaction_control_is_refused(make()).await;
    reads_only_read(make()).await;
}

/// `read` (dashboards, the table explorer) runs queries and refuses anything that writes,
/// changing nothing.
async fn reads_only_read(db: Arc<dyn SqlStore>) {
    db.execute("CREATE TABLE t (x INTEGER)", vec![])
        .await
        .expect("create");
    db.execute("INSERT INTO t (x) VALUES (1), (2)", vec![])
        .await
        .expect("insert");
    let rows = db
        .read(
            "SELECT sum(x) AS total FROM t WHERE x > $1",
            vec![Value::Int(0)],
        )
        .await
        .expect("read");
    assert_eq!(rows.columns, ["total"]);
    assert_eq!(rows.rows, vec![vec![Value::Int(3)]]);
    for statement in [
        "INSERT INTO t (x) VALUES (3)",
        "DELETE FROM t",
        "UPDATE t SET x = 0",
        "DROP TABLE t",
        "DELETE FROM t RETURNING x",
    ] {
        let e = db.read(statement, vec![]).await.expect_err(statement);
        assert!(
            matches!(e, SqlError::Refused { .. }) && e.to_string().contains("may only read"),
            "{statement}: {e:?}"
        );
    }
    db.execute("CREATE VIEW big AS SELECT x FROM t WHERE x > 1", vec![])
        .await
        .expect("view");
    let tables = db.tables().await.expect("tables");
    let shown: Vec<(&str, &str, Vec<&str>)> = tables
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.kind.as_str(),
                t.columns.iter().map(|c| c.0.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [("big", "view", vec!["x"]), ("t", "table", vec!["x"])]
    );
    let e = db.read("SELEC 1", vec![]).await.expect_err("a typo");
    assert!(matches!(e, SqlError::Statement { .. }), "{e:?}");
    let rows = db
        .query("SELECT count(*) FROM t", vec![])
        .await
        .expect("count");
    assert_eq!(rows.rows, vec![vec![Value::Int(2)]], "nothing changed");
}

/// Every call is its own transaction: a guest cannot open, end or nest one (DESIGN §9).
async fn transaction_control_is_refused(db: Arc<dyn SqlStore>) {
    db.execute("CREATE TABLE t (x INTEGER)", vec![])
        .await
        .expect("create");
    for statement in ["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT s", "RELEASE s"] {
        let e = db.execute(statement, vec![]).await.expect_err(statement);
        assert!(
            matches!(e, SqlError::Refused { .. }) && e.to_string().contains("sql `orders`"),
            "{statement}: {e:?}"
        );
        let e = db.query(statement, vec![]).await.expect_err(statement);
        assert!(matches!(e, SqlError::Refused { .. }), "{statement}: {e:?}");
    }
    // The database still works, outside any transaction a refused statement might have left.
    db.execute("INSERT INTO t (x) VALUES (1)", vec![])
        .await
        .expect("insert");
    let rows = db
        .query("SELECT count(*) FROM t", vec![])
        .await
        .expect("count");
    assert_eq!(rows.rows, vec![vec![Value::Int(1)]]);
}

/// Whether a message is a NOT NULL violation (SQLite: `NOT NULL constraint failed`,
/// PostgreSQL: `violates not-null constraint`).
fn names_not_null(message: &str) -> bool {
    message
        .to_lowercase()
        .replace('-', " ")
        .contains("not null")
}

async fn typed_round_trip(db: Arc<dyn SqlStore>) {
    db.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price DOUBLE PRECISION, data BYTEA, note TEXT)",
        vec![],
    )
    .await
    .expect("create");
    let n = db
        .execute(
            "INSERT INTO items (id, name, price, data, note) VALUES ($1, $2, $3, $4, $5)",
            vec![
                Value::Int(1),
                Value::Text("tea ☕".into()),
                Value::Float(2.5),
                Value::Blob(vec![0, 1, 255]),
                Value::Null,
            ],
        )
        .await
        .expect("insert");
    assert_eq!(n, 1);
    let rows = db
        .query(
            "SELECT id, name, price, data, note FROM items WHERE id = $1",
            vec![Value::Int(1)],
        )
        .await
        .expect("query");
    assert_eq!(rows.columns, ["id", "name", "price", "data", "note"]);
    assert_eq!(
        rows.rows,
        vec![vec![
            Value::Int(1),
            Value::Text("tea ☕".into()),
            Value::Float(2.5),
            Value::Blob(vec![0, 1, 255]),
            Value::Null
        ]]
    );
    // A parameter used twice, and parameters out of order (typed by a cast, as a
    // select list gives PostgreSQL no other hint).
    let rows = db
        .query(
            "SELECT CAST($2 AS INTEGER) AS b, $1 AS a, CAST($2 AS INTEGER) AS b2",
            vec![Value::Text("x".into()), Value::Int(7)],
        )
        .await
        .expect("reused params");
    assert_eq!(
        rows.rows[0],
        vec![Value::Int(7), Value::Text("x".into()), Value::Int(7)]
    );
    let changed = db
        .execute(
            "UPDATE items SET price = price * 2 WHERE id = $1",
            vec![Value::Int(1)],
        )
        .await
        .expect("update");
    assert_eq!(changed, 1);
    let empty = db
        .query("SELECT id FROM items WHERE id = $1", vec![Value::Int(99)])
        .await
        .expect("empty");
    assert_eq!(empty.columns, ["id"]);
    assert!(empty.rows.is_empty());
}

async fn errors_name_the_database(db: Arc<dyn SqlStore>) {
    let err = db
        .execute("SELEKT 1", vec![])
        .await
        .expect_err("syntax error");
    assert!(matches!(err, SqlError::Statement { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("sql `orders`:") && msg.contains("syntax"),
        "{msg}"
    );
    let err = db
        .query("SELECT $1, $2", vec![Value::Int(1)])
        .await
        .expect_err("too few params");
    assert!(
        matches!(
            err,
            SqlError::ParameterCount {
                expected: 2,
                given: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("2 parameter(s) but 1 were given"),
        "{err}"
    );
    let err = db
        .query("SELECT * FROM nowhere", vec![])
        .await
        .expect_err("no table");
    assert!(err.to_string().contains("nowhere"), "{err}");
}

async fn bulk_loads_are_atomic(db: Arc<dyn SqlStore>) {
    db.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
        vec![],
    )
    .await
    .expect("create");
    let rows: Vec<Vec<Value>> = (0..1000)
        .map(|i| vec![Value::Int(i), Value::Text(format!("row {i}"))])
        .collect();
    assert_eq!(
        db.execute_many("INSERT INTO t (id, v) VALUES ($1, $2)", rows)
            .await
            .expect("bulk"),
        1000
    );
    // Row 3 breaks NOT NULL: nothing of the batch stays.
    let bad: Vec<Vec<Value>> = (1000..1005)
        .map(|i| {
            vec![
                Value::Int(i),
                if i == 1003 {
                    Value::Null
                } else {
                    Value::Text("x".into())
                },
            ]
        })
        .collect();
    let err = db
        .execute_many("INSERT INTO t (id, v) VALUES ($1, $2)", bad)
        .await
        .expect_err("constraint");
    assert!(names_not_null(&err.to_string()), "{err}");
    let count = db
        .query("SELECT count(*) AS n FROM t", vec![])
        .await
        .expect("count");
    assert_eq!(count.rows[0][0], Value::Int(1000));
    // A batch of statements is one transaction too: the failing third undoes the first two.
    let changed = db
        .batch(vec![
            (
                "UPDATE t SET v = $1 WHERE id < 10".into(),
                vec![Value::Text("a".into())],
            ),
            ("DELETE FROM t WHERE id >= $1".into(), vec![Value::Int(990)]),
        ])
        .await
        .expect("batch");
    assert_eq!(changed, [10, 10]);
    let err = db
        .batch(vec![
            ("DELETE FROM t WHERE id < 100".into(), vec![]),
            ("UPDATE t SET v = 'b'".into(), vec![]),
            ("UPDATE t SET v = NULL WHERE id = 500".into(), vec![]),
        ])
        .await
        .expect_err("constraint");
    assert!(
        err.to_string().contains("statement #2") && names_not_null(&err.to_string()),
        "{err}"
    );
    let count = db
        .query("SELECT count(*), min(id) FROM t WHERE v = 'a'", vec![])
        .await
        .expect("count");
    assert_eq!(count.rows[0], [Value::Int(10), Value::Int(0)]);
    // Transaction control inside a batch is refused like anywhere else.
    let err = db
        .batch(vec![("COMMIT".into(), vec![])])
        .await
        .expect_err("commit");
    assert!(matches!(err, SqlError::Refused { .. }), "{err:?}");
}

async fn migrations_apply_once(db: Arc<dyn SqlStore>) {
    let migrations = vec![
        Migration {
            name: "001_create.sql".into(),
            sql: "CREATE TABLE m (id INTEGER PRIMARY KEY, v TEXT);".into(),
        },
        Migration {
            name: "002_seed.sql".into(),
            sql: "INSERT INTO m (id, v) VALUES (1, 'a'); INSERT INTO m (id, v) VALUES (2, 'b');"
                .into(),
        },
    ];
    let applied = db.migrate(migrations.clone()).await.expect("migrate");
    assert_eq!(applied, ["001_create.sql", "002_seed.sql"]);
    assert!(
        db.migrate(migrations.clone())
            .await
            .expect("again")
            .is_empty()
    );
    let count = db
        .query("SELECT count(*) FROM m", vec![])
        .await
        .expect("count");
    assert_eq!(count.rows[0][0], Value::Int(2));
    let mut more = migrations;
    more.push(Migration {
        name: "003_broken.sql".into(),
        sql: "CREATE TABLE m (id INTEGER);".into(),
    });
    let err = db.migrate(more).await.expect_err("broken migration");
    assert!(err.to_string().contains("003_broken.sql"), "{err}");
}

/// A streamed load: rows pushed in chunks go in at the commit, all of them or none; a load
/// dropped without a commit changes nothing; errors name the row.
async fn streamed_loads_commit_once(db: Arc<dyn SqlStore>) {
    db.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, n DOUBLE PRECISION, b BYTEA)",
        vec![],
    )
    .await
    .expect("create");
    let upsert = "INSERT INTO t (id, v, n, b) VALUES ($1, $2, $3, $4) \
                  ON CONFLICT (id) DO UPDATE SET v = excluded.v, n = excluded.n, b = excluded.b";
    let row = |i: i64, v: Value| {
        vec![
            Value::Int(i),
            v,
            Value::Float(i as f64 / 2.0),
            Value::Blob(vec![i as u8, 0, 255]),
        ]
    };
    let count = |db: Arc<dyn SqlStore>| async move {
        db.query("SELECT count(*) FROM t", vec![])
            .await
            .expect("count")
            .rows[0][0]
            .clone()
    };
    let mut load = db.load(upsert).await.expect("begin");
    for chunk in 0..5 {
        let rows = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| row(i, Value::Text(format!("row {i} é"))))
            .collect();
        load.push(rows).await.expect("push");
    }
    assert_eq!(load.rows(), 5000);
    // Nothing is visible before the commit.
    assert_eq!(count(db.clone()).await, Value::Int(0));
    assert_eq!(load.commit().await.expect("commit"), 5000);
    assert_eq!(count(db.clone()).await, Value::Int(5000));
    let back = db
        .query("SELECT id, v, n, b FROM t WHERE id = 4321", vec![])
        .await
        .expect("read back");
    assert_eq!(back.rows, [row(4321, Value::Text("row 4321 é".into()))]);

    // Upserts by key: a second load of overlapping keys updates them.
    let mut load = db.load(upsert).await.expect("begin");
    load.push(vec![
        row(7, Value::Text("seven".into())),
        row(9000, Value::Null.clone()),
    ])
    .await
    .expect("push");
    // Row 2 breaks NOT NULL: the error names it, and row 1's update is undone too.
    let err = load.commit().await.expect_err("constraint");
    let message = err.to_string();
    assert!(
        message.contains("row 2 of the load") && names_not_null(&message),
        "{message}"
    );
    assert!(message.contains("`orders`"), "{message}");
    let v = db
        .query("SELECT v FROM t WHERE id = 7", vec![])
        .await
        .expect("read");
    assert_eq!(v.rows[0][0], Value::Text("row 7 é".into()));

    // Dropped without a commit: nothing.
    let mut load = db.load(upsert).await.expect("begin");
    load.push(vec![row(10_000, Value::Text("x".into()))])
        .await
        .expect("push");
    drop(load);
    assert_eq!(count(db.clone()).await, Value::Int(5000));

    // A row of the wrong width is refused at the push, naming it.
    let mut load = db.load(upsert).await.expect("begin");
    load.push(vec![row(1, Value::Null)]).await.expect("push");
    let err = load
        .push(vec![row(2, Value::Null), vec![Value::Int(3)]])
        .await
        .expect_err("width");
    assert!(
        err.to_string().contains("row 3 of the load has 1 value(s)"),
        "{err}"
    );

    // A bad statement fails at the start; so does one the sandbox refuses.
    let err = db
        .load("INSERT INTO nowhere VALUES ($1)")
        .await
        .err()
        .expect("bad");
    assert!(
        matches!(err, SqlError::Statement { .. }) && err.to_string().contains("nowhere"),
        "{err:?}"
    );
    let err = db
        .load("ATTACH DATABASE ':memory:' AS other")
        .await
        .err()
        .expect("attach");
    assert!(matches!(err, SqlError::Refused { .. }), "{err:?}");

    // An empty load commits nothing and succeeds.
    let load = db.load(upsert).await.expect("begin");
    assert_eq!(load.commit().await.expect("empty"), 0);
}
