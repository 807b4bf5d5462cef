//! The `updraft-*` headers: stripped from clients, set by updraft for functions (DESIGN §9).

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Set on every request to a function and on every response.
pub const INVOCATION_ID: HeaderName = HeaderName::from_static("updraft-invocation-id");
/// The route pattern that matched.
pub const ROUTE: HeaderName = HeaderName::from_static("updraft-route");
/// What the trailing `...` matched.
pub const PATH_INFO: HeaderName = HeaderName::from_static("updraft-path-info");
/// The client's socket address.
pub const CLIENT_ADDR: HeaderName = HeaderName::from_static("updraft-client-addr");
/// The API key a route's auth verified.
pub const KEY_ID: HeaderName = HeaderName::from_static("updraft-key-id");
/// Prefix of one header per `:param`.
pub const PARAM_PREFIX: &str = "updraft-param-";

/// Removes every header a client sent whose name starts with `updraft-`, so none can be forged.
/// Returns how many were removed.
pub fn strip_reserved(headers: &mut HeaderMap) -> usize {
    let reserved: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("updraft-"))
        .cloned()
        .collect();
    for name in &reserved {
        headers.remove(name);
    }
    reserved.len()
}

/// What updraft tells a function about its request.
#[derive(Debug, Clone)]
pub struct FunctionHeaders<'a> {
    /// The invocation id.
    pub invocation_id: &'a str,
    /// The matched pattern.
    pub route: &'a str,
    /// The wildcard's remainder.
    pub path_info: &'a str,
    /// The `:param` values.
    pub params: &'a [(String, String)],
    /// The client.
    pub client_addr: Option<SocketAddr>,
    /// What the route's auth verified ([`identity_headers`]).
    pub identity: &'a [(HeaderName, HeaderValue)],
}

/// Prefix of one header per verified JWT claim.
pub const CLAIM_PREFIX: &str = "updraft-claim-";

/// The headers that say who a request is: `updraft-key-id` for an API key, and
/// `updraft-claim-<name>` per JWT claim (a claim whose name or value cannot be a header is
/// left out).
pub fn identity_headers(
    key_id: Option<&str>,
    claims: &[(String, String)],
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    if let Some(v) = key_id.and_then(|k| HeaderValue::from_str(k).ok()) {
        out.push((KEY_ID, v));
    }
    for (name, value) in claims {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(format!("{CLAIM_PREFIX}{}", name.to_ascii_lowercase())),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.push((n, v));
        }
    }
    out
}

impl FunctionHeaders<'_> {
    /// Strips client `updraft-*` headers, then sets updraft's own.
    pub fn apply(&self, headers: &mut HeaderMap) {
        strip_reserved(headers);
        set(headers, INVOCATION_ID, self.invocation_id);
        set(headers, ROUTE, self.route);
        set(headers, PATH_INFO, self.path_info);
        if let Some(addr) = self.client_addr {
            set(headers, CLIENT_ADDR, &addr.to_string());
        }
        for (name, value) in self.identity {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in self.params {
            let header = format!("{PARAM_PREFIX}{}", name.to_ascii_lowercase());
            if let Ok(header) = HeaderName::try_from(header) {
                set(headers, header, value);
            }
        }
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    // Values come from decoded paths. Printable ASCII is passed as is; everything else (and
    // `%` itself) is percent-encoded, so percent-decoding the header gives the exact value.
    let value =
        HeaderValue::from_str(&encode_unprintable(value)).unwrap_or(HeaderValue::from_static(""));
    headers.insert(name, value);
}

fn encode_unprintable(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("updraft-invocation-id", HeaderValue::from_static("forged"));
        h.insert("updraft-param-id", HeaderValue::from_static("forged"));
        h.insert("updraft-key-id", HeaderValue::from_static("forged"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        FunctionHeaders {
            invocation_id: "real",
            route: "/x/:id",
            path_info: "",
            params: &[("Id".into(), "é 1".into())],
            client_addr: None,
            identity: &identity_headers(None, &[("email".into(), "a@b.c".into())]),
        }
        .apply(&mut h);
        assert_eq!(h["updraft-claim-email"], "a@b.c");
        assert_eq!(h["updraft-invocation-id"], "real");
        assert_eq!(h["updraft-param-id"], "%C3%A9 1");
        assert!(!h.contains_key("updraft-key-id"));
        assert_eq!(h["accept"], "*/*");
    }
}
