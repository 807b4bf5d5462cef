//! Answers and request details for HTTP functions.

use serde::Serialize;
use wstd::http::{Body, Error, Request, Response, StatusCode};

/// A JSON answer with status 200.
pub fn json<T: Serialize>(value: &T) -> Result<Response<Body>, Error> {
    json_with(StatusCode::OK, value)
}

/// A JSON answer with `status`.
pub fn json_with<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>, Error> {
    let body = serde_json::to_vec(value)?;
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.into())?)
}

/// A plain-text answer.
pub fn text(status: StatusCode, body: impl Into<String>) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body.into().into())?)
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Result<Response<Body>, Error> {
    json_with(status, &serde_json::json!({ "error": message.to_string() }))
}

fn header<'a>(req: &'a Request<Body>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The value of route parameter `:name`, percent-decoded.
pub fn param(req: &Request<Body>, name: &str) -> Option<String> {
    header(req, &format!("updraft-param-{}", name.to_ascii_lowercase())).map(percent_decode)
}

/// What the route's trailing `...` matched (empty when none).
pub fn path_info(req: &Request<Body>) -> String {
    header(req, "updraft-path-info")
        .map(percent_decode)
        .unwrap_or_default()
}

/// This invocation's id.
pub fn invocation_id(req: &Request<Body>) -> Option<&str> {
    header(req, "updraft-invocation-id")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len() + 1
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
