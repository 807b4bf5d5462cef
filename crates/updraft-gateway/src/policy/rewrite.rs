//! `rewrite = { strip_prefix = "/v2", add_prefix = "/api" }`: the path a target sees.

use http::Request;
use http::uri::{PathAndQuery, Uri};
use updraft_manifest::gateway::Rewrite;

/// Rewrites `req`'s path: strips the prefix when the path starts with it (at a segment
/// boundary), then adds the other. The query is kept.
pub fn apply<B>(rewrite: &Rewrite, req: &mut Request<B>) {
    let path = req.uri().path();
    let mut new = path.to_owned();
    if let Some(prefix) = &rewrite.strip_prefix
        && let Some(rest) = path.strip_prefix(prefix.as_str())
        && (rest.is_empty() || rest.starts_with('/'))
    {
        new = if rest.is_empty() {
            "/".to_owned()
        } else {
            rest.to_owned()
        };
    }
    if let Some(prefix) = &rewrite.add_prefix {
        new = if new == "/" {
            prefix.clone()
        } else {
            format!("{prefix}{new}")
        };
    }
    if new == path {
        return;
    }
    let with_query = match req.uri().query() {
        Some(q) => format!("{new}?{q}"),
        None => new,
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = PathAndQuery::try_from(with_query) {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(strip: Option<&str>, add: Option<&str>, uri: &str) -> String {
        let rw = Rewrite {
            strip_prefix: strip.map(str::to_owned),
            add_prefix: add.map(str::to_owned),
        };
        let mut req = Request::get(uri).body(()).unwrap();
        apply(&rw, &mut req);
        req.uri().to_string()
    }

    #[test]
    fn strips_at_segment_boundaries_and_keeps_the_query() {
        assert_eq!(
            rewritten(Some("/v2"), None, "/v2/products?x=1"),
            "/products?x=1"
        );
        assert_eq!(rewritten(Some("/v2"), None, "/v2"), "/");
        assert_eq!(rewritten(Some("/v2"), None, "/v20/x"), "/v20/x");
        assert_eq!(
            rewritten(Some("/v1"), Some("/legacy"), "/v1/a"),
            "/legacy/a"
        );
        assert_eq!(rewritten(None, Some("/api"), "/"), "/api");
    }
}
