//! The file-driven scenarios as their examples ship, copied from `examples/`, built by
//! `updraft up`, fed by dropping files into a bucket's folder and through `updraft blob put`,
//! and read back over HTTP:
//!
//! * scenario 4, `examples/etl-files`: validate → transform → load, one function per step
//!   chained through queues, a report per export;
//! * scenario 7, `examples/data-pipeline`: sales CSVs become typed, upserted rows of a
//!   `sales` table; a bad file loads nothing and is quarantined with a report.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use updraft_test_support::Server;

use crate::{bin, cli, copy_example, eventually, get};

async fn get_json(server: &Server, path: &str) -> Value {
    let (status, text) = get(server, path).await;
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// Puts `bytes` into bucket `drop` as `name` with the CLI.
fn blob_put(server: &Server, dir: &Path, name: &str, bytes: &[u8]) {
    blob_put_to(server, dir, "drop", name, bytes);
}

/// Puts `bytes` into `bucket` as `name` with the CLI.
fn blob_put_to(server: &Server, dir: &Path, bucket: &str, name: &str, bytes: &[u8]) {
    let file = dir.join("upload.tmp");
    std::fs::write(&file, bytes).unwrap();
    let (code, out, err) = cli(
        server,
        &["blob", "put", bucket, name, file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
}

/// The quarantine listing entry for `file`, once it is there.
async fn quarantined(server: &Server, file: &str) -> Value {
    let mut found = Value::Null;
    let there = eventually(Duration::from_secs(60), async || {
        let list = get_json(server, "/api/sales/quarantine").await;
        match list
            .as_array()
            .and_then(|l| l.iter().find(|q| q["file"] == file))
        {
            Some(q) => {
                found = q["report"].clone();
                true
            }
            None => false,
        }
    })
    .await;
    assert!(
        there,
        "`{file}` was never quarantined\n{}",
        server.stderr.text()
    );
    found
}

fn lines_and_reasons(report: &Value) -> Vec<(u64, String)> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                format!(
                    "{} {}",
                    e["column"].as_str().unwrap_or("-"),
                    e["reason"].as_str().unwrap()
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn data_pipeline_loads_sales_csvs_and_quarantines_bad_files() {
    let dir = copy_example("data-pipeline");
    let server = Server::start(bin(), dir.path(), &[]);
    let bucket = dir.path().join(".updraft/buckets/drop");
    let incoming = bucket.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();

    // A clean export, copied into the folder the way a user (or another program) would.
    std::fs::copy(
        dir.path().join("sample/sales-2026-11.csv"),
        incoming.join("sales-2026-11.csv"),
    )
    .unwrap();
    let rows = async || get_json(&server, "/api/sales/summary").await["totals"]["rows"].as_u64();
    assert!(
        eventually(Duration::from_secs(60), async || rows().await == Some(5)).await,
        "the sample never loaded\n{}",
        server.stderr.text()
    );
    let summary = get_json(&server, "/api/sales/summary").await;
    assert_eq!(
        summary["totals"]["total"].as_f64(),
        Some(63.99),
        "{summary}"
    );
    assert_eq!(summary["by_region"][1]["region"], "north", "{summary}");
    assert_eq!(
        summary["by_region"][1]["total"].as_f64(),
        Some(22.5),
        "{summary}"
    );

    // A file with bad rows loads nothing, not even its good first row, and is moved to
    // `quarantine/` with a report that names every bad line.
    let bad: &[u8] = b"order_id,day,region,product,units,unit_price,total\n\
        SO-2001,2026-11-05,north,widget,2,2.50,5.00\n\
        SO-2002,2026-11-05,north,widget,two,2.50,5.00\n\
        SO-2003,2026-11-05,north\n\
        SO-2004,2026-11-05,\xff\xfenorth,widget,1,2.50,2.50\n\
        SO-2005,2026-11-31,south,widget,1,2.50,2.50\n";
    std::fs::write(incoming.join("bad.csv"), bad).unwrap();
    let report = quarantined(&server, "quarantine/incoming/bad.csv").await;
    assert_eq!(
        lines_and_reasons(&report),
        [
            (3, "units `two` is not a whole number".to_owned()),
            (4, "- has 3 field(s) but the header has 7".to_owned()),
            (5, "region is not valid UTF-8".to_owned()),
            (
                6,
                "day `2026-11-31` is not a date like `2026-12-06`".to_owned()
            ),
        ],
        "{report}"
    );
    assert_eq!(report["rows"], 5, "{report}");
    assert!(
        !incoming.join("bad.csv").exists(),
        "the bad file left in place"
    );
    assert_eq!(
        std::fs::read(bucket.join("quarantine/incoming/bad.csv")).unwrap(),
        bad,
        "the quarantined file is the file as sent"
    );

    // Rows the database refuses (a CHECK constraint) quarantine the file the same way.
    blob_put(
        &server,
        dir.path(),
        "incoming/negative.csv",
        b"order_id,day,region,product,units,unit_price,total\n\
          SO-3001,2026-11-06,east,widget,1,2.50,2.50\n\
          SO-3002,2026-11-06,east,widget,-1,2.50,-2.50\n",
    );
    let report = quarantined(&server, "quarantine/incoming/negative.csv").await;
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("row 2 of the load") && error.contains("CHECK"),
        "{report}"
    );

    // An empty upload is quarantined too.
    blob_put(&server, dir.path(), "incoming/empty.csv", b"");
    let report = quarantined(&server, "quarantine/incoming/empty.csv").await;
    assert!(
        report["error"]
            .as_str()
            .unwrap_or_default()
            .contains("empty"),
        "{report}"
    );
    assert_eq!(rows().await, Some(5), "nothing of a bad file is loaded");

    // A corrected export upserts by `order_id`: with a BOM, CRLF line ends and a quoted
    // newline, sent with the CLI.
    blob_put(
        &server,
        dir.path(),
        "incoming/sales-2026-11-fix.csv",
        "\u{feff}order_id,day,region,product,units,unit_price,total,paid\r\n\
         SO-1001,2026-11-02,north,widget,5,2.50,12.50,yes\r\n\
         SO-1006,2026-11-05,west,\"gift set\nwith card\",1,30.00,30.00,no\r\n"
            .as_bytes(),
    );
    assert!(
        eventually(Duration::from_secs(60), async || rows().await == Some(6)).await,
        "the corrected export never loaded\n{}",
        server.stderr.text()
    );
    let summary = get_json(&server, "/api/sales/summary").await;
    assert_eq!(
        summary["totals"]["total"].as_f64(),
        Some(96.49),
        "{summary}"
    );
    assert!(
        summary["by_region"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["region"] == "west" && r["total"].as_f64() == Some(30.0)),
        "{summary}"
    );
    // What the function printed is in its logs (written just after the invocation ends,
    // so possibly after its rows are visible).
    let mut logs = String::new();
    let logged = eventually(Duration::from_secs(30), async || {
        logs = cli(&server, &["logs", "--function", "ingest"]).1;
        logs.contains("loaded `incoming/sales-2026-11-fix.csv`: 2 rows")
            && logs.contains("quarantined `incoming/bad.csv`")
    })
    .await;
    assert!(logged, "{logs}");
}

/// The report of export `file` in `examples/etl-files`, once its status is `status`.
async fn etl_report(server: &Server, file: &str, status: &str) -> Value {
    let mut found = Value::Null;
    let there = eventually(Duration::from_secs(60), async || {
        let reports = get_json(server, "/api/etl/reports").await;
        match reports
            .as_array()
            .and_then(|r| r.iter().find(|r| r["file"] == file))
        {
            Some(r) if r["status"] == status => {
                found = r.clone();
                true
            }
            _ => false,
        }
    })
    .await;
    assert!(
        there,
        "no `{status}` report for `{file}`\n{}",
        server.stderr.text()
    );
    found
}

#[tokio::test]
async fn etl_files_chain_validates_transforms_and_loads_each_export() {
    let dir = copy_example("etl-files");
    let server = Server::start(bin(), dir.path(), &[]);
    let bucket = dir.path().join(".updraft/buckets/orders");
    let incoming = bucket.join("incoming");
    // The trigger makes the folder it watches, for `cp` to drop files into.
    assert!(
        eventually(Duration::from_secs(30), async || incoming.is_dir()).await,
        "no `incoming/` folder in the bucket"
    );

    std::fs::copy(
        dir.path().join("sample/orders-2026-12-01.csv"),
        incoming.join("orders-2026-12-01.csv"),
    )
    .unwrap();
    let report = etl_report(&server, "incoming/orders-2026-12-01.csv", "loaded").await;
    assert_eq!(
        (report["rows"].as_u64(), report["loaded"].as_u64()),
        (Some(4), Some(4)),
        "{report}"
    );
    assert_eq!(report["unknown_customers"], 1, "{report}");
    let orders = get_json(&server, "/api/etl/orders").await;
    let brief: Vec<String> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {} {} {}",
                o["order_id"].as_str().unwrap(),
                o["day"].as_str().unwrap(),
                o["region"].as_str().unwrap_or("-"),
                o["amount_eur"]
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            "A-100 2026-12-01 north 100.0",
            "A-101 2026-12-01 south 950.0",
            "A-102 2026-12-02 west 59.0",
            "A-103 2026-12-02 - 21.4",
        ],
        "dates to ISO, amounts to euros, regions from the lookup table"
    );
    // The export moves to `done/` (just after its report is written); nothing is left
    // staged.
    assert!(
        eventually(Duration::from_secs(30), async || bucket
            .join("done/orders-2026-12-01.csv")
            .is_file())
        .await
    );
    assert!(!incoming.join("orders-2026-12-01.csv").exists());
    let staged = std::fs::read_dir(bucket.join("staged")).map_or(0, |d| d.count());
    assert_eq!(staged, 0, "a staged file was left behind");

    // Values `transform` cannot read: quarantined by that step, every bad line named,
    // nothing loaded.
    std::fs::write(
        incoming.join("bad-values.csv"),
        "order_id,ordered,customer,amount,currency\n\
         B-1,2026-12-03,C-1,10,XYZ\n\
         B-2,31/02/2026,C-1,10,EUR\n\
         B-3,2026-12-03,C-1,10,EUR\n",
    )
    .unwrap();
    let report = etl_report(&server, "incoming/bad-values.csv", "quarantined").await;
    assert_eq!(report["step"], "transform", "{report}");
    let errors = report["details"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{report}");
    assert_eq!(
        (errors[0]["line"].as_u64(), errors[1]["line"].as_u64()),
        (Some(2), Some(3)),
        "{report}"
    );
    assert!(
        errors[0]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown currency `XYZ`"),
        "{report}"
    );
    assert!(bucket.join("quarantine/bad-values.csv").is_file());

    // A file without the columns the export needs stops at `validate`.
    blob_put_to(
        &server,
        dir.path(),
        "orders",
        "incoming/short.csv",
        b"order_id,ordered,customer,amount\nC-1,2026-12-03,C-1,10\n",
    );
    let report = etl_report(&server, "incoming/short.csv", "quarantined").await;
    assert_eq!(report["step"], "validate", "{report}");
    assert!(
        report["details"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no column `currency`"),
        "{report}"
    );
    assert_eq!(
        get_json(&server, "/api/etl/orders")
            .await
            .as_array()
            .unwrap()
            .len(),
        4,
        "nothing of a bad file is loaded"
    );
}

/// The dead letters of `queue`, through the admin API.
async fn dead_letters(server: &Server, queue: &str) -> Vec<Value> {
    get_json(
        server,
        &format!("/_updraft/api/v1/queues/{queue}/dead-letters"),
    )
    .await
    .as_array()
    .cloned()
    .unwrap_or_default()
}

/// A step that keeps failing (here `load`, while another program holds the warehouse's
/// write lock) is retried, then dead-lettered; the export and its staged copy stay where
/// they are, and a redrive once the cause is gone loads it.
#[tokio::test]
async fn etl_files_failing_step_dead_letters_keeps_the_file_and_redrive_loads_it() {
    let dir = copy_example("etl-files");
    let manifest = dir.path().join("updraft.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let fewer = text.replace(
        "[queue.load]\nmax_attempts = 5",
        "[queue.load]\nmax_attempts = 2",
    );
    assert_ne!(
        text, fewer,
        "the example's `[queue.load]` changed; update this test"
    );
    std::fs::write(&manifest, fewer).unwrap();
    let server = Server::start(bin(), dir.path(), &[]);
    let bucket = dir.path().join(".updraft/buckets/orders");
    let export = "orders-2026-12-01.csv";

    // An analyst's long write transaction on the warehouse, as `sqlite3` would hold it.
    let analyst = rusqlite::Connection::open(dir.path().join(".updraft/sql/warehouse.db")).unwrap();
    analyst.execute_batch("BEGIN IMMEDIATE").unwrap();
    assert!(
        eventually(Duration::from_secs(30), async || bucket
            .join("incoming")
            .is_dir())
        .await
    );
    std::fs::copy(
        dir.path().join("sample").join(export),
        bucket.join("incoming").join(export),
    )
    .unwrap();
    let mut dead = Vec::new();
    let failed = eventually(Duration::from_secs(90), async || {
        dead = dead_letters(&server, "load").await;
        !dead.is_empty()
    })
    .await;
    assert!(
        failed,
        "`load` was never dead-lettered\n{}",
        server.stderr.text()
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["attempts"], 2, "{dead:?}");
    let why = dead[0]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("database is locked"), "{why}");
    // Nothing is lost: the export waits in `incoming/`, transformed in `staged/`.
    assert!(bucket.join("incoming").join(export).is_file());
    assert!(bucket.join("staged").join(export).is_file());
    assert_eq!(
        get_json(&server, "/api/etl/orders").await,
        serde_json::json!([]),
        "nothing loaded"
    );

    analyst.execute_batch("ROLLBACK").unwrap();
    drop(analyst);
    let (code, out, err) = cli(&server, &["dlq", "redrive", "load"]);
    assert_eq!(code, 0, "{out}{err}");
    let report = etl_report(&server, &format!("incoming/{export}"), "loaded").await;
    assert_eq!(report["loaded"], 4, "{report}");
    assert!(
        eventually(Duration::from_secs(30), async || bucket
            .join("done")
            .join(export)
            .is_file())
        .await
    );
    assert!(dead_letters(&server, "load").await.is_empty());
}
