//! The read side: serves the flattened contacts of the `directory` database, shaped the way
//! clients consume them. GET /api/contacts[?city=...], GET /api/contacts/:id.

use updraft_sdk::{http, params, sql};
use wstd::http::{Body, Error, Request, Response, StatusCode};

const COLUMNS: &str = "id, name, email, street, city, postcode, country, mailing_label, version";

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    let db = sql::Database::open("directory")?;
    if let Some(id) = http::param(&req, "id") {
        let rows = db.query(
            &format!("SELECT {COLUMNS} FROM contact_view WHERE id = $1 AND deleted = 0"),
            params![id.as_str()],
        )?;
        return match rows.to_json().into_iter().next() {
            Some(contact) => http::json(&contact),
            None => http::error(StatusCode::NOT_FOUND, format!("no contact `{id}`")),
        };
    }
    let city = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("city="))
            .map(|c| c.replace('+', " "))
    });
    let rows = match city {
        Some(city) => db.query(
            &format!(
                "SELECT {COLUMNS} FROM contact_view WHERE deleted = 0 AND city = $1 ORDER BY name"
            ),
            params![city.as_str()],
        )?,
        None => db.query(
            &format!("SELECT {COLUMNS} FROM contact_view WHERE deleted = 0 ORDER BY name"),
            &[],
        )?,
    };
    http::json(&rows.to_json())
}
