//! Stands in for the legacy application: it writes whatever it is given, unchecked, which is
//! how bad rows get in. Also shows the data and the scrubber's latest report.
//!
//! POST /api/customers, POST /api/orders, GET /api/customers, GET /api/orders,
//! GET /api/quarantine, GET /api/report.

use updraft_sdk::{http, kv, params, sql};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    let db = sql::Database::open("legacy")?;
    let path = http::path_info(&req);
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/customers") => {
            let c: serde_json::Value = req.into_body().json().await?;
            created(db.query(
                "INSERT INTO customers (name, email, country) VALUES ($1, $2, $3) RETURNING id",
                params![text(&c["name"]), text(&c["email"]), text(&c["country"])],
            )?)
        }
        (Method::POST, "/orders") => {
            let o: serde_json::Value = req.into_body().json().await?;
            created(db.query(
                "INSERT INTO orders (customer_id, amount_cents) VALUES ($1, $2) RETURNING id",
                params![o["customer_id"].as_i64(), o["amount_cents"].as_i64()],
            )?)
        }
        (Method::GET, "/customers") => {
            http::json(&db.query("SELECT * FROM customers ORDER BY id", &[])?.to_json())
        }
        (Method::GET, "/orders") => {
            http::json(&db.query("SELECT * FROM orders ORDER BY id", &[])?.to_json())
        }
        (Method::GET, "/quarantine") => http::json(
            &db.query(
                "SELECT source_table, source_id, row_json, reason, quarantined_at FROM quarantine ORDER BY rowid",
                &[],
            )?
            .to_json(),
        ),
        (Method::GET, "/report") => {
            let reports = kv::Store::open("reports")?;
            let latest: Option<serde_json::Value> = reports.get_json("latest")?;
            let runs = reports.get_string("runs")?.unwrap_or_else(|| "0".into());
            http::json(&serde_json::json!({ "runs": runs.parse::<u64>().unwrap_or(0), "latest": latest }))
        }
        (method, path) => http::error(
            StatusCode::NOT_FOUND,
            format!("no {method} /api{path}"),
        ),
    }
}

/// A JSON string or null, as the legacy app stores it (no checks).
fn text(v: &serde_json::Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn created(id: sql::Rows) -> Result<Response<Body>, Error> {
    http::json_with(
        StatusCode::CREATED,
        &id.to_json().first().cloned().unwrap_or_default(),
    )
}
