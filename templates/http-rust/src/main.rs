//! An updraft HTTP function: a plain `wasi:http` component.
//!
//! `updraft up` builds it (`cargo build --release --target wasm32-wasip2`) and serves it on
//! http://127.0.0.1:8080. See updraft.toml for its routes, stores and variables.

use updraft_sdk::{http, kv, variables};
use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    // An atomic counter in the `default` kv store (declared in updraft.toml).
    let visits = kv::Store::open("default")?.increment("visits", 1)?;
    let greeting = variables::get("greeting").unwrap_or_else(|| "Hello".to_owned());
    http::json(&serde_json::json!({
        "message": format!("{greeting} from {}", req.uri().path()),
        "visits": visits,
    }))
}
