//! A function written with `updraft-sdk`: a visit counter in kv, items in sql, a variable.

use updraft_sdk::{http, kv, params, sql, variables};
use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    match http::path_info(&req).as_str() {
        "/visit" => {
            let visits = kv::Store::open("default")?.increment("visits", 1)?;
            http::json(
                &serde_json::json!({ "visits": visits, "greeting": variables::get("greeting") }),
            )
        }
        "/items" => {
            let db = sql::Database::open("app")?;
            db.execute("CREATE TABLE IF NOT EXISTS items (name TEXT NOT NULL)", &[])?;
            db.execute("INSERT INTO items (name) VALUES ($1)", params!["widget"])?;
            let rows = db.query("SELECT name, count(*) AS n FROM items GROUP BY name", &[])?;
            http::json(&rows.to_json())
        }
        "/denied" => match kv::Store::open("private") {
            Ok(_) => http::text(StatusCode::OK, "opened"),
            Err(e) => http::error(StatusCode::FORBIDDEN, e),
        },
        other => http::error(StatusCode::NOT_FOUND, format!("no `{other}`")),
    }
}
