//! Request ids and W3C trace context on every user request: `x-request-id` is kept when a
//! client sends a sane one, else it is the invocation id; `traceparent` is kept when valid,
//! else a new trace starts. Both reach functions and upstreams; the response carries the
//! request id. The access log line ([`access_line`]) names both.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

/// Access log lines not written to stdout yet.
static ACCESS_LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Past this many buffered bytes the request that adds a line writes them out.
const ACCESS_LOG_BUFFER: usize = 32 * 1024;
/// How long a line may wait in the buffer.
pub const ACCESS_LOG_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Adds an access log line; lines reach stdout in batches (one `write` for many requests,
/// where a line each cost a system call per request), at most [`ACCESS_LOG_FLUSH_EVERY`]
/// late once [`spawn_access_log_flusher`] runs.
pub fn log_access(line: &str) {
    let full = {
        let mut buffer = ACCESS_LOG.lock().unwrap_or_else(|e| e.into_inner());
        buffer.extend_from_slice(line.as_bytes());
        buffer.push(b'\n');
        (buffer.len() >= ACCESS_LOG_BUFFER).then(|| std::mem::take(&mut *buffer))
    };
    if let Some(lines) = full {
        write_out(&lines);
    }
}

/// Writes what the access log holds to stdout now (at a graceful stop, and on a timer).
pub fn flush_access_log() {
    let lines = std::mem::take(&mut *ACCESS_LOG.lock().unwrap_or_else(|e| e.into_inner()));
    if !lines.is_empty() {
        write_out(&lines);
    }
}

/// Flushes the access log every [`ACCESS_LOG_FLUSH_EVERY`] for as long as the runtime runs.
pub fn spawn_access_log_flusher() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(ACCESS_LOG_FLUSH_EVERY);
        loop {
            tick.tick().await;
            flush_access_log();
        }
    })
}

fn write_out(lines: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(lines);
    let _ = out.flush();
}

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The longest client request id kept.
const MAX_REQUEST_ID: usize = 128;

/// Sets `x-request-id` (the client's, else `fallback`) and a valid `traceparent` on
/// `headers`; returns the request id.
pub fn prepare(headers: &mut HeaderMap, fallback: &str) -> String {
    let id = match headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        Some(v) if is_sane_id(v) => v.to_owned(),
        _ => fallback.to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, v);
    }
    let valid = headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_traceparent);
    if !valid {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
        if let Ok(v) = HeaderValue::from_str(&format!("00-{trace}-{span}-01")) {
            headers.insert(TRACEPARENT, v);
        }
    }
    id
}

fn is_sane_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_REQUEST_ID
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
}

/// `00-<32 hex>-<16 hex>-<2 hex>`, neither id all zeros (W3C Trace Context §3.2).
pub fn is_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

/// What one access log line says.
#[derive(Debug)]
pub struct Access<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// Method and path (without the query, which may hold secrets).
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// The route's name, if one matched.
    pub route: Option<&'a str>,
    /// The target that answered (`function:<id>`, …), if one did.
    pub target: Option<&'a str>,
    /// The answer's status.
    pub status: u16,
    /// Milliseconds until the response head.
    pub duration_ms: f64,
    /// The API key that was verified, if any.
    pub key_id: Option<&'a str>,
    /// The client, after `trusted_proxies`.
    pub client: &'a str,
}

/// One JSON line; it never holds a credential or a query string.
pub fn access_line(a: &Access<'_>) -> String {
    serde_json::json!({
        "time": httpdate::fmt_http_date(std::time::SystemTime::now()),
        "request_id": a.request_id,
        "method": a.method,
        "path": a.path,
        "route": a.route,
        "target": a.target,
        "status": a.status,
        "duration_ms": (a.duration_ms * 1000.0).round() / 1000.0,
        "key_id": a.key_id,
        "client": a.client,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_when_sane_and_traces_start_when_missing() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, "abc-123".parse().unwrap());
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, tp.parse().unwrap());
        assert_eq!(prepare(&mut h, "fallback"), "abc-123");
        assert_eq!(h[TRACEPARENT], tp);

        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, "has spaces and <tags>".parse().unwrap());
        h.insert(
            TRACEPARENT,
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(prepare(&mut h, "inv-1"), "inv-1");
        assert_eq!(h[REQUEST_ID], "inv-1");
        let made = h[TRACEPARENT].to_str().unwrap();
        assert!(is_traceparent(made), "{made}");
        assert!(!made.contains("00000000000000000000000000000000"));
    }
}
