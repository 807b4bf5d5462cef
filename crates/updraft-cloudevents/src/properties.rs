//! Properties of the codec, on stable, with the inputs of the `cloudevents` fuzz target
//! (`fuzz/`): parsing never panics, and every event that parses encodes back (structured,
//! and binary where its content type allows) to the same event.

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use serde_json::{Map, Value, json};

use crate::{Event, parse};

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

fn with_content_type(ct: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h
}

fn sorted(mut e: Event) -> Event {
    e.extensions.sort();
    e
}

/// The round trips every accepted event must survive.
fn round_trips(event: &Event) -> Result<(), TestCaseError> {
    let json = event.to_structured().to_string();
    let again = parse(
        &with_content_type("application/cloudevents+json"),
        json.as_bytes(),
    )
    .map_err(|e| TestCaseError::fail(format!("{event:?} encodes to {json}, refused: {e}")))?;
    prop_assert_eq!(again.len(), 1);
    prop_assert_eq!(sorted(again[0].clone()), sorted(event.clone()), "{}", json);
    if let Ok((headers, body)) = event.to_binary() {
        let again = parse(&headers, &body).map_err(|e| {
            TestCaseError::fail(format!(
                "{event:?} in binary mode {headers:?}, refused: {e}"
            ))
        })?;
        let mut expected = event.clone();
        expected.subject = expected.subject.filter(|s| !s.is_empty());
        prop_assert_eq!(sorted(again[0].clone()), sorted(expected), "{:?}", headers);
    }
    Ok(())
}

/// Strings an attribute may get: plausible values, the edge cases, and anything.
fn attr() -> impl Strategy<Value = Value> {
    prop_oneof![
        30 => "[a-z0-9./:_-]{1,12}".prop_map(Value::from),
        1 => Just(Value::from("")),
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        1 => Just(json!({"a": 1})),
        1 => ".{0,8}".prop_map(Value::from),
    ]
}

fn optional_attr(plausible: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => Just(None),
        6 => proptest::sample::select(plausible).prop_map(|s| Some(Value::from(s))),
        1 => attr().prop_map(Some),
    ]
}

/// JSON objects shaped like structured events, mostly valid, some not.
fn structured_event() -> impl Strategy<Value = Value> {
    let context = (
        prop_oneof![30 => Just(Value::from("1.0")), 1 => attr()],
        attr(),
        prop_oneof![10 => Just(Value::from("/orders")), 1 => attr()],
        attr(),
    );
    let optional = (
        optional_attr(&["eu/1", "", "caf\u{e9} 100%"]),
        optional_attr(&[
            "2026-12-06T10:00:00Z",
            "2026-12-06T10:00:00.5+01:00",
            "lunchtime",
        ]),
        optional_attr(&[
            "application/json",
            "text/plain; charset=\"utf-8\"",
            "application/octet-stream",
            "Text/Plain",
            "json",
        ]),
        optional_attr(&["https://s.example/v1", "urn:x", "not a uri"]),
    );
    let extensions = proptest::collection::btree_map(
        prop_oneof![20 => "[a-z0-9]{1,6}", 1 => ".{0,6}"],
        prop_oneof![
            10 => ".{0,8}".prop_map(Value::from),
            4 => any::<bool>().prop_map(Value::from),
            4 => any::<i32>().prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
            2 => Just(Value::Null),
            1 => Just(json!(1.5)),
        ],
        0..4,
    );
    let data = prop_oneof![
        4 => Just(None),
        4 => ".{0,12}".prop_map(|s| Some(("data", Value::from(s)))),
        4 => Just(Some(("data", json!({"a": [1, 2.5, "x"], "b": null})))),
        4 => proptest::collection::vec(any::<u8>(), 0..16).prop_map(|b| {
            use base64::Engine as _;
            Some(("data_base64", Value::from(base64::engine::general_purpose::STANDARD.encode(b))))
        }),
        1 => Just(Some(("data_base64", Value::from("%%%")))),
    ];
    (context, optional, extensions, data).prop_map(
        |((spec, id, source, ty), (subject, time, ct, schema), extensions, data)| {
            let mut map: Map<String, Value> = extensions.into_iter().collect();
            for (k, v) in [
                ("specversion", spec),
                ("id", id),
                ("source", source),
                ("type", ty),
            ] {
                map.insert(k.into(), v);
            }
            let optional = [
                ("subject", subject),
                ("time", time),
                ("datacontenttype", ct),
                ("dataschema", schema),
            ];
            for (k, v) in optional {
                if let Some(v) = v {
                    map.insert(k.into(), v);
                }
            }
            if let Some((k, v)) = data {
                map.insert(k.into(), v);
            }
            Value::Object(map)
        },
    )
}

/// Header lists shaped like binary-mode events: `ce-*` headers, mostly valid, and others.
fn binary_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let value = prop_oneof![
        12 => "[a-zA-Z0-9./:_-]{1,10}".prop_map(String::into_bytes),
        1 => "(%[0-9A-Fa-f]{2}|[a-z ]){0,6}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
    ];
    let name = prop_oneof![
        4 => proptest::sample::select(&[
            "ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time",
            "ce-dataschema", "content-type", "ce-traceid", "ce-data",
        ][..]).prop_map(str::to_owned),
        1 => "ce-[a-z0-9_]{1,6}",
        1 => "[a-z-]{1,8}",
    ];
    let required = vec![
        ("ce-specversion".to_owned(), b"1.0".to_vec()),
        ("ce-id".to_owned(), b"1".to_vec()),
        ("ce-source".to_owned(), b"/s".to_vec()),
        ("ce-type".to_owned(), b"t".to_vec()),
    ];
    (
        proptest::collection::vec((name, value), 0..4),
        prop_oneof![
            6 => Just(required.clone()),
            1 => proptest::sample::subsequence(required, 0..=4),
        ],
    )
        .prop_map(|(mut extra, required)| {
            extra.extend(required);
            extra
        })
}

fn header_map(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    headers
}

proptest! {
    #![proptest_config(config())]

    /// Any content type, any headers, any body: an answer, never a panic.
    #[test]
    fn parse_never_panics_on_anything(
        content_type in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        pairs in proptest::collection::vec((".{0,12}", proptest::collection::vec(any::<u8>(), 0..16)), 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut headers = header_map(&pairs);
        if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_bytes(&ct).ok()) {
            headers.insert(http::header::CONTENT_TYPE, ct);
        }
        if let Ok(events) = parse(&headers, &body) {
            for e in &events {
                round_trips(e)?;
            }
        }
    }

    /// Structured and batch mode: what parses round-trips; a batch is all or nothing.
    #[test]
    fn structured_and_batch_events_round_trip(
        events in proptest::collection::vec(structured_event(), 1..4),
    ) {
        let structured = with_content_type("application/cloudevents+json");
        let mut accepted = 0;
        for value in &events {
            if let Ok(parsed) = parse(&structured, value.to_string().as_bytes()) {
                accepted += 1;
                prop_assert_eq!(parsed.len(), 1);
                round_trips(&parsed[0])?;
            }
        }
        let batch = Value::Array(events.clone()).to_string();
        let parsed = parse(&with_content_type("application/cloudevents-batch+json"), batch.as_bytes());
        match parsed {
            Ok(parsed) => prop_assert_eq!(parsed.len(), events.len()),
            Err(e) => {
                prop_assert!(accepted < events.len(), "a batch of good events refused: {}", e);
                prop_assert!(e.to_string().contains("nothing of the batch"), "{}", e);
            }
        }
    }

    /// Binary mode: what parses round-trips.
    #[test]
    fn binary_events_round_trip(
        pairs in binary_headers(),
        body in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        if let Ok(events) = parse(&header_map(&pairs), &body) {
            prop_assert_eq!(events.len(), 1);
            prop_assert_eq!(&events[0].data, &body);
            round_trips(&events[0])?;
        }
    }
}
