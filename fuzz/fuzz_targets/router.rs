//! The route table: patterns parse or are refused with a reason, routes are added or refused
//! as collisions, and looking up any method and path never panics. A path built from an
//! added route's pattern (its literals, a value for each `:param`, segments for a `...`) is
//! found with a method that route takes, and fills every parameter.
//!
//! Input: lines `R <methods> <pattern> [<param value> [<rest segment>...]]` (methods `*` or
//! a comma list) add routes, `L <method> <path>` look a path up. See `corpus/router/seed-*`.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use updraft_gateway::router::{Lookup, Pattern, Route, Router};

/// A path `pattern` matches: literals percent-encoded (lookup decodes each segment), `param`
/// for each parameter, `rest` after a wildcard.
fn path_for(pattern: &str, param: &str, rest: &[&str]) -> String {
    let mut path = String::new();
    for segment in pattern.trim_start_matches('/').split('/') {
        if segment.is_empty() {
            continue;
        }
        if segment == "..." {
            for r in rest {
                path.push('/');
                path.extend(utf8_percent_encode(r, NON_ALPHANUMERIC));
            }
            continue;
        }
        path.push('/');
        let text = if segment.starts_with(':') {
            param
        } else {
            segment
        };
        path.extend(utf8_percent_encode(text, NON_ALPHANUMERIC));
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

fn found_is_sound(path: &str, lookup: &Lookup<'_, usize>) {
    if let Lookup::Found(m) = lookup {
        assert!(m.params.iter().all(|(_, v)| !v.is_empty()), "{path}: {m:?}");
        assert!(
            m.path_info.is_empty() || m.path_info.starts_with('/'),
            "{path}: {m:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut router = Router::default();
    let mut added = Vec::new();
    for (index, line) in text.lines().take(64).enumerate() {
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("R"), Some(methods), Some(pattern)) => {
                let Ok(parsed) = Pattern::parse(pattern) else {
                    continue;
                };
                assert_eq!(parsed.as_str(), pattern);
                let methods: Option<Vec<Method>> = (methods != "*").then(|| {
                    methods
                        .split(',')
                        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                        .collect()
                });
                if methods.as_ref().is_some_and(Vec::is_empty) {
                    continue;
                }
                let param = words.next().filter(|p| !p.is_empty()).unwrap_or("p");
                let rest: Vec<&str> = words.collect();
                let route = Route {
                    pattern: parsed,
                    methods: methods.clone(),
                    target: index,
                    index,
                };
                if router.add(route).is_ok() {
                    added.push((pattern, methods, param, rest));
                }
            }
            (Some("L"), Some(method), Some(path)) => {
                if let Ok(method) = Method::from_bytes(method.as_bytes()) {
                    found_is_sound(path, &router.lookup(&method, path));
                }
            }
            _ => {}
        }
    }
    for (pattern, methods, param, rest) in &added {
        let method = methods
            .as_ref()
            .and_then(|m| m.first().cloned())
            .unwrap_or(Method::GET);
        let path = path_for(pattern, param, rest);
        let lookup = router.lookup(&method, &path);
        assert!(
            matches!(lookup, Lookup::Found(_)),
            "`{path}` built from `{pattern}` ({method}): {lookup:?}"
        );
        found_is_sound(&path, &lookup);
    }
});
