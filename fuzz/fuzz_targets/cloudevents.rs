//! CloudEvents over HTTP: `updraft_cloudevents::parse` never panics on a header map and body
//! built from the input, in structured, batch or binary mode. Every event it accepts encodes
//! back (structured, and binary where its content type allows) to the same event.
//!
//! Input: a mode byte (`s` structured, `b` batch, anything else binary), a newline, header
//! lines `name: value` up to an empty line, then the body. See `corpus/cloudevents/seed-*`.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use updraft_cloudevents::{Event, parse};

fn sorted(mut e: Event) -> Event {
    e.extensions.sort();
    e
}

/// The mode's content type unless a header line sets one, the header lines, and the body.
fn request(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let (mode, mut rest) = data.split_first().unwrap_or((&b'x', &[]));
    let default_type = match mode {
        b's' => Some("application/cloudevents+json"),
        b'b' => Some("application/cloudevents-batch+json; charset=utf-8"),
        _ => None,
    };
    rest = rest.strip_prefix(b"\n").unwrap_or(rest);
    let mut lines = 0;
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.is_empty() || lines == 64 {
            break;
        }
        lines += 1;
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    if let Some(ct) = default_type
        && !headers.contains_key(http::header::CONTENT_TYPE)
    {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    (headers, rest)
}

fuzz_target!(|data: &[u8]| {
    let (headers, body) = request(data);
    let Ok(events) = parse(&headers, body) else {
        return;
    };
    let mut structured = HeaderMap::new();
    structured.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/cloudevents+json"),
    );
    for event in events {
        let json = event.to_structured().to_string();
        let again = parse(&structured, json.as_bytes())
            .unwrap_or_else(|e| panic!("{event:?} encodes to {json}, which is refused: {e}"));
        assert_eq!(again.len(), 1);
        assert_eq!(sorted(again[0].clone()), sorted(event.clone()), "{json}");
        if let Ok((h, body)) = event.to_binary() {
            let again = parse(&h, &body)
                .unwrap_or_else(|e| panic!("{event:?} in binary mode ({h:?}) is refused: {e}"));
            let mut expected = event.clone();
            expected.subject = expected.subject.filter(|s| !s.is_empty());
            assert_eq!(sorted(again[0].clone()), sorted(expected), "{h:?}");
        }
    }
});
