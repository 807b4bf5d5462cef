//! The route table: patterns, precedence and collisions (DESIGN §9).
//!
//! A pattern is `/`-separated segments: literals, `:name` parameters, and an optional
//! trailing `...` wildcard that matches the rest of the path (including nothing).
//! When several routes match a path, the one with the more specific segment wins at the
//! first position where they differ: literal > `:param` > `...`.
//! Before the path, the host decides: a route for an exact host beats one for a `*.` wildcard
//! host, which beats a route for any host; after the path, a route with header matches beats
//! one without. Two routes collide when their hosts, header matches, patterns (up to
//! parameter names) and methods all overlap.

use std::borrow::Cow;
use std::cmp::Ordering;

use http::{HeaderMap, HeaderName, Method, Request, header};

/// Paths under this prefix belong to updraft itself.
pub const RESERVED_PREFIX: &str = "/_updraft";

/// Why a route cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The pattern does not parse.
    #[error("`{route}` is not a valid route: {reason}")]
    BadPattern {
        /// The pattern as written.
        route: String,
        /// What is wrong and how to write it.
        reason: String,
    },
    /// The host pattern does not parse.
    #[error(
        "`{host}` is not a valid host: {reason}; write a name like \"api.example.com\" or \"*.example.com\""
    )]
    BadHost {
        /// The host as written.
        host: String,
        /// What is wrong.
        reason: String,
    },
    /// The pattern is under `/_updraft`.
    #[error(
        "`{route}` is under `/_updraft`, which updraft reserves for its health, metrics and admin endpoints; choose another path"
    )]
    Reserved {
        /// The pattern as written.
        route: String,
    },
    /// Two routes would answer the same requests.
    #[error(
        "`{route}` collides with route #{other_index} `{other}`: both match the same paths for {methods}; change one pattern or split the methods"
    )]
    Collision {
        /// The pattern that was added second.
        route: String,
        /// The route it collides with.
        other: String,
        /// That route's index in the table.
        other_index: usize,
        /// The overlapping methods.
        methods: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Wildcard,
}

impl Segment {
    /// Lower is more specific.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param(_) => 1,
            Segment::Wildcard => 2,
        }
    }

    fn same_shape(&self, other: &Segment) -> bool {
        match (self, other) {
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Param(_), Segment::Param(_)) | (Segment::Wildcard, Segment::Wildcard) => true,
            _ => false,
        }
    }
}

/// A parsed route pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

impl Pattern {
    /// Parses `route`, refusing malformed patterns and reserved paths.
    pub fn parse(route: &str) -> Result<Self, RouteError> {
        let bad = |reason: &str| RouteError::BadPattern {
            route: route.to_owned(),
            reason: reason.to_owned(),
        };
        let Some(rest) = route.strip_prefix('/') else {
            return Err(bad("it must start with `/`, like \"/orders/:id\""));
        };
        if route == RESERVED_PREFIX || route.starts_with(&format!("{RESERVED_PREFIX}/")) {
            return Err(RouteError::Reserved {
                route: route.to_owned(),
            });
        }
        let mut segments = Vec::new();
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                let seg = if *part == "..." {
                    if !last {
                        return Err(bad("`...` may only be the last segment"));
                    }
                    Segment::Wildcard
                } else if let Some(name) = part.strip_prefix(':') {
                    if !is_param_name(name) {
                        return Err(bad(&format!(
                            "`:{name}` is not a parameter name; use letters, digits and `_`"
                        )));
                    }
                    if segments
                        .iter()
                        .any(|s| matches!(s, Segment::Param(n) if n.eq_ignore_ascii_case(name)))
                    {
                        return Err(bad(&format!("parameter `:{name}` appears twice")));
                    }
                    Segment::Param(name.to_owned())
                } else if part.is_empty() {
                    if last {
                        // A trailing slash is the same route as without it.
                        continue;
                    }
                    return Err(bad("it has an empty segment (`//`)"));
                } else if part.contains(['*', '{', '}', '?', '#', ':']) {
                    return Err(bad(&format!(
                        "segment `{part}` has a special character; use `:name` for a parameter and a trailing `/...` for the rest of the path"
                    )));
                } else {
                    Segment::Literal((*part).to_owned())
                };
                segments.push(seg);
            }
        }
        Ok(Self {
            text: route.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The pattern's part before any parameter or wildcard, for display (`/orders/`).
    pub fn literal_prefix(&self) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                _ => break,
            }
        }
        out
    }

    fn same_shape(&self, other: &Pattern) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| a.same_shape(b))
    }

    /// Matches a path split into segments; returns the params and the index of the segment
    /// the wildcard starts at.
    fn matches(&self, path: &[Cow<'_, str>]) -> Option<PatternMatch> {
        let mut params = Vec::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Wildcard => return Some((params, Some(i))),
                Segment::Literal(l) => {
                    if path.get(i).map(|p| p.as_ref()) != Some(l.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let value = path.get(i).filter(|v| !v.is_empty())?;
                    params.push((name.clone(), value.to_string()));
                }
            }
        }
        (path.len() == self.segments.len()).then_some((params, None))
    }

    /// Orders patterns from most to least specific.
    fn specificity_cmp(&self, other: &Pattern) -> Ordering {
        for (a, b) in self.segments.iter().zip(&other.segments) {
            match a.rank().cmp(&b.rank()) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        // Patterns of different lengths only overlap through a trailing `...`, which also
        // matches nothing: the shorter (exact) pattern is the more specific.
        self.segments.len().cmp(&other.segments.len())
    }
}

/// The params a pattern captured, and where its wildcard starts.
type PatternMatch = (Vec<(String, String)>, Option<usize>);

fn is_param_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The host a route answers for: one name, or every subdomain of one (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name (lowercase).
    Exact(String),
    /// Any name ending in this suffix, which starts with `.` (`.example.com`).
    Wildcard(String),
}

impl HostPattern {
    /// Parses `api.example.com` or `*.example.com`.
    pub fn parse(host: &str) -> Result<Self, RouteError> {
        let bad = |reason: &str| RouteError::BadHost {
            host: host.to_owned(),
            reason: reason.to_owned(),
        };
        let lower = host.to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.contains('*') {
            return Err(bad("`*` may only be the whole first label"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            || name.starts_with('.')
            || name.ends_with('.')
            || name.contains("..")
        {
            return Err(bad(
                "a host is letters, digits, `-` and dots, without a port or scheme",
            ));
        }
        Ok(if wildcard {
            Self::Wildcard(format!(".{name}"))
        } else {
            Self::Exact(name.to_owned())
        })
    }

    /// Whether `host` (lowercase, without a port) is this one.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }

    /// As written in the manifest.
    pub fn as_text(&self) -> String {
        match self {
            Self::Exact(name) => name.clone(),
            Self::Wildcard(suffix) => format!("*{suffix}"),
        }
    }
}

/// Orders hosts: exact, then wildcards with the longest suffix first, then none.
fn host_cmp(a: Option<&HostPattern>, b: Option<&HostPattern>) -> Ordering {
    let rank = |h: Option<&HostPattern>| match h {
        Some(HostPattern::Exact(_)) => (0, 0),
        Some(HostPattern::Wildcard(s)) => (1, usize::MAX - s.len()),
        None => (2, 0),
    };
    rank(a).cmp(&rank(b))
}

/// One route in the table.
#[derive(Debug, Clone)]
pub struct Route<T> {
    /// The pattern.
    pub pattern: Pattern,
    /// Methods it answers; `None` means all.
    pub methods: Option<Vec<Method>>,
    /// The host it answers for; `None` means any.
    pub host: Option<HostPattern>,
    /// Headers the request must carry with exactly these values, sorted by name.
    pub headers: Vec<(HeaderName, String)>,
    /// What serves it.
    pub target: T,
    /// Its position in the manifest, for messages.
    pub index: usize,
}

impl<T> Route<T> {
    /// A route for any host and any headers.
    pub fn new(pattern: Pattern, methods: Option<Vec<Method>>, target: T, index: usize) -> Self {
        Self {
            pattern,
            methods,
            host: None,
            headers: Vec::new(),
            target,
            index,
        }
    }

    /// Answers only for `host`.
    pub fn with_host(mut self, host: Option<HostPattern>) -> Self {
        self.host = host;
        self
    }

    /// Answers only requests carrying each of `headers` with its value.
    pub fn with_headers(mut self, mut headers: Vec<(HeaderName, String)>) -> Self {
        headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        self.headers = headers;
        self
    }

    /// Whether the request's host and headers are this route's.
    fn admits(&self, req: &RequestView<'_>) -> bool {
        let host_ok = match &self.host {
            None => true,
            Some(pattern) => req.host.is_some_and(|h| pattern.matches(h)),
        };
        host_ok
            && self.headers.iter().all(|(name, want)| {
                req.headers
                    .get_all(name)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| v.trim() == want))
            })
    }

    /// The table's order: host, then path, then routes with header matches first.
    fn precedence_cmp(&self, other: &Route<T>) -> Ordering {
        host_cmp(self.host.as_ref(), other.host.as_ref())
            .then_with(|| self.pattern.specificity_cmp(&other.pattern))
            .then_with(|| other.headers.len().cmp(&self.headers.len()))
    }

    /// Whether no request can tell the two apart before methods do.
    fn same_place(&self, other: &Route<T>) -> bool {
        self.host == other.host
            && self.headers == other.headers
            && self.pattern.same_shape(&other.pattern)
    }

    /// Where the route answers, for messages: the pattern, with its host and headers.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(host) = &self.host {
            out.push_str(&host.as_text());
        }
        out.push_str(self.pattern.as_str());
        for (name, value) in &self.headers {
            out.push_str(&format!(" [{name}: {value}]"));
        }
        out
    }
    fn allows(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(list) => {
                list.contains(method) || (*method == Method::HEAD && list.contains(&Method::GET))
            }
        }
    }

    fn overlap(&self, other: &Route<T>) -> Option<String> {
        match (&self.methods, &other.methods) {
            (None, None) => Some("all methods".to_owned()),
            (None, Some(m)) | (Some(m), None) => Some(join_methods(m)),
            (Some(a), Some(b)) => {
                let both: Vec<Method> = a.iter().filter(|m| b.contains(m)).cloned().collect();
                (!both.is_empty()).then(|| join_methods(&both))
            }
        }
    }
}

fn join_methods(m: &[Method]) -> String {
    m.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
}

/// The result of looking a request up.
#[derive(Debug)]
pub enum Lookup<'a, T> {
    /// A route answers it.
    Found(Match<'a, T>),
    /// Routes match the path but none takes this method.
    MethodNotAllowed {
        /// The methods that would have matched, for the `Allow` header.
        allow: Vec<Method>,
    },
    /// Nothing matches the path.
    NotFound,
}

/// A matched route with what the path filled in.
#[derive(Debug)]
pub struct Match<'a, T> {
    /// The route.
    pub route: &'a Route<T>,
    /// `:name` parameters, in pattern order, percent-decoded.
    pub params: Vec<(String, String)>,
    /// What the trailing `...` matched, starting with `/` (empty when none), decoded.
    pub path_info: String,
    /// The same as it came in: still percent-encoded, with any trailing `/` kept.
    pub raw_path_info: String,
}

/// An ordered route table.
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<Route<T>>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<T> Router<T> {
    /// Adds a route, refusing collisions with routes already added.
    pub fn add(&mut self, route: Route<T>) -> Result<(), RouteError> {
        for other in &self.routes {
            if other.same_place(&route)
                && let Some(methods) = route.overlap(other)
            {
                return Err(RouteError::Collision {
                    route: route.describe(),
                    other: other.describe(),
                    other_index: other.index,
                    methods,
                });
            }
        }
        let at = self
            .routes
            .iter()
            .position(|r| route.precedence_cmp(r).is_lt())
            .unwrap_or(self.routes.len());
        self.routes.insert(at, route);
        Ok(())
    }

    /// The same table with each target replaced by `f(route, target)`.
    pub fn try_map<U, E>(
        self,
        mut f: impl FnMut(&Route<()>, T) -> Result<U, E>,
    ) -> Result<Router<U>, E> {
        let routes = self
            .routes
            .into_iter()
            .map(|r| {
                let place = Route {
                    pattern: r.pattern.clone(),
                    methods: r.methods.clone(),
                    host: r.host.clone(),
                    headers: r.headers.clone(),
                    target: (),
                    index: r.index,
                };
                Ok(Route {
                    target: f(&place, r.target)?,
                    pattern: r.pattern,
                    methods: r.methods,
                    host: r.host,
                    headers: r.headers,
                    index: r.index,
                })
            })
            .collect::<Result<Vec<_>, E>>()?;
        Ok(Router { routes })
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> &[Route<T>] {
        &self.routes
    }

    /// Finds the route for a method and path, whatever the host and headers.
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_, T> {
        self.lookup_request(&RequestView {
            method,
            path,
            host: None,
            headers: &HeaderMap::new(),
        })
    }

    /// Finds the route for a request, from its method, path, host and headers.
    pub fn lookup_request(&self, req: &RequestView<'_>) -> Lookup<'_, T> {
        let (method, path) = (req.method, req.path);
        let raw: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut segments: Vec<Cow<'_, str>> = raw.iter().map(|s| percent_decode(s)).collect();
        if segments.last().is_some_and(|s| s.is_empty()) {
            segments.pop();
        }
        let mut allow: Vec<Method> = Vec::new();
        for route in &self.routes {
            if !route.admits(req) {
                continue;
            }
            let Some((params, wildcard_at)) = route.pattern.matches(&segments) else {
                continue;
            };
            if route.allows(method) {
                let (path_info, raw_path_info) = match wildcard_at {
                    Some(i) if i < raw.len() => (
                        segments.get(i..).map_or_else(String::new, |rest| {
                            if rest.is_empty() {
                                String::new()
                            } else {
                                format!("/{}", rest.join("/"))
                            }
                        }),
                        format!("/{}", raw[i..].join("/")),
                    ),
                    _ => (String::new(), String::new()),
                };
                return Lookup::Found(Match {
                    route,
                    params,
                    path_info,
                    raw_path_info,
                });
            }
            // A route without a method list allows every method, so it matched above.
            for m in route.methods.iter().flatten() {
                if !allow.contains(m) {
                    allow.push(m.clone());
                }
                if *m == Method::GET && !allow.contains(&Method::HEAD) {
                    allow.push(Method::HEAD);
                }
            }
        }
        if allow.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed { allow }
        }
    }
}

/// What the router reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path, still percent-encoded.
    pub path: &'a str,
    /// The host, lowercase and without a port.
    pub host: Option<&'a str>,
    /// Every header.
    pub headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    /// Views `req`; its host (from the URI, else `Host`) is lowercased into `host_buf`.
    pub fn of<B>(req: &'a Request<B>, host_buf: &'a mut String) -> Self {
        let host = req
            .uri()
            .authority()
            .cloned()
            .or_else(|| {
                let value = req.headers().get(header::HOST)?.to_str().ok()?;
                http::uri::Authority::try_from(value).ok()
            })
            .map(|a| {
                a.host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            });
        let found = host.is_some();
        *host_buf = host.unwrap_or_default();
        let host_buf: &'a String = host_buf;
        Self {
            method: req.method(),
            path: req.uri().path(),
            host: found.then_some(host_buf.as_str()),
            headers: req.headers(),
        }
    }
}

/// Decodes `%XX` escapes; invalid escapes and non-UTF-8 results are kept as written.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_or(Cow::Borrowed(s), Cow::Owned)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, Option<&[&str]>)]) -> Router<usize> {
        let mut r = Router::default();
        for (i, (p, m)) in routes.iter().enumerate() {
            r.add(Route::new(
                Pattern::parse(p).unwrap(),
                m.map(|m| m.iter().map(|s| s.parse().unwrap()).collect()),
                i,
                i,
            ))
            .unwrap();
        }
        r
    }

    type Hit = (usize, Vec<(String, String)>, String);

    fn hit(r: &Router<usize>, method: &str, path: &str) -> Option<Hit> {
        match r.lookup(&method.parse().unwrap(), path) {
            Lookup::Found(m) => Some((m.route.target, m.params, m.path_info)),
            _ => None,
        }
    }

    #[test]
    fn precedence_is_literal_then_param_then_wildcard() {
        let r = router(&[
            ("/...", None),
            ("/orders/:id", None),
            ("/orders/new", None),
            ("/orders/...", None),
        ]);
        assert_eq!(hit(&r, "GET", "/orders/new").unwrap().0, 2);
        let (t, params, _) = hit(&r, "GET", "/orders/42").unwrap();
        assert_eq!((t, params), (1, vec![("id".into(), "42".into())]));
        let (t, _, info) = hit(&r, "GET", "/orders/42/items").unwrap();
        assert_eq!((t, info.as_str()), (3, "/42/items"));
        assert_eq!(hit(&r, "GET", "/orders").unwrap().0, 3);
        let (t, _, info) = hit(&r, "GET", "/index.html").unwrap();
        assert_eq!((t, info.as_str()), (0, "/index.html"));
        assert_eq!(hit(&r, "GET", "/").unwrap().0, 0);
        let r = router(&[
            ("/api/...", None),
            ("/api", None),
            ("/a/:id/...", None),
            ("/a/:id", None),
        ]);
        assert_eq!(
            hit(&r, "GET", "/api").unwrap().0,
            1,
            "exact beats an empty wildcard"
        );
        assert_eq!(hit(&r, "GET", "/api/x").unwrap().0, 0);
        assert_eq!(hit(&r, "GET", "/a/1").unwrap().0, 3);
        assert_eq!(hit(&r, "GET", "/a/1/b").unwrap().0, 2);
    }

    #[test]
    fn methods_pick_routes_and_405_lists_allow() {
        let r = router(&[("/items", Some(&["GET"])), ("/items", Some(&["POST"]))]);
        assert_eq!(hit(&r, "POST", "/items").unwrap().0, 1);
        assert_eq!(hit(&r, "HEAD", "/items").unwrap().0, 0);
        match r.lookup(&Method::DELETE, "/items") {
            Lookup::MethodNotAllowed { allow } => {
                assert_eq!(allow, vec![Method::GET, Method::HEAD, Method::POST])
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.lookup(&Method::GET, "/nope"), Lookup::NotFound));
    }

    #[test]
    fn params_are_percent_decoded_and_trailing_slash_ignored() {
        let r = router(&[("/u/:name", None)]);
        let (_, params, _) = hit(&r, "GET", "/u/j%20doe/").unwrap();
        assert_eq!(params[0].1, "j doe");
        let r = router(&[("/files/...", None)]);
        match r.lookup(&Method::GET, "/files/my%20docs/") {
            Lookup::Found(m) => {
                assert_eq!(m.path_info, "/my docs");
                assert_eq!(m.raw_path_info, "/my%20docs/");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn collisions_are_refused() {
        let mut r = router(&[("/orders/:id", Some(&["GET", "PUT"]))]);
        let err = r
            .add(Route::new(
                Pattern::parse("/orders/:order").unwrap(),
                Some(vec![Method::PUT]),
                9,
                1,
            ))
            .unwrap_err();
        assert!(err.to_string().contains("collides with route #0"), "{err}");
        assert!(err.to_string().contains("PUT"), "{err}");
        r.add(Route::new(
            Pattern::parse("/orders/:order").unwrap(),
            Some(vec![Method::DELETE]),
            9,
            1,
        ))
        .unwrap();
    }

    #[test]
    fn bad_patterns_say_why() {
        for (p, why) in [
            ("orders", "start with `/`"),
            ("/a//b", "empty segment"),
            ("/.../x", "last segment"),
            ("/a/:", "parameter name"),
            ("/a/:id/:id", "appears twice"),
            ("/a/:id/:ID", "appears twice"),
            ("/a/*", "special character"),
        ] {
            let e = Pattern::parse(p).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
        assert!(matches!(
            Pattern::parse("/_updraft/x"),
            Err(RouteError::Reserved { .. })
        ));
        assert!(matches!(
            Pattern::parse("/_updraft"),
            Err(RouteError::Reserved { .. })
        ));
        assert!(Pattern::parse("/_updraftish").is_ok());
    }

    fn placed(
        path: &str,
        host: Option<&str>,
        headers: &[(&str, &str)],
        target: usize,
    ) -> Route<usize> {
        Route::new(Pattern::parse(path).unwrap(), None, target, target)
            .with_host(host.map(|h| HostPattern::parse(h).unwrap()))
            .with_headers(
                headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            HeaderName::from_bytes(n.as_bytes()).unwrap(),
                            (*v).to_owned(),
                        )
                    })
                    .collect(),
            )
    }

    fn hit_request(
        r: &Router<usize>,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<usize> {
        let mut req = Request::get(path).header("host", host);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(()).unwrap();
        let mut buf = String::new();
        match r.lookup_request(&RequestView::of(&req, &mut buf)) {
            Lookup::Found(m) => Some(m.route.target),
            _ => None,
        }
    }

    #[test]
    fn hosts_come_before_paths_and_headers_after() {
        let mut r = Router::default();
        for route in [
            placed("/...", None, &[], 0),
            placed("/products/...", None, &[], 1),
            placed("/products/...", None, &[("api-version", "2")], 2),
            placed("/...", Some("*.example.com"), &[], 3),
            placed("/...", Some("*.eu.example.com"), &[], 4),
            placed("/...", Some("api.example.com"), &[], 5),
            placed("/products/:id", Some("api.example.com"), &[], 6),
        ] {
            r.add(route).unwrap();
        }
        assert_eq!(
            hit_request(&r, "localhost:8080", "/products/1", &[]),
            Some(1)
        );
        assert_eq!(
            hit_request(&r, "localhost", "/products/1", &[("api-version", "2")]),
            Some(2)
        );
        assert_eq!(
            hit_request(&r, "localhost", "/products/1", &[("api-version", "3")]),
            Some(1)
        );
        assert_eq!(
            hit_request(&r, "shop.example.com", "/products/1", &[]),
            Some(3)
        );
        assert_eq!(hit_request(&r, "x.eu.example.com", "/", &[]), Some(4));
        assert_eq!(hit_request(&r, "API.Example.com:443", "/x", &[]), Some(5));
        assert_eq!(
            hit_request(&r, "api.example.com", "/products/9", &[]),
            Some(6)
        );
        assert_eq!(
            hit_request(&r, "example.com", "/x", &[]),
            Some(0),
            "a wildcard host needs a label before its suffix"
        );
    }

    #[test]
    fn routes_on_other_hosts_or_headers_do_not_collide() {
        let mut r = Router::default();
        r.add(placed("/a", Some("a.test"), &[], 0)).unwrap();
        r.add(placed("/a", Some("b.test"), &[], 1)).unwrap();
        r.add(placed("/a", None, &[], 2)).unwrap();
        r.add(placed("/a", None, &[("x-v", "1")], 3)).unwrap();
        let err = r.add(placed("/a", Some("A.test"), &[], 4)).unwrap_err();
        assert!(
            err.to_string()
                .contains("`a.test/a` collides with route #0"),
            "{err}"
        );
        let err = r.add(placed("/a", None, &[("X-V", "1")], 5)).unwrap_err();
        assert!(err.to_string().contains("[x-v: 1]"), "{err}");
    }

    #[test]
    fn bad_hosts_say_why() {
        for h in ["", "*.", "a.*.com", "http://a.com", "a.com:80", "a..b"] {
            let e = HostPattern::parse(h).unwrap_err().to_string();
            assert!(e.contains("not a valid host"), "{h}: {e}");
        }
    }
}
