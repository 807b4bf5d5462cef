//! `[[ingest.http]]`: a user route that takes a batch of events and answers once every one
//! of them is stored in its stream.
//!
//! The body is JSON lines (each line a JSON value: a structured CloudEvent when it has a
//! `specversion`, otherwise the data of a new event), one structured CloudEvent
//! (`application/cloudevents+json`) or a CloudEvents batch
//! (`application/cloudevents-batch+json`). A batch is stored whole or not at all: a line
//! that does not parse, or an event without the stream's key, refuses it with 400 naming
//! the line. When the stream is behind, the producer gets 503 + `Retry-After`, never a
//! silent drop.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use updraft_gateway::{Body, error_response};
use updraft_runtime::{AppendError, StreamHandle};
use updraft_store::Event;

/// Most events one request may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 100_000;

/// One `[[ingest.http]]` route, as served.
pub(crate) struct HttpIngest {
    pub(crate) stream: Arc<StreamHandle>,
    /// The type of a JSON line that is not a CloudEvent.
    pub(crate) ty: String,
    /// The source of a JSON line that is not a CloudEvent (`/ingest/<route>`).
    pub(crate) source: String,
}

impl HttpIngest {
    /// Reads, parses and stores the request's events.
    pub(crate) async fn accept<B>(&self, req: Request<B>, max_body: u64, id: &str) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes, Error = hyper::Error> + Send + 'static,
    {
        let (parts, body) = req.into_parts();
        let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
        let body = match Limited::new(body, limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "the batch is over the limit of {max_body} bytes; send it in smaller requests"
                    ),
                    Some(id),
                );
            }
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the body: {e}"),
                    Some(id),
                );
            }
        };
        let events = match self.parse(&parts.headers, &body) {
            Ok(events) => events,
            Err(message) => return error_response(StatusCode::BAD_REQUEST, &message, Some(id)),
        };
        let count = events.len();
        match self.stream.append(events).await {
            Ok(_) => {
                metrics::counter!("updraft_stream_ingested_total", "stream" => self.stream.name.clone())
                    .increment(count as u64);
                let mut response = Response::new(updraft_gateway::body::full(format!(
                    "{{\"stored\":{count},\"stream\":\"{}\"}}\n",
                    self.stream.name
                )));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Err(AppendError::NoKey(message)) => error_response(
                StatusCode::BAD_REQUEST,
                &format!("{message}; nothing of the batch was stored"),
                Some(id),
            ),
            Err(e @ AppendError::Busy(_)) => {
                let mut response =
                    error_response(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), Some(id));
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Err(AppendError::Store(e)) => {
                tracing::error!(stream = %self.stream.name, "cannot store ingested events: {e}");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!(
                        "cannot store the events in stream `{}`: {e}; nothing of the batch was acknowledged, send it again",
                        self.stream.name
                    ),
                    Some(id),
                )
            }
        }
    }

    /// The events of a body, or why it is refused.
    fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Event>, String> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let events = if content_type.starts_with("application/cloudevents") {
            updraft_cloudevents::parse(headers, body).map_err(|e| e.to_string())?
        } else {
            self.json_lines(body)?
        };
        if events.is_empty() {
            return Err(
                "the body holds no events; send JSON lines or a CloudEvents batch".to_owned(),
            );
        }
        if events.len() > MAX_EVENTS_PER_REQUEST {
            return Err(format!(
                "{} events in one request; send at most {MAX_EVENTS_PER_REQUEST} per request",
                events.len()
            ));
        }
        for (i, e) in events.iter().enumerate() {
            updraft_runtime::host::messaging::check_event(e, &self.stream.name)
                .map_err(|m| format!("event #{i}: {m}; nothing of the batch was stored"))?;
        }
        Ok(events)
    }

    fn json_lines(&self, body: &[u8]) -> Result<Vec<Event>, String> {
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        let mut structured = HeaderMap::new();
        structured.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/cloudevents+json"),
        );
        let mut events = Vec::new();
        for (n, line) in body.split(|b| *b == b'\n').enumerate() {
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let refuse =
                |why: String| format!("line {}: {why}; nothing of the batch was stored", n + 1);
            let value: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| refuse(format!("not JSON ({e}); send one JSON value per line")))?;
            if value.get("specversion").is_some() {
                let mut parsed = updraft_cloudevents::parse(&structured, line)
                    .map_err(|e| refuse(e.to_string()))?;
                events.append(&mut parsed);
                continue;
            }
            events.push(Event {
                id: uuid::Uuid::now_v7().to_string(),
                source: self.source.clone(),
                ty: self.ty.clone(),
                time: Some(now.clone()),
                datacontenttype: Some("application/json".to_owned()),
                data: line.to_vec(),
                ..Event::default()
            });
        }
        Ok(events)
    }
}
