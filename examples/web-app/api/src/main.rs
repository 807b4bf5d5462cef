//! The web app's JSON API: items in the `items` SQL database, page views in kv.
//!
//! GET/POST /api/items, GET/DELETE /api/items/:id, POST /api/views.

use serde::Deserialize;
use updraft_sdk::{http, kv, params, sql};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

/// Longest item name accepted.
const MAX_NAME: usize = 200;

#[derive(Deserialize)]
struct NewItem {
    name: Option<String>,
    #[serde(default)]
    note: String,
}

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    let route = req
        .headers()
        .get("updraft-route")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match (req.method().clone(), route.as_str()) {
        (Method::GET, "/api/items") => list(),
        (Method::POST, "/api/items") => create(req).await,
        (Method::GET, "/api/items/:id") => match item_id(&req) {
            Some(id) => get(id),
            None => not_found(),
        },
        (Method::DELETE, "/api/items/:id") => match item_id(&req) {
            Some(id) => delete(id),
            None => not_found(),
        },
        (Method::POST, "/api/views") => {
            let views = kv::Store::open("default")?.increment("page-views", 1)?;
            http::json(&serde_json::json!({ "views": views }))
        }
        (method, route) => http::error(
            StatusCode::NOT_FOUND,
            format!("no handler for {method} {route}"),
        ),
    }
}

fn db() -> Result<sql::Database, Error> {
    Ok(sql::Database::open("items")?)
}

fn item_id(req: &Request<Body>) -> Option<i64> {
    http::param(req, "id")?.parse().ok()
}

fn not_found() -> Result<Response<Body>, Error> {
    http::error(StatusCode::NOT_FOUND, "no such item")
}

fn list() -> Result<Response<Body>, Error> {
    let rows = db()?.query("SELECT id, name, note, created FROM items ORDER BY id", &[])?;
    http::json(&rows.to_json())
}

fn get(id: i64) -> Result<Response<Body>, Error> {
    let rows = db()?.query(
        "SELECT id, name, note, created FROM items WHERE id = $1",
        params![id],
    )?;
    match rows.to_json().into_iter().next() {
        Some(item) => http::json(&item),
        None => not_found(),
    }
}

async fn create(req: Request<Body>) -> Result<Response<Body>, Error> {
    let mut body = req.into_body();
    let input: NewItem = match body.json().await {
        Ok(v) => v,
        Err(e) => {
            return http::error(
                StatusCode::BAD_REQUEST,
                format!("send JSON like {{\"name\": \"...\", \"note\": \"...\"}}: {e}"),
            );
        }
    };
    let name = input.name.unwrap_or_default();
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME {
        return http::error(
            StatusCode::BAD_REQUEST,
            format!("`name` is required and at most {MAX_NAME} characters"),
        );
    }
    let rows = db()?.query(
        "INSERT INTO items (name, note) VALUES ($1, $2) RETURNING id, name, note, created",
        params![name, input.note.as_str()],
    )?;
    let item = rows.to_json().into_iter().next().unwrap_or_default();
    http::json_with(StatusCode::CREATED, &item)
}

fn delete(id: i64) -> Result<Response<Body>, Error> {
    match db()?.execute("DELETE FROM items WHERE id = $1", params![id])? {
        0 => not_found(),
        _ => Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())?),
    }
}
