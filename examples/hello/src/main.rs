//! A hello-world HTTP function: a plain `wasi:http` component built with `wstd`.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    // `updraft-param-name` is set by updraft from the route's `:name` segment.
    let name = req
        .headers()
        .get("updraft-param-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("world");
    let greeting = std::env::var("greeting").unwrap_or_else(|_| "Hello".to_owned());
    Ok(Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(format!("{greeting}, {name}!\n").into())?)
}
