//! The one response body type, and the JSON error bodies of DESIGN §9.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

use crate::headers::INVOCATION_ID;

/// Errors a body may yield.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the gateway sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// `{ "error": …, "invocation_id": … }` with `status`, and the invocation id header.
pub fn error_response(
    status: StatusCode,
    message: &str,
    invocation_id: Option<&str>,
) -> Response<Body> {
    let mut body = String::from("{\"error\":");
    push_json_string(&mut body, message);
    if let Some(id) = invocation_id {
        body.push_str(",\"invocation_id\":");
        push_json_string(&mut body, id);
    }
    body.push_str("}\n");
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = invocation_id
        && let Ok(v) = HeaderValue::from_str(id)
    {
        response.headers_mut().insert(INVOCATION_ID, v);
    }
    response
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_bodies_are_json() {
        let r = error_response(StatusCode::NOT_FOUND, "no route \"x\"\n", Some("abc"));
        assert_eq!(r.headers()[INVOCATION_ID], "abc");
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &bytes[..],
            b"{\"error\":\"no route \\\"x\\\"\\n\",\"invocation_id\":\"abc\"}\n"
        );
    }
}
