//! The chain's results: GET /api/etl/orders (the `orders` table) and GET /api/etl/reports
//! (every export's report).

use std::io::Read;

use updraft_sdk::blob::Bucket;
use updraft_sdk::{http, sql};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    match (req.method().clone(), http::path_info(&req).as_str()) {
        (Method::GET, "/orders") => {
            let db = sql::Database::open("warehouse")?;
            let rows = db.query("SELECT * FROM orders ORDER BY order_id", &[])?;
            http::json(&rows.to_json())
        }
        (Method::GET, "/reports") => {
            let bucket = Bucket::open(etl_files::BUCKET)?;
            let mut reports = Vec::new();
            for object in bucket.list("reports/") {
                let object = object?;
                let mut text = String::new();
                if let Some(mut r) = bucket.reader(&object.name)? {
                    r.read_to_string(&mut text)?;
                }
                reports.push(serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default());
            }
            http::json(&reports)
        }
        (method, path) => http::error(
            StatusCode::NOT_FOUND,
            format!("no handler for {method} /api/etl{path}; try /api/etl/reports"),
        ),
    }
}
