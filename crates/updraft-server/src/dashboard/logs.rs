//! Logs followed live: the newest lines the app's functions wrote (of one function or one
//! invocation, when asked), then every new line as it lands, over SSE. Lines reach the
//! record store in 100 ms batches; the server reads what came after the last line it sent
//! every half second and sends it as one event, so a chatty function cannot flood the page,
//! and the page keeps at most [`KEPT`] lines.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::Query;
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use updraft_store::{LogQuery, RecordStore};

use super::{Nav, News, PageApp, escape, html, layout, news_stream, not_found};
use crate::api::{LogLine, url_encode as url};
use crate::state::AppState;

/// Lines the page shows at first and keeps at most.
const KEPT: u32 = 1_000;
/// Lines read per poll; a busier app is caught up over several polls.
const PER_POLL: u32 = 2_000;

#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct Filter {
    function: Option<String>,
    invocation: Option<String>,
    /// Follow from after this line (the page passes the last one it shows).
    after: Option<i64>,
}

impl Filter {
    fn function(&self) -> Option<String> {
        self.function.clone().filter(|f| !f.is_empty())
    }

    fn invocation(&self) -> Option<String> {
        self.invocation
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
    }

    fn query(&self, after: i64) -> String {
        let mut q = format!("after={after}");
        if let Some(f) = self.function() {
            let _ = write!(q, "&function={}", url(&f));
        }
        if let Some(i) = self.invocation() {
            let _ = write!(q, "&invocation={}", url(&i));
        }
        q
    }

    /// A function that is not the app's: the page and the stream say so instead of
    /// following nothing forever.
    fn unknown_function(&self, app: &AppState) -> Option<Response> {
        let f = self.function()?;
        (!app.functions.contains_key(&f)).then(|| {
            not_found(&format!(
                "function `{f}` is not in this app; pick one from the list on the logs page"
            ))
        })
    }
}

pub(super) async fn page(PageApp(ref app): PageApp, Query(f): Query<Filter>) -> Response {
    if let Some(answer) = f.unknown_function(app) {
        return answer;
    }
    let newest = app
        .records
        .logs(LogQuery {
            function: f.function(),
            invocation: f.invocation(),
            after: None,
            limit: KEPT,
        })
        .await
        .unwrap_or_default();
    let last = newest.last().map_or(0, |l| l.seq);
    let mut options = String::from(r#"<option value="">all</option>"#);
    for id in app.functions.keys() {
        let selected = if f.function().as_deref() == Some(id.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(options, r#"<option{selected}>{}</option>"#, escape(id));
    }
    let mut lines = String::new();
    for l in newest {
        line_html(&mut lines, &app.name, &LogLine::from(l));
    }
    let empty = if lines.is_empty() {
        r#"<p class="empty" id="logs-empty">Nothing logged yet. What functions print to stdout or stderr appears here as they run.</p>"#
    } else {
        ""
    };
    let events = format!(
        "/_updraft/apps/{}/logs/events?{}",
        url(&app.name),
        f.query(last)
    );
    let body = format!(
        r#"<form class="panel" method="get"><p><label for="function">function</label> <select id="function" name="function">{options}</select> <label for="invocation">invocation</label> <input id="invocation" name="invocation" size="38" value="{invocation}"> <button type="submit">Filter</button></p></form>
<section class="panel"><h2>Logs, followed live</h2><p class="note" id="logs-status" role="status">Connecting…</p>{empty}
<pre class="logs" id="log-lines" tabindex="0" aria-label="log lines, newest last" data-kept="{KEPT}" data-events="{events}" data-base="/_updraft/apps/{app}/invocations/">{lines}</pre></section>
<script>{LOGS_SCRIPT}</script>"#,
        invocation = escape(&f.invocation().unwrap_or_default()),
        events = escape(&events),
        app = escape(&url(&app.name)),
    );
    html(StatusCode::OK, layout("Logs", app, Nav::Logs, &body, None))
}

/// One line as the page shows it: time, function, a link to its invocation, the text.
fn line_html(out: &mut String, app: &str, l: &LogLine) {
    let _ = writeln!(
        out,
        r#"<span class="{stream}" data-seq="{seq}">{time} {function} <a href="/_updraft/apps/{app}/invocations/{inv_url}">{inv_short}</a> {line}</span>"#,
        stream = escape(&l.stream),
        seq = l.seq,
        time = escape(&l.time),
        function = escape(&l.function),
        app = escape(&url(app)),
        inv_url = escape(&url(&l.invocation)),
        inv_short = escape(short(&l.invocation)),
        line = escape(&l.line),
    );
}

/// The last 8 characters of an invocation id: enough to tell lines apart on one screen.
fn short(id: &str) -> &str {
    let start = id.char_indices().rev().nth(7).map_or(0, |(i, _)| i);
    &id[start..]
}

/// New lines as SSE: one `lines` event (a JSON array, oldest first) per poll that found
/// any, a keep-alive comment otherwise.
pub(super) async fn events(PageApp(ref app): PageApp, Query(f): Query<Filter>) -> Response {
    if let Some(answer) = f.unknown_function(app) {
        return answer;
    }
    news_stream(Follower {
        records: app.records.clone(),
        after: f.after.unwrap_or(0),
        filter: f,
    })
}

struct Follower {
    records: Arc<dyn RecordStore>,
    filter: Filter,
    /// The last line sent.
    after: i64,
}

impl News for Follower {
    type Item = LogLine;
    const EVENT: &'static str = "lines";

    async fn poll(&mut self) -> Vec<LogLine> {
        let rows = self
            .records
            .logs(LogQuery {
                function: self.filter.function(),
                invocation: self.filter.invocation(),
                after: Some(self.after),
                limit: PER_POLL,
            })
            .await
            .unwrap_or_default();
        if let Some(last) = rows.last() {
            self.after = last.seq;
        }
        rows.into_iter().map(LogLine::from).collect()
    }
}

const LOGS_SCRIPT: &str = r#"
(function () {
  var pre = document.getElementById('log-lines');
  var status = document.getElementById('logs-status');
  var kept = Number(pre.dataset.kept);
  function short(id) { return id.length > 8 ? id.slice(-8) : id; }
  var source = new EventSource(pre.dataset.events);
  source.onopen = function () { status.textContent = 'Live: new lines appear at the bottom.'; };
  source.onerror = function () { status.textContent = 'Disconnected; retrying…'; };
  source.addEventListener('lines', function (e) {
    var empty = document.getElementById('logs-empty');
    if (empty) { empty.remove(); }
    var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    JSON.parse(e.data).forEach(function (l) {
      var span = document.createElement('span');
      span.className = l.stream;
      span.dataset.seq = l.seq;
      span.appendChild(document.createTextNode(l.time + ' ' + l.function + ' '));
      var a = document.createElement('a');
      a.href = pre.dataset.base + encodeURIComponent(l.invocation);
      a.textContent = short(l.invocation);
      span.appendChild(a);
      span.appendChild(document.createTextNode(' ' + l.line));
      pre.appendChild(span);
      pre.appendChild(document.createTextNode('\n'));
    });
    var spans = pre.querySelectorAll('span[data-seq]');
    for (var i = 0; i < spans.length - kept; i++) {
      if (spans[i].nextSibling) { pre.removeChild(spans[i].nextSibling); }
      pre.removeChild(spans[i]);
    }
    if (atBottom) { pre.scrollTop = pre.scrollHeight; }
  });
})();
"#;
