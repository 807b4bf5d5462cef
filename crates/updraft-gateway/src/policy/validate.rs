//! `body_schema` and `query_schema` on a `[[gateway.route]]`: a request's JSON body and its
//! query string are checked against JSON Schemas (draft 2020-12 unless the schema's `$schema`
//! says otherwise) before any target runs. A failure answers 400 with the path of the failing
//! field, as a JSON Pointer (`/items/0/price`), and nothing is called.
//!
//! A query is checked as an object of its parameters. Their values are text, except where the
//! schema's top-level `properties` ask for a number, an integer or a boolean (then a value that
//! reads as one is taken as one), or for an array (then every occurrence of the parameter is an
//! item, itself read by `items.type`). A parameter that occurs twice in a query whose schema
//! does not ask for an array is an array too, so the schema refuses it.
//!
//! Bodies are read whole (within the node's body limit) only on routes with a `body_schema`;
//! a request that carries no body is checked only when its method is `POST`, `PUT` or `PATCH`.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::{Body, full};

/// Errors at most listed in one answer.
const MAX_LISTED: usize = 10;
/// A message's longest length (a failing value is quoted in it; a client's 1 MiB string is not
/// sent back whole).
const MAX_MESSAGE: usize = 300;

/// A schema file, compiled.
struct Schema {
    /// As the manifest names it, for messages.
    file: String,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("file", &self.file).finish()
    }
}

/// What a query parameter's text becomes before the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Text,
    Integer,
    Number,
    Boolean,
}

/// How a query parameter is read: one value or every occurrence, and as what.
#[derive(Debug, Clone, Copy)]
struct Param {
    array: bool,
    item: Scalar,
}

/// A route's request checks.
#[derive(Debug)]
pub struct RequestSchema {
    body: Option<Schema>,
    query: Option<(Schema, HashMap<String, Param>)>,
}

/// Where a refused value was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The JSON body.
    Body,
    /// The query string.
    Query,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Body => "body",
            Part::Query => "query",
        }
    }
}

/// Why a request was refused: each failing field with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The body or the query.
    pub part: Part,
    /// The schema file.
    pub file: String,
    /// `(JSON Pointer, message)`, the first failing field first; empty when the body could
    /// not be read as JSON at all.
    pub fields: Vec<(String, String)>,
    /// What was wrong before any field could be checked (not JSON, empty).
    pub unreadable: Option<String>,
}

impl Refusal {
    /// The 400 answer: `{ "error", "part", "field", "errors": [{ "field", "message" }], … }`.
    pub fn response(&self, invocation_id: &str) -> Response<Body> {
        let part = self.part.as_str();
        let error = match (&self.unreadable, self.fields.first()) {
            (Some(why), _) => format!("{part}: {why}"),
            (None, Some((field, message))) if field.is_empty() => {
                format!("{part} does not match `{}`: {message}", self.file)
            }
            (None, Some((field, message))) => {
                format!(
                    "{part} field `{field}` does not match `{}`: {message}",
                    self.file
                )
            }
            (None, None) => format!("{part} does not match `{}`", self.file),
        };
        let mut body = json!({
            "error": error,
            "part": part,
            "schema": self.file,
            "invocation_id": invocation_id,
        });
        if let Some((field, _)) = self.fields.first() {
            body["field"] = Value::String(field.clone());
            body["errors"] = self
                .fields
                .iter()
                .map(|(field, message)| json!({ "field": field, "message": message }))
                .collect();
        }
        let mut text = body.to_string();
        text.push('\n');
        let mut response = Response::new(full(text));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(invocation_id) {
            headers.insert(crate::headers::INVOCATION_ID, v);
        }
        response
    }
}

impl RequestSchema {
    /// Loads a route's schemas from files relative to `app_dir`; `None` when it names none.
    /// The error names the file and what is wrong with it.
    pub fn load(
        body_schema: Option<&Path>,
        query_schema: Option<&Path>,
        app_dir: &Path,
    ) -> Result<Option<Self>, String> {
        if body_schema.is_none() && query_schema.is_none() {
            return Ok(None);
        }
        let body = body_schema
            .map(|file| compile(file, app_dir).map(|(schema, _)| schema))
            .transpose()?;
        let query = query_schema
            .map(|file| {
                compile(file, app_dir).map(|(schema, raw)| {
                    let params = query_params(&raw);
                    (schema, params)
                })
            })
            .transpose()?;
        Ok(Some(Self { body, query }))
    }

    /// Whether requests are checked for their body (so it must be read first).
    pub fn checks_body(&self) -> bool {
        self.body.is_some()
    }

    /// Checks the query string (absent: an empty one).
    pub fn check_query(&self, query: Option<&str>) -> Result<(), Refusal> {
        let Some((schema, params)) = &self.query else {
            return Ok(());
        };
        let instance = query_object(query.unwrap_or(""), params);
        check(schema, Part::Query, &instance)
    }

    /// Checks a body that was read whole. A bodiless `GET`, `HEAD`, `DELETE` or `OPTIONS`
    /// passes; any other method must send JSON that matches.
    pub fn check_body(&self, method: &Method, body: &Bytes) -> Result<(), Refusal> {
        let Some(schema) = &self.body else {
            return Ok(());
        };
        let takes_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        if body.is_empty() && !takes_body {
            return Ok(());
        }
        let unreadable = |why: String| Refusal {
            part: Part::Body,
            file: schema.file.clone(),
            fields: Vec::new(),
            unreadable: Some(why),
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(unreadable(format!(
                "the body is empty; this route takes a JSON body that matches `{}`",
                schema.file
            )));
        }
        let instance: Value = serde_json::from_slice(body)
            .map_err(|e| unreadable(format!("the body is not JSON ({e}); send a JSON document")))?;
        check(schema, Part::Body, &instance)
    }
}

/// Reads and compiles a schema file; the raw JSON too (the query reads its properties).
fn compile(file: &Path, app_dir: &Path) -> Result<(Schema, Value), String> {
    let shown = file.display().to_string();
    let path = app_dir.join(file);
    let text = std::fs::read(&path).map_err(|e| {
        format!(
            "cannot read schema `{shown}` ({e}); put the JSON Schema at {}",
            path.display()
        )
    })?;
    let raw: Value =
        serde_json::from_slice(&text).map_err(|e| format!("schema `{shown}` is not JSON: {e}"))?;
    let validator = jsonschema::validator_for(&raw)
        .map_err(|e| format!("schema `{shown}` is not a valid JSON Schema: {e}"))?;
    Ok((
        Schema {
            file: shown,
            validator,
        },
        raw,
    ))
}

/// Runs a schema over a value; every failing field (up to [`MAX_LISTED`]).
fn check(schema: &Schema, part: Part, instance: &Value) -> Result<(), Refusal> {
    if schema.validator.is_valid(instance) {
        return Ok(());
    }
    let fields: Vec<(String, String)> = schema
        .validator
        .iter_errors(instance)
        .take(MAX_LISTED)
        .map(|e| {
            let mut field = e.instance_path().to_string();
            // A missing property is reported at its parent; name the property itself.
            if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind() {
                field.push('/');
                match property {
                    Value::String(name) => field.push_str(&escape_pointer(name)),
                    other => field.push_str(&other.to_string()),
                }
            }
            (field, shorten(e.to_string()))
        })
        .collect();
    Err(Refusal {
        part,
        file: schema.file.clone(),
        fields,
        unreadable: None,
    })
}

/// A JSON Pointer segment (RFC 6901).
fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn shorten(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// How each top-level property of a query schema is read.
fn query_params(schema: &Value) -> HashMap<String, Param> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return HashMap::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let array = types(property).contains(&"array");
            let item = if array {
                property.get("items").map_or(Scalar::Text, scalar)
            } else {
                scalar(property)
            };
            (name.clone(), Param { array, item })
        })
        .collect()
}

/// The `type` (one, or a list) a schema asks for.
fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// What text is read as: the first non-text type the schema allows, else text.
fn scalar(schema: &Value) -> Scalar {
    let types = types(schema);
    if types.contains(&"string") {
        return Scalar::Text;
    }
    for t in types {
        match t {
            "integer" => return Scalar::Integer,
            "number" => return Scalar::Number,
            "boolean" => return Scalar::Boolean,
            _ => {}
        }
    }
    Scalar::Text
}

/// A query string as the object its schema checks.
fn query_object(query: &str, params: &HashMap<String, Param>) -> Value {
    let mut object = Map::new();
    for (name, text) in form_urlencoded::parse(query.as_bytes()) {
        let param = params.get(name.as_ref()).copied().unwrap_or(Param {
            array: false,
            item: Scalar::Text,
        });
        let value = read_scalar(&text, param.item);
        match object.get_mut(name.as_ref()) {
            Some(Value::Array(items)) if param.array => items.push(value),
            Some(existing) => {
                // Said twice where one value is expected: an array, which the schema refuses.
                let first = existing.take();
                *existing = match first {
                    Value::Array(mut items) if !param.array => {
                        items.push(value);
                        Value::Array(items)
                    }
                    first => Value::Array(vec![first, value]),
                };
            }
            None if param.array => {
                object.insert(name.into_owned(), Value::Array(vec![value]));
            }
            None => {
                object.insert(name.into_owned(), value);
            }
        }
    }
    Value::Object(object)
}

fn read_scalar(text: &str, scalar: Scalar) -> Value {
    let parsed = match scalar {
        Scalar::Text => None,
        Scalar::Integer => text.parse::<i64>().ok().map(Value::from),
        Scalar::Number => text
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Value::from),
        Scalar::Boolean => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
    };
    parsed.unwrap_or_else(|| Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(dir: &Path, name: &str, value: Value) -> std::path::PathBuf {
        std::fs::write(dir.join(name), value.to_string()).unwrap();
        std::path::PathBuf::from(name)
    }

    fn product() -> Value {
        json!({
            "type": "object",
            "required": ["name", "price"],
            "properties": {
                "name": { "type": "string", "minLength": 1 },
                "price": { "type": "number", "minimum": 0 },
                "tags": { "type": "array", "items": { "type": "string" } }
            },
            "additionalProperties": false
        })
    }

    fn list_query() -> Value {
        json!({
            "type": "object",
            "properties": {
                "limit": { "type": "integer", "minimum": 1, "maximum": 100 },
                "active": { "type": "boolean" },
                "tag": { "type": "array", "items": { "type": "string" }, "maxItems": 2 },
                "q": { "type": "string" }
            },
            "additionalProperties": false
        })
    }

    fn load(body: Option<Value>, query: Option<Value>) -> RequestSchema {
        let dir = tempfile::tempdir().unwrap();
        let b = body.map(|v| schema(dir.path(), "body.json", v));
        let q = query.map(|v| schema(dir.path(), "query.json", v));
        RequestSchema::load(b.as_deref(), q.as_deref(), dir.path())
            .unwrap()
            .unwrap()
    }

    fn refused_fields(r: Result<(), Refusal>) -> Vec<String> {
        r.unwrap_err().fields.into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn a_body_is_checked_and_the_failing_field_named() {
        let s = load(Some(product()), None);
        let post = Method::POST;
        assert!(
            s.check_body(&post, &Bytes::from_static(br#"{"name":"a","price":2}"#))
                .is_ok()
        );
        assert_eq!(
            refused_fields(s.check_body(&post, &Bytes::from_static(br#"{"name":"a","price":-1}"#))),
            ["/price"]
        );
        assert_eq!(
            refused_fields(s.check_body(&post, &Bytes::from_static(br#"{"name":"a"}"#))),
            ["/price"],
            "a missing property is named by its own path"
        );
        assert_eq!(
            refused_fields(s.check_body(
                &post,
                &Bytes::from_static(br#"{"name":"a","price":1,"tags":["x",3]}"#)
            )),
            ["/tags/1"]
        );
        let not_json = s
            .check_body(&post, &Bytes::from_static(b"name=a"))
            .unwrap_err();
        assert!(not_json.unreadable.unwrap().contains("not JSON"));
        let empty = s.check_body(&post, &Bytes::new()).unwrap_err();
        assert!(empty.unreadable.unwrap().contains("empty"));
        assert!(
            s.check_body(&Method::GET, &Bytes::new()).is_ok(),
            "a bodiless GET passes"
        );
    }

    #[test]
    fn a_query_is_read_as_the_schema_asks() {
        let s = load(None, Some(list_query()));
        assert!(s.check_query(None).is_ok());
        assert!(
            s.check_query(Some("limit=10&active=true&tag=a&tag=b&q=7"))
                .is_ok()
        );
        assert_eq!(refused_fields(s.check_query(Some("limit=ten"))), ["/limit"]);
        assert_eq!(refused_fields(s.check_query(Some("limit=500"))), ["/limit"]);
        assert_eq!(
            refused_fields(s.check_query(Some("limit=1&limit=2"))),
            ["/limit"]
        );
        assert_eq!(
            refused_fields(s.check_query(Some("tag=a&tag=b&tag=c"))),
            ["/tag"]
        );
        assert_eq!(refused_fields(s.check_query(Some("other=1"))), [""]);
    }

    #[test]
    fn the_answer_names_field_schema_and_invocation() {
        let s = load(Some(product()), None);
        let r = s
            .check_body(
                &Method::POST,
                &Bytes::from_static(br#"{"name":"","price":1}"#),
            )
            .unwrap_err();
        let response = r.response("inv-1");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[crate::headers::INVOCATION_ID], "inv-1");
        assert!(r.fields[0].1.len() <= MAX_MESSAGE + 3);
    }

    #[test]
    fn bad_schema_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing =
            RequestSchema::load(Some(Path::new("nope.json")), None, dir.path()).unwrap_err();
        assert!(missing.contains("`nope.json`"), "{missing}");
        std::fs::write(dir.path().join("bad.json"), "{").unwrap();
        let bad = RequestSchema::load(Some(Path::new("bad.json")), None, dir.path()).unwrap_err();
        assert!(bad.contains("not JSON"), "{bad}");
        std::fs::write(dir.path().join("wrong.json"), r#"{"type": 12}"#).unwrap();
        let wrong =
            RequestSchema::load(Some(Path::new("wrong.json")), None, dir.path()).unwrap_err();
        assert!(wrong.contains("not a valid JSON Schema"), "{wrong}");
    }

    #[test]
    fn long_values_are_not_echoed_whole() {
        let s = load(Some(product()), None);
        let long = "x".repeat(100_000);
        let body = Bytes::from(format!(r#"{{"name":"a","price":"{long}"}}"#));
        let r = s.check_body(&Method::POST, &body).unwrap_err();
        assert!(r.fields[0].1.len() <= MAX_MESSAGE + 3);
    }
}
