//! CloudEvents 1.0 over HTTP: structured (`application/cloudevents+json`), batch
//! (`application/cloudevents-batch+json`) and binary (`ce-*` headers) modes.

use base64::Engine as _;
use http::HeaderMap;
use serde_json::{Map, Value};
use updraft_store::Event;

/// Why a request is not a CloudEvent; the message names the attribute and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CloudEventError(pub String);

const REQUIRED: [&str; 4] = ["specversion", "id", "source", "type"];

/// Parses the events in a request, whichever mode it uses.
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Event>, CloudEventError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/cloudevents-batch+json") {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| CloudEventError(format!("the batch is not JSON: {e}")))?;
        let Value::Array(items) = value else {
            return Err(CloudEventError(
                "a batch is a JSON array of structured CloudEvents".into(),
            ));
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                structured(v).map_err(|e| CloudEventError(format!("event #{i} of the batch: {e}")))
            })
            .collect()
    } else if content_type.starts_with("application/cloudevents+json") {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| CloudEventError(format!("the CloudEvent is not JSON: {e}")))?;
        Ok(vec![structured(value)?])
    } else {
        Ok(vec![binary(headers, body, &content_type)?])
    }
}

fn missing(attr: &str, mode: &str) -> CloudEventError {
    CloudEventError(format!(
        "the CloudEvent is missing the required attribute `{attr}`; {mode} needs specversion, id, source and type"
    ))
}

fn structured(value: Value) -> Result<Event, CloudEventError> {
    let Value::Object(mut map) = value else {
        return Err(CloudEventError(
            "a structured CloudEvent is a JSON object".into(),
        ));
    };
    // Attributes are strings; `null` means absent.
    let mut take = |k: &str| -> Option<String> {
        match map.remove(k)? {
            Value::String(s) => Some(s),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let mode = "structured mode (application/cloudevents+json)";
    let mut required = Vec::new();
    for attr in REQUIRED {
        required.push(
            take(attr)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| missing(attr, mode))?,
        );
    }
    if required[0] != "1.0" {
        return Err(CloudEventError(format!(
            "specversion `{}` is not supported; send \"1.0\"",
            required[0]
        )));
    }
    let subject = take("subject");
    let time = take("time");
    let datacontenttype = take("datacontenttype");
    let data = match (map.remove("data_base64"), map.remove("data")) {
        (Some(Value::String(b64)), _) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| CloudEventError(format!("`data_base64` is not base64: {e}")))?,
        (_, Some(Value::String(s))) if !datacontenttype.as_deref().is_some_and(is_json) => {
            s.into_bytes()
        }
        (_, Some(v)) => v.to_string().into_bytes(),
        (_, None) => Vec::new(),
    };
    Ok(Event {
        id: required[1].clone(),
        source: required[2].clone(),
        ty: required[3].clone(),
        subject,
        time,
        datacontenttype,
        data,
        extensions: extensions(map),
    })
}

fn is_json(content_type: &str) -> bool {
    content_type.starts_with("application/json") || content_type.contains("+json")
}

fn extensions(map: Map<String, Value>) -> Vec<(String, String)> {
    map.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect()
}

fn binary(headers: &HeaderMap, body: &[u8], content_type: &str) -> Result<Event, CloudEventError> {
    // Binary-mode attribute values are percent-encoded (HTTP binding §3.1.3.2).
    let header = |name: &str| {
        headers
            .get(format!("ce-{name}"))
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(|v| updraft_gateway::router::percent_decode(v).into_owned())
    };
    let mode = "binary mode (`ce-*` headers)";
    let specversion = header("specversion").ok_or_else(|| missing("specversion", mode))?;
    if specversion != "1.0" {
        return Err(CloudEventError(format!(
            "ce-specversion `{specversion}` is not supported; send \"1.0\""
        )));
    }
    let id = header("id").ok_or_else(|| missing("id", mode))?;
    let source = header("source").ok_or_else(|| missing("source", mode))?;
    let ty = header("type").ok_or_else(|| missing("type", mode))?;
    let known = ["specversion", "id", "source", "type", "subject", "time"];
    let extensions = headers
        .iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().strip_prefix("ce-")?;
            (!known.contains(&name)).then(|| {
                let v = v.to_str().unwrap_or("");
                (
                    name.to_owned(),
                    updraft_gateway::router::percent_decode(v).into_owned(),
                )
            })
        })
        .collect();
    Ok(Event {
        id,
        source,
        ty,
        subject: header("subject"),
        time: header("time"),
        datacontenttype: (!content_type.is_empty()).then(|| content_type.to_owned()),
        data: body.to_vec(),
        extensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn all_three_modes() {
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t.x","subject":"eu/1","data":{"a":1},"region":"eu"}"#;
        let e = parse(
            &headers(&[("content-type", "application/cloudevents+json")]),
            body,
        )
        .unwrap();
        assert_eq!(e[0].data, br#"{"a":1}"#);
        assert_eq!(e[0].extensions, [("region".to_owned(), "eu".to_owned())]);
        let batch = format!(
            "[{},{}]",
            std::str::from_utf8(body).unwrap(),
            std::str::from_utf8(body).unwrap().replace("\"1\"", "\"2\"")
        );
        let e = parse(
            &headers(&[("content-type", "application/cloudevents-batch+json")]),
            batch.as_bytes(),
        )
        .unwrap();
        assert_eq!(e.len(), 2);
        let h = headers(&[
            ("content-type", "text/plain"),
            ("ce-specversion", "1.0"),
            ("ce-id", "9"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-traceid", "abc"),
        ]);
        let e = parse(&h, b"hello").unwrap();
        let h2 = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "9"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-subject", "caf%C3%A9"),
        ]);
        assert_eq!(parse(&h2, b"").unwrap()[0].subject.as_deref(), Some("café"));
        let null_subject =
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":null}"#;
        let ct = headers(&[("content-type", "application/cloudevents+json")]);
        assert_eq!(parse(&ct, null_subject).unwrap()[0].subject, None);
        assert_eq!(
            (e[0].data.as_slice(), e[0].datacontenttype.as_deref()),
            (&b"hello"[..], Some("text/plain"))
        );
        assert_eq!(e[0].extensions, [("traceid".to_owned(), "abc".to_owned())]);
    }

    #[test]
    fn missing_attributes_are_named() {
        let e = parse(
            &headers(&[("content-type", "application/cloudevents+json")]),
            br#"{"specversion":"1.0","id":"1","source":"/s"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("required attribute `type`"), "{e}");
        let e = parse(
            &headers(&[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")]),
            b"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`source`") && e.contains("binary mode"), "{e}");
    }
}
