//! The route table: patterns, precedence and collisions (DESIGN §9).
//!
//! A pattern is `/`-separated segments: literals, `:name` parameters, and an optional
//! trailing `...` wildcard that matches the rest of the path (including nothing).
//! When several routes match a path, the one with the more specific segment wins at the
//! first position where they differ: literal > `:param` > `...`. Two routes collide when
//! their methods overlap and their patterns are equal up to parameter names.

use std::borrow::Cow;

use http::Method;

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
    fn specificity_cmp(&self, other: &Pattern) -> std::cmp::Ordering {
        for (a, b) in self.segments.iter().zip(&other.segments) {
            match a.rank().cmp(&b.rank()) {
                std::cmp::Ordering::Equal => continue,
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

/// One route in the table.
#[derive(Debug, Clone)]
pub struct Route<T> {
    /// The pattern.
    pub pattern: Pattern,
    /// Methods it answers; `None` means all.
    pub methods: Option<Vec<Method>>,
    /// What serves it.
    pub target: T,
    /// Its position in the manifest, for messages.
    pub index: usize,
}

impl<T> Route<T> {
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
            if other.pattern.same_shape(&route.pattern)
                && let Some(methods) = route.overlap(other)
            {
                return Err(RouteError::Collision {
                    route: route.pattern.text.clone(),
                    other: other.pattern.text.clone(),
                    other_index: other.index,
                    methods,
                });
            }
        }
        let at = self
            .routes
            .iter()
            .position(|r| route.pattern.specificity_cmp(&r.pattern).is_lt())
            .unwrap_or(self.routes.len());
        self.routes.insert(at, route);
        Ok(())
    }

    /// The same table with each target replaced by `f(target)`.
    pub fn try_map<U, E>(
        self,
        mut f: impl FnMut(&Pattern, T) -> Result<U, E>,
    ) -> Result<Router<U>, E> {
        let routes = self
            .routes
            .into_iter()
            .map(|r| {
                Ok(Route {
                    target: f(&r.pattern, r.target)?,
                    pattern: r.pattern,
                    methods: r.methods,
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

    /// Finds the route for a request.
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_, T> {
        let raw: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut segments: Vec<Cow<'_, str>> = raw.iter().map(|s| percent_decode(s)).collect();
        if segments.last().is_some_and(|s| s.is_empty()) {
            segments.pop();
        }
        let mut allow: Vec<Method> = Vec::new();
        for route in &self.routes {
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
            r.add(Route {
                pattern: Pattern::parse(p).unwrap(),
                methods: m.map(|m| m.iter().map(|s| s.parse().unwrap()).collect()),
                target: i,
                index: i,
            })
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
            .add(Route {
                pattern: Pattern::parse("/orders/:order").unwrap(),
                methods: Some(vec![Method::PUT]),
                target: 9,
                index: 1,
            })
            .unwrap_err();
        assert!(err.to_string().contains("collides with route #0"), "{err}");
        assert!(err.to_string().contains("PUT"), "{err}");
        r.add(Route {
            pattern: Pattern::parse("/orders/:order").unwrap(),
            methods: Some(vec![Method::DELETE]),
            target: 9,
            index: 1,
        })
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
}
