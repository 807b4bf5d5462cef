//! The file-driven scenarios as their examples ship, copied from `examples/`, built by
//! `updraft up`, fed by dropping files into a bucket's folder and through `updraft blob put`,
//! and read back over HTTP:
//!
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
    let file = dir.join("upload.tmp");
    std::fs::write(&file, bytes).unwrap();
    let (code, out, err) = cli(
        server,
        &["blob", "put", "drop", name, file.to_str().unwrap()],
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
    // What the function printed is in its logs.
    let (_, logs, _) = cli(&server, &["logs", "--function", "ingest"]);
    assert!(
        logs.contains("loaded `incoming/sales-2026-11-fix.csv`: 2 rows")
            && logs.contains("quarantined `incoming/bad.csv`"),
        "{logs}"
    );
}
