//! `max_headers = "16KiB"` on a route: a request whose headers (names, values and the
//! `: ` and line end each takes) add up to more is refused with 431 before auth or the
//! target see it. The listener's own limit (64 KiB) holds for every route.

use http::{HeaderMap, Request, Response, StatusCode};

use crate::{Body, error_response};

/// The bytes `headers` take on the wire in HTTP/1.1 (`name: value\r\n` each).
pub fn header_bytes(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().len() + value.len() + 4) as u64)
        .sum()
}

/// The 431 for a request of `route` over `max` header bytes; `None` when it is within.
pub fn check<B>(route: &str, max: u64, req: &Request<B>) -> Option<Response<Body>> {
    let size = header_bytes(req.headers());
    (size > max).then(|| {
        error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "the request's headers take {size} bytes, over route `{route}`'s `max_headers` of {max}; send fewer or shorter headers"
            ),
            None,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_count_names_values_and_framing() {
        let mut h = HeaderMap::new();
        h.insert("x-a", "12345".parse().unwrap());
        assert_eq!(header_bytes(&h), 3 + 5 + 4);
        let req = Request::builder().header("x-a", "12345").body(()).unwrap();
        assert!(check("r", 12, &req).is_none());
        assert_eq!(
            check("r", 11, &req).map(|r| r.status()),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }
}
