//! Properties of the route table, on stable, with the inputs of the `router` fuzz target
//! (`fuzz/`): parsing patterns and looking up any method and path never panic, and a path
//! built from a pattern's literal segments finds that route, with its parameters.

use http::Method;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use crate::router::{Lookup, Pattern, Route, Router};

fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    let env = |name: &str| std::env::var_os(name).is_some();
    ProptestConfig {
        // The same cases every run, so the test command never flakes on one a run happened
        // to draw; `PROPTEST_RNG_SEED` and `PROPTEST_CASES` explore further.
        cases: if env("PROPTEST_CASES") {
            default.cases
        } else {
            256
        },
        rng_seed: if env("PROPTEST_RNG_SEED") {
            default.rng_seed
        } else {
            RngSeed::Fixed(0x5eed_0009)
        },
        failure_persistence: None,
        ..default
    }
}

/// One segment of a generated pattern.
#[derive(Debug, Clone)]
enum Seg {
    /// A literal (written decoded: lookups compare decoded path segments).
    Literal(String),
    /// `:name`, and the value the built path gives it.
    Param(String, String),
}

fn segment() -> impl Strategy<Value = Seg> {
    let literal = prop_oneof![
        4 => "[a-z0-9._-]{1,8}",
        1 => "[a-zA-Z0-9._~!$&'()+,;=@%\u{e9} -]{1,8}",
    ]
    .prop_filter("not a wildcard", |l| l != "...");
    prop_oneof![
        3 => literal.prop_map(Seg::Literal),
        1 => ("[a-z_][a-z0-9_]{0,5}", ".{1,8}").prop_map(|(n, v)| Seg::Param(n, v)),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    proptest::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ])
}

/// A pattern, the path built from it, its parameters, and what its `...` matched.
#[derive(Debug, Clone)]
struct Case {
    pattern: String,
    path: String,
    params: Vec<(String, String)>,
    path_info: String,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(segment(), 0..5),
        proptest::option::of(proptest::collection::vec(".{1,6}", 0..3)),
        any::<bool>(),
    )
        .prop_map(|(segments, wildcard, trailing_slash)| {
            let (mut pattern, mut path) = (String::new(), String::new());
            let mut params: Vec<(String, String)> = Vec::new();
            for seg in segments {
                match seg {
                    Seg::Literal(l) => {
                        pattern.push('/');
                        pattern.push_str(&l);
                        path.push('/');
                        path.extend(utf8_percent_encode(&l, NON_ALPHANUMERIC));
                    }
                    Seg::Param(name, value) => {
                        // Parameter names are unique regardless of case.
                        let name = format!("{name}{}", params.len());
                        pattern.push_str("/:");
                        pattern.push_str(&name);
                        path.push('/');
                        path.extend(utf8_percent_encode(&value, NON_ALPHANUMERIC));
                        params.push((name, value));
                    }
                }
            }
            let mut path_info = String::new();
            if let Some(rest) = &wildcard {
                pattern.push_str("/...");
                for r in rest {
                    path.push('/');
                    path.extend(utf8_percent_encode(r, NON_ALPHANUMERIC));
                    path_info.push('/');
                    path_info.push_str(r);
                }
            }
            if pattern.is_empty() {
                pattern.push('/');
            }
            if path.is_empty() || trailing_slash {
                path.push('/');
            }
            Case {
                pattern,
                path,
                params,
                path_info,
            }
        })
        .prop_filter("not reserved", |c| {
            c.pattern != "/_updraft" && !c.pattern.starts_with("/_updraft/")
        })
}

fn route<T>(pattern: &str, methods: Option<Vec<Method>>, target: T, index: usize) -> Route<T> {
    Route::new(
        Pattern::parse(pattern).unwrap_or_else(|e| panic!("{e}")),
        methods,
        target,
        index,
    )
}

/// A table with every kind of pattern, for lookups of arbitrary paths.
fn sample_router() -> Router<usize> {
    let mut r = Router::default();
    let routes: [(&str, Option<Vec<Method>>); 7] = [
        ("/", None),
        ("/orders/:id", Some(vec![Method::GET, Method::PUT])),
        ("/orders/new", None),
        ("/orders/...", None),
        ("/a/:x/b/:y/...", Some(vec![Method::DELETE])),
        ("/caf\u{e9}/:n", None),
        ("/files/...", Some(vec![Method::GET])),
    ];
    for (i, (p, m)) in routes.into_iter().enumerate() {
        r.add(route(p, m, i, i)).unwrap_or_else(|e| panic!("{e}"));
    }
    r
}

proptest! {
    #![proptest_config(config())]

    /// Any text is a pattern or a reason why not.
    #[test]
    fn patterns_parse_or_say_why(text in prop_oneof![".{0,24}", "(/(:?[a-z]{0,3}|\\.\\.\\.|[*{}?#%:]))*"]) {
        match Pattern::parse(&text) {
            Ok(p) => prop_assert_eq!(p.as_str(), text.as_str()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// Any method and path: an answer, never a panic; what a match fills in is sound.
    #[test]
    fn lookup_never_panics(
        method in prop_oneof![method().prop_map(|m| m.to_string()), "[A-Z]{1,8}"],
        path in prop_oneof![".{0,32}", "(/([a-z]{0,3}|%[0-9a-fA-F]{0,2}|%|\\.\\.)){0,6}/?"],
    ) {
        let router = sample_router();
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return Ok(());
        };
        if let Lookup::Found(m) = router.lookup(&method, &path) {
            prop_assert!(m.params.iter().all(|(_, v)| !v.is_empty()), "{:?}", m);
            prop_assert!(m.path_info.is_empty() || m.path_info.starts_with('/'), "{:?}", m);
        }
    }

    /// Alone in a table, a route is found by a path built from its pattern, with the
    /// parameters and rest the path carries, and only with a method it takes.
    #[test]
    fn a_path_built_from_a_pattern_finds_that_route(
        case in case(),
        methods in proptest::option::of(proptest::collection::vec(method(), 1..3)),
        other in method(),
    ) {
        let mut router = Router::default();
        router.add(route(&case.pattern, methods.clone(), 7usize, 0)).unwrap_or_else(|e| panic!("{e}"));
        let method = methods.as_ref().map_or(Method::GET, |m| m[0].clone());
        match router.lookup(&method, &case.path) {
            Lookup::Found(m) => {
                prop_assert_eq!(m.route.target, 7);
                prop_assert_eq!(&m.params, &case.params);
                prop_assert_eq!(&m.path_info, &case.path_info);
            }
            other => prop_assert!(false, "{:?} not found for {}: {:?}", case, method, other),
        }
        let takes_other = methods.as_ref().is_none_or(|m| m.contains(&other));
        let found_other = matches!(router.lookup(&other, &case.path), Lookup::Found(_));
        prop_assert_eq!(found_other, takes_other);
    }

    /// Among other routes the path still finds a route (the most specific one that matches).
    #[test]
    fn a_path_built_from_a_pattern_finds_a_route_in_any_table(
        cases in proptest::collection::vec(case(), 1..6),
    ) {
        let mut router = Router::default();
        let mut added = Vec::new();
        for (i, c) in cases.iter().enumerate() {
            if router.add(route(&c.pattern, None, i, i)).is_ok() {
                added.push(c);
            }
        }
        for c in added {
            let found = router.lookup(&Method::GET, &c.path);
            prop_assert!(matches!(found, Lookup::Found(_)), "{:?}: {:?}", c, found);
        }
    }
}
