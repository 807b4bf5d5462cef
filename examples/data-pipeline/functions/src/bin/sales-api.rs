//! The sales table, read back: GET /api/sales/summary (totals overall, by region and by
//! day) and GET /api/sales/quarantine (each quarantined file with its report).

use std::io::Read;

use updraft_sdk::blob::Bucket;
use updraft_sdk::{http, sql};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    match (req.method().clone(), http::path_info(&req).as_str()) {
        (Method::GET, "/summary") => summary(),
        (Method::GET, "/quarantine") => quarantine(),
        (method, path) => http::error(
            StatusCode::NOT_FOUND,
            format!("no handler for {method} /api/sales{path}; try /api/sales/summary"),
        ),
    }
}

fn summary() -> Result<Response<Body>, Error> {
    let db = sql::Database::open("sales")?;
    let totals = db.query(
        "SELECT count(*) AS rows, coalesce(sum(units), 0) AS units,
                round(coalesce(sum(total), 0), 2) AS total
         FROM sales",
        &[],
    )?;
    let by_region = db.query(
        "SELECT region, count(*) AS rows, sum(units) AS units, round(sum(total), 2) AS total
         FROM sales GROUP BY region ORDER BY region",
        &[],
    )?;
    let by_day = db.query(
        "SELECT day, round(sum(total), 2) AS total FROM sales GROUP BY day ORDER BY day",
        &[],
    )?;
    http::json(&serde_json::json!({
        "totals": totals.to_json().into_iter().next(),
        "by_region": by_region.to_json(),
        "by_day": by_day.to_json(),
    }))
}

fn quarantine() -> Result<Response<Body>, Error> {
    let drop = Bucket::open("drop")?;
    let mut files = Vec::new();
    for object in drop.list("quarantine/") {
        let object = object?;
        let Some(file) = object.name.strip_suffix(".report.json") else {
            continue;
        };
        let mut text = String::new();
        if let Some(mut reader) = drop.reader(&object.name)? {
            reader.read_to_string(&mut text)?;
        }
        let report: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        files.push(serde_json::json!({ "file": file, "report": report }));
    }
    http::json(&files)
}
