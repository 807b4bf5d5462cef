//! CloudEvents 1.0: the event every updraft trigger delivers ([`Event`]), and its HTTP
//! codec ([`parse`]) for structured (`application/cloudevents+json`), batch
//! (`application/cloudevents-batch+json`) and binary (`ce-*` headers) modes.
//!
//! Events from outside are checked against CloudEvents 1.0.2 and its JSON format before
//! anything is stored: required attributes are non-empty strings, `time` is RFC 3339,
//! `datacontenttype` is an RFC 2046 media type, `source` and `dataschema` are
//! URI-references, extension names are lowercase letters and digits, extension values have
//! CloudEvents types (string, boolean, 32-bit integer), an event carries `data` or
//! `data_base64`, not both, and a batch with one bad event is refused whole. Every error
//! names the attribute and the rule.
//!
//! This crate has no runtime or store dependency, so its parser can be fuzzed on its own.

use base64::Engine as _;
use http::HeaderMap;
use serde_json::{Map, Value};

/// A CloudEvents 1.0 shaped event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// Unique per source.
    pub id: String,
    /// Where it comes from.
    pub source: String,
    /// What happened.
    pub ty: String,
    /// What it is about.
    pub subject: Option<String>,
    /// When, RFC 3339.
    pub time: Option<String>,
    /// The media type of `data`.
    pub datacontenttype: Option<String>,
    /// The payload.
    pub data: Vec<u8>,
    /// Other attributes.
    pub extensions: Vec<(String, String)>,
}

/// Why a request is not a CloudEvent; the message names the attribute and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CloudEventError(pub String);

fn err(message: impl Into<String>) -> CloudEventError {
    CloudEventError(message.into())
}

const REQUIRED: [&str; 4] = ["specversion", "id", "source", "type"];
/// Attributes of the spec that are not extensions.
const CONTEXT: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
];

/// Parses the events in a request, whichever mode it uses.
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Event>, CloudEventError> {
    let sent_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The mode is chosen case-insensitively; binary mode keeps the type as sent (parameter
    // values such as a multipart boundary are case-sensitive).
    let content_type = sent_type.to_ascii_lowercase();
    if content_type.starts_with("application/cloudevents-batch+json") {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| err(format!("the batch is not JSON: {e}")))?;
        let Value::Array(items) = value else {
            return Err(err("a batch is a JSON array of structured CloudEvents"));
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                structured(v).map_err(|e| {
                    err(format!(
                        "event #{i} of the batch: {e}; nothing of the batch was accepted"
                    ))
                })
            })
            .collect()
    } else if content_type.starts_with("application/cloudevents+json") {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| err(format!("the CloudEvent is not JSON: {e}")))?;
        Ok(vec![structured(value)?])
    } else {
        Ok(vec![binary(headers, body, sent_type)?])
    }
}

fn missing(attr: &str, mode: &str) -> CloudEventError {
    err(format!(
        "the CloudEvent is missing the required attribute `{attr}`; {mode} needs specversion, id, source and type"
    ))
}

/// The JSON type's name, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A context attribute: a string, or absent (`null` counts as absent).
fn string_attr(
    map: &mut Map<String, Value>,
    attr: &str,
) -> Result<Option<String>, CloudEventError> {
    match map.remove(attr) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(err(format!(
            "attribute `{attr}` must be a string, not {}",
            kind(&other)
        ))),
    }
}

fn structured(value: Value) -> Result<Event, CloudEventError> {
    let Value::Object(mut map) = value else {
        return Err(err("a structured CloudEvent is a JSON object"));
    };
    let mode = "structured mode (application/cloudevents+json)";
    let mut required = Vec::new();
    for attr in REQUIRED {
        required.push(
            string_attr(&mut map, attr)?
                .filter(|v| !v.is_empty())
                .ok_or_else(|| missing(attr, mode))?,
        );
    }
    let [specversion, id, source, ty] = <[String; 4]>::try_from(required)
        .map_err(|_| err("the required attributes could not be read"))?;
    check_specversion(&specversion, "specversion")?;
    let subject = string_attr(&mut map, "subject")?;
    let time = string_attr(&mut map, "time")?;
    let datacontenttype = string_attr(&mut map, "datacontenttype")?;
    let dataschema = string_attr(&mut map, "dataschema")?;
    check_context(
        &source,
        time.as_deref(),
        datacontenttype.as_deref(),
        dataschema.as_deref(),
        "",
    )?;
    let data_base64 = map.remove("data_base64").filter(|v| !v.is_null());
    let data =
        match (data_base64, map.remove("data").filter(|v| !v.is_null())) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "the CloudEvent has both `data` and `data_base64`; send one of them",
                ));
            }
            (Some(Value::String(b64)), None) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| err(format!("`data_base64` is not base64: {e}")))?,
            (Some(other), None) => {
                return Err(err(format!(
                    "`data_base64` must be a base64 string, not {}",
                    kind(&other)
                )));
            }
            (None, Some(Value::String(s))) if !datacontenttype.as_deref().is_some_and(is_json) => {
                s.into_bytes()
            }
            (None, Some(v)) => v.to_string().into_bytes(),
            (None, None) => Vec::new(),
        };
    let mut extensions = Vec::new();
    for (name, value) in map {
        check_extension_name(&name, "")?;
        let value = match value {
            Value::Null => continue,
            Value::String(s) => s,
            Value::Bool(b) => b.to_string(),
            Value::Number(n) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => {
                n.to_string()
            }
            other => {
                return Err(err(format!(
                    "extension `{name}` is {}; extension values are strings, booleans or 32-bit integers",
                    match &other {
                        Value::Number(_) => "a number that is not a 32-bit integer",
                        o => kind(o),
                    }
                )));
            }
        };
        extensions.push((name, value));
    }
    if let Some(schema) = dataschema {
        extensions.push(("dataschema".to_owned(), schema));
    }
    Ok(Event {
        id,
        source,
        ty,
        subject,
        time,
        datacontenttype,
        data,
        extensions,
    })
}

fn check_specversion(value: &str, attr: &str) -> Result<(), CloudEventError> {
    if value != "1.0" {
        return Err(err(format!(
            "{attr} `{value}` is not supported; send \"1.0\" (every event of a batch too)"
        )));
    }
    Ok(())
}

/// The rules for the optional context attributes and `source`; `prefix` is `ce-` in binary
/// mode, so messages name the header.
fn check_context(
    source: &str,
    time: Option<&str>,
    datacontenttype: Option<&str>,
    dataschema: Option<&str>,
    prefix: &str,
) -> Result<(), CloudEventError> {
    if !is_uri_reference(source) {
        return Err(err(format!(
            "`{prefix}source` `{source}` is not a URI-reference (RFC 3986); send something like \"/orders\" or \"https://shop.example/orders\""
        )));
    }
    if let Some(t) = time
        && chrono::DateTime::parse_from_rfc3339(t).is_err()
    {
        return Err(err(format!(
            "`{prefix}time` `{t}` is not an RFC 3339 timestamp; send one like \"2026-12-06T10:00:00Z\""
        )));
    }
    if let Some(ct) = datacontenttype
        && !is_media_type(ct)
    {
        return Err(err(format!(
            "`{prefix}datacontenttype` `{ct}` is not a media type (RFC 2046); send one like \"application/json\""
        )));
    }
    if let Some(schema) = dataschema
        && (schema.is_empty() || !is_uri_reference(schema))
    {
        return Err(err(format!(
            "`{prefix}dataschema` `{schema}` is not a URI (RFC 3986)"
        )));
    }
    Ok(())
}

fn check_extension_name(name: &str, prefix: &str) -> Result<(), CloudEventError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !valid || name == "data" || name == "data_base64" {
        return Err(err(format!(
            "`{prefix}{name}` is not a valid extension attribute name; CloudEvents attribute names are lowercase letters and digits only"
        )));
    }
    Ok(())
}

/// RFC 3986 URI-reference: only its characters, with well-formed percent escapes.
fn is_uri_reference(s: &str) -> bool {
    const ALLOWED: &[u8] = b"-._~:/?#[]@!$&'()*+,;=%";
    let bytes = s.as_bytes();
    bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || ALLOWED.contains(b))
        && bytes.iter().enumerate().all(|(i, b)| {
            *b != b'%'
                || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        })
}

/// RFC 2046 / RFC 7231 media type: `type/subtype`, then `; name=value` parameters.
fn is_media_type(s: &str) -> bool {
    fn token(t: &str) -> bool {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }
    let mut parts = s.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let Some((ty, subtype)) = essence.split_once('/') else {
        return false;
    };
    token(ty)
        && token(subtype)
        && parts.all(|p| {
            p.trim().split_once('=').is_some_and(|(name, value)| {
                let value = value.trim();
                token(name.trim())
                    && (token(value)
                        || (value.len() >= 2 && value.starts_with('"') && value.ends_with('"')))
            })
        })
}

fn is_json(content_type: &str) -> bool {
    content_type.starts_with("application/json") || content_type.contains("+json")
}

fn binary(headers: &HeaderMap, body: &[u8], content_type: &str) -> Result<Event, CloudEventError> {
    // Binary-mode attribute values are percent-encoded (HTTP binding §3.1.3.2).
    let decode = |v: &http::HeaderValue| -> Result<String, CloudEventError> {
        let raw = v
            .to_str()
            .map_err(|_| err("a `ce-*` header is not visible ASCII; percent-encode it"))?;
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| err(format!("`{raw}` does not percent-decode to UTF-8")))
    };
    // An attribute has one value: a `ce-*` header sent twice is refused, not half read.
    let mut names: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|k| k.starts_with("ce-"))
        .collect();
    names.sort_unstable();
    if let Some(twice) = names
        .iter()
        .find(|n| headers.get_all(**n).iter().count() > 1)
    {
        return Err(err(format!(
            "`{twice}` is sent more than once; a CloudEvent attribute has one value"
        )));
    }
    let header = |name: &str| -> Result<Option<String>, CloudEventError> {
        match headers.get(format!("ce-{name}")) {
            Some(v) => Ok(Some(decode(v)?).filter(|v| !v.is_empty())),
            None => Ok(None),
        }
    };
    let mode = "binary mode (`ce-*` headers)";
    let specversion = header("specversion")?.ok_or_else(|| missing("specversion", mode))?;
    check_specversion(&specversion, "ce-specversion")?;
    let id = header("id")?.ok_or_else(|| missing("id", mode))?;
    let source = header("source")?.ok_or_else(|| missing("source", mode))?;
    let ty = header("type")?.ok_or_else(|| missing("type", mode))?;
    let time = header("time")?;
    let dataschema = header("dataschema")?;
    let datacontenttype = (!content_type.is_empty()).then(|| content_type.to_owned());
    check_context(
        &source,
        time.as_deref(),
        datacontenttype.as_deref(),
        dataschema.as_deref(),
        "ce-",
    )?;
    let mut extensions = Vec::new();
    for (k, v) in headers {
        let Some(name) = k.as_str().strip_prefix("ce-") else {
            continue;
        };
        if CONTEXT.contains(&name) {
            continue;
        }
        check_extension_name(name, "ce-")?;
        extensions.push((name.to_owned(), decode(v)?));
    }
    if let Some(schema) = dataschema {
        extensions.push(("dataschema".to_owned(), schema));
    }
    Ok(Event {
        id,
        source,
        ty,
        subject: header("subject")?,
        time,
        datacontenttype,
        data: body.to_vec(),
        extensions,
    })
}

/// Binary-mode values are percent-encoded: space, `"`, `%`, controls and non-ASCII (HTTP
/// binding §3.1.3.2).
const BINARY_ESCAPED: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'%');

impl Event {
    /// The event in the JSON format (structured mode, `application/cloudevents+json`), which
    /// [`parse`] reads back to the same event. `data` goes as JSON when the content type is
    /// JSON and the bytes are JSON as [`parse`] writes it, as a string when it is text of
    /// another type, else as `data_base64`.
    pub fn to_structured(&self) -> Value {
        let mut map = Map::new();
        // Extensions first, so none can stand in for a context attribute.
        for (name, value) in &self.extensions {
            map.insert(name.clone(), value.clone().into());
        }
        map.insert("specversion".into(), "1.0".into());
        map.insert("id".into(), self.id.clone().into());
        map.insert("source".into(), self.source.clone().into());
        map.insert("type".into(), self.ty.clone().into());
        let optional = [
            ("subject", &self.subject),
            ("time", &self.time),
            ("datacontenttype", &self.datacontenttype),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                map.insert(name.into(), v.clone().into());
            }
        }
        if !self.data.is_empty() {
            let json = self.datacontenttype.as_deref().is_some_and(is_json);
            let as_json = serde_json::from_slice::<Value>(&self.data)
                .ok()
                .filter(|v| json && v.to_string().as_bytes() == self.data);
            let as_text = std::str::from_utf8(&self.data).ok().filter(|_| !json);
            let (name, value) = match (as_json, as_text) {
                (Some(v), _) => ("data", v),
                (None, Some(text)) => ("data", Value::String(text.to_owned())),
                (None, None) => (
                    "data_base64",
                    Value::String(base64::engine::general_purpose::STANDARD.encode(&self.data)),
                ),
            };
            map.insert(name.into(), value);
        }
        Value::Object(map)
    }

    /// The event in binary mode: `ce-*` headers (percent-encoded) and `content-type`, with
    /// `data` as the body; an empty `subject` is left out, as binary mode reads it. Refused when `datacontenttype` is no header value, or is a
    /// CloudEvents JSON type (binary mode cannot carry it: [`parse`] would read the body as
    /// a structured event).
    pub fn to_binary(&self) -> Result<(HeaderMap, Vec<u8>), CloudEventError> {
        let mut headers = HeaderMap::new();
        let mut put = |name: &str, value: &str| -> Result<(), CloudEventError> {
            let header = http::HeaderName::from_bytes(format!("ce-{name}").as_bytes())
                .map_err(|_| err(format!("`ce-{name}` is not a header name")))?;
            let value = percent_encoding::utf8_percent_encode(value, BINARY_ESCAPED).to_string();
            let value = http::HeaderValue::from_str(&value)
                .map_err(|_| err(format!("`ce-{name}` is not a header value")))?;
            headers.insert(header, value);
            Ok(())
        };
        put("specversion", "1.0")?;
        put("id", &self.id)?;
        put("source", &self.source)?;
        put("type", &self.ty)?;
        // Binary mode reads an empty header as absent.
        if let Some(subject) = self.subject.as_deref().filter(|s| !s.is_empty()) {
            put("subject", subject)?;
        }
        if let Some(time) = &self.time {
            put("time", time)?;
        }
        for (name, value) in &self.extensions {
            put(name, value)?;
        }
        if let Some(ct) = &self.datacontenttype {
            if ct
                .to_ascii_lowercase()
                .starts_with("application/cloudevents")
            {
                return Err(err(format!(
                    "datacontenttype `{ct}` cannot be sent in binary mode; send the event structured"
                )));
            }
            let value = http::HeaderValue::from_str(ct)
                .map_err(|_| err(format!("datacontenttype `{ct}` is not a header value")))?;
            headers.insert(http::header::CONTENT_TYPE, value);
        }
        Ok((headers, self.data.clone()))
    }
}

#[cfg(test)]
mod properties;

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

    fn structured_err(json: &str) -> String {
        parse(
            &headers(&[("content-type", "application/cloudevents+json")]),
            json.as_bytes(),
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn events_that_break_the_spec_are_refused_naming_the_rule() {
        let base = r#""specversion":"1.0","source":"/s","type":"t""#;
        for (json, needle) in [
            (
                format!(r#"{{{base},"id":42}}"#),
                "`id` must be a string, not a number",
            ),
            (
                format!(r#"{{{base},"id":{{"a":1}}}}"#),
                "`id` must be a string, not an object",
            ),
            (
                format!(r#"{{{base},"id":""}}"#),
                "missing the required attribute `id`",
            ),
            (
                format!(r#"{{{base},"id":"1","time":"lunchtime"}}"#),
                "`time` `lunchtime` is not an RFC 3339",
            ),
            (
                format!(r#"{{{base},"id":"1","data":"x","data_base64":"eA=="}}"#),
                "both `data` and `data_base64`",
            ),
            (
                format!(r#"{{{base},"id":"1","datacontenttype":"json"}}"#),
                "`datacontenttype` `json` is not a media type",
            ),
            (
                format!(r#"{{{base},"id":"1","dataschema":"not a uri"}}"#),
                "`dataschema`",
            ),
            (
                format!(r#"{{{base},"id":"1","Region":"eu"}}"#),
                "`Region` is not a valid extension",
            ),
            (
                format!(r#"{{{base},"id":"1","trace_id":"x"}}"#),
                "`trace_id` is not a valid extension",
            ),
            (
                format!(r#"{{{base},"id":"1","region":{{"a":1}}}}"#),
                "extension `region` is an object",
            ),
            (
                format!(r#"{{{base},"id":"1","region":1.5}}"#),
                "not a 32-bit integer",
            ),
            (
                format!(r#"{{{base},"id":"1","data_base64":"%%%"}}"#),
                "not base64",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"a b","type":"t"}"#.to_owned(),
                "`source` `a b` is not a URI-reference",
            ),
            (
                r#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#.to_owned(),
                "specversion `0.3`",
            ),
        ] {
            let e = structured_err(&json);
            assert!(e.contains(needle), "{json}: {e}");
        }
        // Accepted: the types CloudEvents has, and a parameterised media type.
        let ok = format!(
            r#"{{{base},"id":"1","time":"2026-12-06T10:00:00+01:00","datacontenttype":"text/plain; charset=utf-8","dataschema":"https://s.example/v1","count":7,"urgent":true,"data":"x"}}"#
        );
        let e = &parse(
            &headers(&[("content-type", "application/cloudevents+json")]),
            ok.as_bytes(),
        )
        .unwrap()[0];
        assert!(e.extensions.contains(&("count".to_owned(), "7".to_owned())));
        assert!(
            e.extensions
                .contains(&("urgent".to_owned(), "true".to_owned()))
        );
        // One bad event refuses the whole batch.
        let batch = format!(r#"[{{{base},"id":"1"}},{{{base},"id":2}}]"#);
        let e = parse(
            &headers(&[("content-type", "application/cloudevents-batch+json")]),
            batch.as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("event #1") && e.contains("nothing of the batch"),
            "{e}"
        );
        // Binary mode: the same rules on the percent-decoded headers.
        let binary = |extra: (&str, &str)| {
            parse(
                &headers(&[
                    ("ce-specversion", "1.0"),
                    ("ce-id", "1"),
                    ("ce-source", "/s"),
                    ("ce-type", "t"),
                    extra,
                ]),
                b"",
            )
        };
        let e = binary(("ce-time", "lunch%20time")).unwrap_err().to_string();
        assert!(e.contains("`ce-time` `lunch time`"), "{e}");
        let e = binary(("ce-trace_id", "x")).unwrap_err().to_string();
        assert!(e.contains("`ce-trace_id` is not a valid extension"), "{e}");
        assert!(binary(("ce-time", "2026-12-06T10%3A00%3A00Z")).is_ok());
    }

    #[test]
    fn events_encode_to_what_parses_back() {
        let structured = headers(&[("content-type", "application/cloudevents+json")]);
        let event = Event {
            id: "1".into(),
            source: "/s".into(),
            ty: "t".into(),
            subject: Some("caf\u{e9} 100%".into()),
            time: Some("2026-12-06T10:00:00Z".into()),
            datacontenttype: Some("application/json".into()),
            data: br#"{"a":[1,2]}"#.to_vec(),
            extensions: vec![("region".into(), "eu west".into())],
        };
        let json = event.to_structured();
        assert_eq!(json["data"]["a"][1], 2, "{json}");
        let again = parse(&structured, json.to_string().as_bytes()).unwrap();
        assert_eq!(again, std::slice::from_ref(&event));
        let (h, body) = event.to_binary().unwrap();
        assert_eq!(h["ce-subject"], "caf%C3%A9%20100%25");
        assert_eq!(parse(&h, &body).unwrap(), std::slice::from_ref(&event));
        // Bytes that are not text go as base64; text of another type as a string.
        for (ct, data, key) in [
            ("application/octet-stream", vec![0xff, 0, 1], "data_base64"),
            ("text/plain", b"hi".to_vec(), "data"),
            ("application/json", b"{ \"a\": 1 }".to_vec(), "data_base64"),
        ] {
            let e = Event {
                datacontenttype: Some(ct.into()),
                data: data.clone(),
                ..event.clone()
            };
            let json = e.to_structured();
            assert!(json.get(key).is_some(), "{ct}: {json}");
            assert_eq!(
                parse(&structured, json.to_string().as_bytes()).unwrap()[0].data,
                data
            );
        }
        let e = Event {
            datacontenttype: Some("application/cloudevents+json".into()),
            ..event
        };
        assert!(e.to_binary().is_err());
    }

    #[test]
    fn binary_mode_keeps_the_content_type_and_refuses_repeated_attributes() {
        let mut h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("content-type", "multipart/mixed; boundary=AbC"),
        ]);
        let e = parse(&h, b"").unwrap();
        assert_eq!(
            e[0].datacontenttype.as_deref(),
            Some("multipart/mixed; boundary=AbC")
        );
        h.append("ce-id", "2".parse().unwrap());
        let e = parse(&h, b"").unwrap_err().to_string();
        assert!(e.contains("`ce-id` is sent more than once"), "{e}");
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
