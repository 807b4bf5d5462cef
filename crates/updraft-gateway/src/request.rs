//! What a request must be before a function sees it.
//!
//! hyper parses HTTP/1.1 framing, but takes any visible-ASCII header value. A function gets
//! the `Host` header as its request's authority (`wasi:http` `incoming-request.authority`),
//! and guest SDKs build an `http::Uri` from it: a value that is not a host and port makes the
//! guest fail before its code runs, which would surface as a 500 that no function produced.
//! RFC 9112 §3.2 says what that request gets instead: 400, as does one with several `Host`
//! lines. The same goes for a request target without a path.

use http::header::HOST;
use http::uri::Authority;
use http::{HeaderMap, Request, Uri};

/// Checks what a function would get of `req`: its target ([`check_target`]) and its `Host`
/// ([`check_host`]).
pub fn check<B>(req: &Request<B>) -> Result<(), String> {
    check_target(req.uri())?;
    check_host(req.headers())
}

/// Checks the request target has a path: hyper takes the authority-form (`host:port`, meant
/// for `CONNECT` to a proxy) with any method, and a function cannot be handed a request
/// without a path.
pub fn check_target(uri: &Uri) -> Result<(), String> {
    if uri.path_and_query().is_none() {
        return Err(format!(
            "the request target `{uri}` has no path; updraft is not a proxy: send a path such as `/orders?page=2`"
        ));
    }
    Ok(())
}

/// Checks the `Host` header of a request: at most one line, and, unless it is empty (a
/// request without an authority), a host with an optional port, as `http::uri::Authority`
/// reads it, without userinfo. The error says what is wrong, for a 400.
pub fn check_host(headers: &HeaderMap) -> Result<(), String> {
    let mut hosts = headers.get_all(HOST).iter();
    let Some(host) = hosts.next() else {
        return Ok(());
    };
    if hosts.next().is_some() {
        return Err("the request has more than one `Host` header; send exactly one".to_owned());
    }
    let Ok(text) = host.to_str() else {
        return Err("the `Host` header is not visible ASCII; send a host name or address and an optional port".to_owned());
    };
    if text.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| {
        Err(format!(
            "`Host: {}` is not a host and optional port ({why}); send one like `Host: example.com:8080`",
            text.escape_debug()
        ))
    };
    if let Err(e) = text.parse::<Authority>() {
        return bad(&e.to_string());
    }
    if text.contains('@') {
        return bad("it has userinfo");
    }
    // After an IPv6 literal's `]`, or anywhere in a name or IPv4 address.
    let after_literal = text.rfind(']').map_or(0, |i| i + 1);
    if let Some((_, port)) = text[after_literal..].split_once(':')
        && !port.is_empty()
        && port.parse::<u16>().is_err()
    {
        return bad("its port is not a number from 0 to 65535");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn check(values: &[&[u8]]) -> Result<(), String> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(HOST, HeaderValue::from_bytes(v).unwrap());
        }
        check_host(&headers)
    }

    #[test]
    fn hosts_a_guest_can_read_pass_and_others_say_why() {
        for ok in [
            &b"127.0.0.1:8080"[..],
            b"localhost",
            b"example.com",
            b"[::1]:80",
            b"[::1]",
            b"",
            b"a-b.example:1",
        ] {
            assert_eq!(check(&[ok]), Ok(()), "{}", ok.escape_ascii());
        }
        assert_eq!(check(&[]), Ok(()));
        for (bad, why) in [
            (&b"a b"[..], "invalid uri character"),
            (b"localhost, localhost", "invalid uri character"),
            (b"127.0.0.1?q", "invalid uri character"),
            (b"::1", "invalid authority"),
            (b"%41", "invalid authority"),
            (b"[::1", "invalid authority"),
            (b"user@127.0.0.1", "userinfo"),
            (b"127.0.0.1:99999", "port"),
            (b"127.0.0.1:8o8o", "port"),
            (b"h\xc3\xa9st", "visible ASCII"),
        ] {
            let e = check(&[bad]).unwrap_err();
            assert!(e.contains(why), "{}: {e}", bad.escape_ascii());
        }
        let e = check(&[b"a", b"a"]).unwrap_err();
        assert!(e.contains("more than one `Host`"), "{e}");
    }

    #[test]
    fn a_target_without_a_path_is_refused() {
        let authority_form: Uri = "127.0.0.1:80".parse().unwrap();
        let e = check_target(&authority_form).unwrap_err();
        assert!(e.contains("has no path"), "{e}");
        for ok in ["/", "/a?b", "*", "http://127.0.0.1", "http://h/x?y"] {
            let uri: Uri = ok.parse().unwrap();
            assert_eq!(check_target(&uri), Ok(()), "{ok}");
        }
        let req = Request::builder().uri("127.0.0.1:80").body(()).unwrap();
        assert!(super::check(&req).is_err());
    }
}
