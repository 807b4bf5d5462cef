//! The smallest HTTP function: answers every request with a greeting.
use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_req: Request<Body>) -> Result<Response<Body>, Error> {
    Ok(Response::new("Hello, World!\n".into()))
}
