//! The product API of the gateway example: one component, deployed as three functions
//! (`products-v1`, `products-v2`, `products-canary`) that differ only in their `version`
//! variable, so what answered a request is plain in every response.
//!
//! GET /products, GET /products/:id, POST /products (a JSON product with a `name`).

use serde::Deserialize;
use updraft_sdk::{http, variables};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

#[derive(Deserialize)]
struct NewProduct {
    name: String,
    #[serde(default)]
    price: f64,
}

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    let version = variables::get("version").unwrap_or_else(|| "unversioned".to_owned());
    // The path after the gateway's rewrite: `/v2/products/7` arrives as `/products/7`.
    let path = req.uri().path().to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // What the gateway verified: an API key's id, a JWT's claims.
    let claims: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            let claim = name.as_str().strip_prefix("updraft-claim-")?;
            Some((claim.to_owned(), value.to_str().ok()?.into()))
        })
        .collect();
    let seen = serde_json::json!({
        "version": version,
        "path": path,
        "route": header("updraft-route"),
        "key_id": header("updraft-key-id"),
        "claims": claims,
    });
    let id = path.strip_prefix("/products/").filter(|s| !s.is_empty());
    match (req.method().clone(), id) {
        (Method::GET, None) => http::json(&serde_json::json!({
            "served_by": seen,
            "products": [
                { "id": 1, "name": "kite", "price": 25.0 },
                { "id": 2, "name": "glider", "price": 900.0 },
            ],
        })),
        (Method::GET, Some(id)) => http::json(&serde_json::json!({
            "served_by": seen,
            "product": { "id": id, "name": format!("product {id}") },
        })),
        (Method::POST, None) => {
            let mut body = req.into_body();
            match body.json::<NewProduct>().await {
                Ok(p) => http::json_with(
                    StatusCode::CREATED,
                    &serde_json::json!({
                        "served_by": seen,
                        "product": { "name": p.name, "price": p.price },
                    }),
                ),
                Err(e) => http::error(
                    StatusCode::BAD_REQUEST,
                    format!("send a JSON product like {{\"name\": \"kite\"}}: {e}"),
                ),
            }
        }
        (method, _) => http::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} {path} is not part of the product API"),
        ),
    }
}
