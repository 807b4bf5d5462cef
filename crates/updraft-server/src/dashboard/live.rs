//! The live view: invocations as they happen, filtered by function, trigger and outcome.
//! The page holds at most [`KEPT`] rows; the server sends new records in batches over SSE
//! (one event per poll, however many invocations ended), so a busy app cannot flood it.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::Query;
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use updraft_store::{InvocationQuery, RecordStore};

use super::{Nav, News, PageApp, escape, html, layout, news_stream};
use crate::api::{Invocation, url_encode as url};

/// Rows the page keeps.
const KEPT: usize = 200;
/// Records read per poll: more than end in one poll at 1,000 invocations/s.
const PER_POLL: u32 = 1_000;
/// How long an id is remembered as sent (records land within a second of the end).
const REMEMBER_US: i64 = 120_000_000;

#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct Filter {
    function: Option<String>,
    trigger: Option<String>,
    outcome: Option<String>,
}

impl Filter {
    fn keeps(&self, i: &Invocation) -> bool {
        let matches = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w.is_empty() || w == have)
        };
        matches(&self.function, &i.function)
            && matches(&self.trigger, &i.trigger)
            && matches(&self.outcome, &i.outcome)
    }

    fn query(&self) -> String {
        [
            ("function", &self.function),
            ("trigger", &self.trigger),
            ("outcome", &self.outcome),
        ]
        .iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", url(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
    }
}

pub(super) async fn page(PageApp(ref app): PageApp, Query(f): Query<Filter>) -> Response {
    let select = |name: &str, current: &Option<String>, options: Vec<String>| {
        let mut out = format!(
            r#"<label for="{name}">{name}</label> <select id="{name}" name="{name}"><option value="">all</option>"#
        );
        for o in options {
            let selected = if current.as_deref() == Some(o.as_str()) {
                " selected"
            } else {
                ""
            };
            let _ = write!(out, r#"<option{selected}>{}</option>"#, escape(&o));
        }
        out + "</select> "
    };
    let functions: Vec<String> = app.functions.keys().cloned().collect();
    let triggers = ["http", "queue", "topic", "cron", "file", "async"]
        .map(String::from)
        .to_vec();
    let outcomes = ["ok", "error", "timeout", "memory_limit", "rejected"]
        .map(String::from)
        .to_vec();
    let events = format!(
        "/_updraft/apps/{}/live/events?{}",
        url(&app.name),
        f.query()
    );
    let body = format!(
        r#"<form class="panel" method="get"><p>{}{}{}<button type="submit">Filter</button></p></form>
<section class="panel"><h2>Invocations as they happen</h2><p class="note" id="live-status" role="status">Connecting…</p>
<div class="table-wrap"><table><thead><tr><th scope="col">started</th><th scope="col">function</th><th scope="col">trigger</th><th scope="col">outcome</th><th scope="col">duration</th><th scope="col">start</th></tr></thead>
<tbody id="live-rows" data-kept="{KEPT}" data-events="{}" data-base="/_updraft/apps/{}/invocations/"></tbody></table></div></section>
<script>{LIVE_SCRIPT}</script>"#,
        select("function", &f.function, functions),
        select("trigger", &f.trigger, triggers),
        select("outcome", &f.outcome, outcomes),
        escape(&events),
        escape(&url(&app.name)),
    );
    html(StatusCode::OK, layout("Live", app, Nav::Live, &body, None))
}

/// New invocation records as SSE: an `invocations` event with a JSON array per poll that
/// found any (the latest 50 first), and a keep-alive comment otherwise.
pub(super) async fn events(PageApp(ref app): PageApp, Query(f): Query<Filter>) -> Response {
    news_stream(Poller {
        records: app.records.clone(),
        filter: f,
        sent: HashMap::new(),
        first: true,
    })
}

struct Poller {
    records: Arc<dyn RecordStore>,
    filter: Filter,
    /// Ids sent, with their start, forgotten after [`REMEMBER_US`].
    sent: HashMap<String, i64>,
    first: bool,
}

impl News for Poller {
    type Item = Invocation;
    const EVENT: &'static str = "invocations";

    /// Records not sent before that pass the filter, oldest first (the first poll: the
    /// latest 50, so the page starts filled).
    async fn poll(&mut self) -> Vec<Invocation> {
        let limit = if self.first { 50 } else { PER_POLL };
        let rows = self
            .records
            .invocations(InvocationQuery {
                function: self.filter.function.clone().filter(|f| !f.is_empty()),
                before_us: None,
                limit,
            })
            .await
            .unwrap_or_default();
        let newest = rows.first().map_or(0, |r| r.started_us);
        let mut fresh = Vec::new();
        for r in rows.into_iter().rev() {
            if self.sent.contains_key(&r.id) {
                continue;
            }
            self.sent.insert(r.id.clone(), r.started_us);
            let i = Invocation::from(r);
            if self.filter.keeps(&i) {
                fresh.push(i);
            }
        }
        self.sent.retain(|_, at| *at > newest - REMEMBER_US);
        if self.first {
            self.first = false;
            // Nothing yet still tells the page it is connected.
            if fresh.is_empty() {
                return Vec::new();
            }
        }
        fresh
    }
}

const LIVE_SCRIPT: &str = r#"
(function () {
  var rows = document.getElementById('live-rows');
  var status = document.getElementById('live-status');
  var kept = Number(rows.dataset.kept);
  function cell(text, cls) { var td = document.createElement('td'); td.textContent = text; if (cls) { td.className = cls; } return td; }
  function duration(us) { return us < 1000 ? us + ' µs' : us < 1e6 ? (us / 1e3).toFixed(1) + ' ms' : (us / 1e6).toFixed(2) + ' s'; }
  var source = new EventSource(rows.dataset.events);
  source.onopen = function () { status.textContent = 'Live: new invocations appear at the top.'; };
  source.onerror = function () { status.textContent = 'Disconnected; retrying…'; };
  source.addEventListener('invocations', function (e) {
    JSON.parse(e.data).forEach(function (i) {
      var tr = document.createElement('tr');
      tr.dataset.invocation = i.id;
      var started = document.createElement('td');
      var a = document.createElement('a');
      a.href = rows.dataset.base + encodeURIComponent(i.id);
      a.textContent = i.started;
      started.appendChild(a);
      tr.appendChild(started);
      tr.appendChild(cell(i.function));
      tr.appendChild(cell(i.trigger));
      tr.appendChild(cell(i.outcome, i.outcome === 'ok' ? 'ok' : 'bad'));
      tr.appendChild(cell(duration(i.duration_us), 'num'));
      tr.appendChild(cell(i.cold ? 'cold' : 'warm'));
      rows.insertBefore(tr, rows.firstChild);
    });
    while (rows.children.length > kept) { rows.removeChild(rows.lastChild); }
  });
})();
"#;
