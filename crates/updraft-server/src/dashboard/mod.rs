//! The dashboard: HTML pages for people, next to the admin API for programs, and built on
//! the same typed functions (`crate::api`), so nothing a page shows is missing from the API.
//!
//! * `/_updraft/` (the node's only app) and `/_updraft/apps/<app>`: the overview: every
//!   function with its triggers, allow-lists and how its invocations went over a window
//!   (`?window=15m|1h|6h|24h`), invocations per minute as a chart, the latest invocations.
//! * `/_updraft/apps/<app>/invocations/<id>`: one invocation with what it logged;
//!   `/_updraft/apps/<app>/invocations?id=…` (the header's search box) leads there.
//! * `/_updraft/apps/<app>/live`: invocations as they happen, over SSE (`live.rs`).
//! * `/_updraft/apps/<app>/logs[?function=…&invocation=…]`: what functions print, followed
//!   live over SSE (`logs.rs`).
//! * `/_updraft/apps/<app>/queues`: depths, in-flight, the oldest message's age and dead
//!   letters, with redrive and delete buttons; async invocations with their status.
//! * `/_updraft/apps/<app>/streams`: partitions and each consumer's lag per partition
//!   (`streams.rs`).
//! * `/_updraft/apps/<app>/buckets[/<bucket>?prefix=…]`: the bucket browser (`buckets.rs`).
//! * `/_updraft/apps/<app>/sql`: the table explorer (`explorer.rs`): tables and columns, a
//!   read-only query as a table and a chart, the result as CSV (`sql/export.csv`).
//! * `/_updraft/apps/<app>/dashboard`: the app's own `[[dashboard.panel]]`s (`panels.rs`),
//!   also served on `[dashboard] route` for anyone.
//!
//! Pages are rendered on the server (`chart.rs` draws SVG), so they work offline and show
//! what a test reads. All of them sit behind the admin API's auth and host checks; the one
//! form (redrive) is a same-origin POST that answers with a redirect.
//!
//! To add a page: a handler in its module and one `.route` line in [`router`]; a link in
//! [`Nav`] if it belongs in the header.

mod buckets;
mod chart;
mod explorer;
mod live;
mod login;
mod logs;
mod ops;
mod panels;
mod range;
mod streams;

use std::fmt::Write;

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};

pub(crate) use login::has_session;
pub(crate) use panels::public_page;

use crate::state::AppState;

/// What a live page follows: asked for news every [`POLL`], each non-empty answer is sent
/// as one SSE event of JSON named [`News::EVENT`] (batched, so a busy app cannot flood a
/// page), with keep-alive comments in between.
trait News: Send + 'static {
    /// One piece of news.
    type Item: serde::Serialize + Send;
    /// The SSE event's name.
    const EVENT: &'static str;
    /// What is new since the last call.
    fn poll(&mut self) -> impl std::future::Future<Output = Vec<Self::Item>> + Send;
}

/// How often a live page's stream looks for news (records land in 100 ms batches).
const POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// `news` as an SSE response: polled at once, then every [`POLL`].
fn news_stream<N: News>(news: N) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let stream = futures::stream::unfold((news, true), |(mut news, first)| async move {
        if !first {
            tokio::time::sleep(POLL).await;
        }
        loop {
            let batch = news.poll().await;
            if !batch.is_empty() {
                let data = serde_json::to_string(&batch).unwrap_or_else(|_| "[]".to_owned());
                let event = Event::default().event(N::EVENT).data(data);
                return Some((Ok::<_, std::convert::Infallible>(event), (news, false)));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response()
}

/// The dashboard's pages under `/_updraft/` (behind the admin API's auth).
pub(crate) fn router() -> axum::Router {
    axum::Router::new()
        .route("/_updraft/", get(ops::only_app_overview))
        .route("/_updraft/apps/{app}", get(ops::overview))
        .route("/_updraft/apps/{app}/invocations", get(ops::find))
        .route(
            "/_updraft/apps/{app}/invocations/{id}",
            get(ops::invocation),
        )
        .route("/_updraft/apps/{app}/queues", get(ops::queues))
        .route(
            "/_updraft/apps/{app}/queues/{name}/{action}",
            post(ops::dead_letters),
        )
        .route("/_updraft/apps/{app}/streams", get(streams::page))
        .route("/_updraft/apps/{app}/live", get(live::page))
        .route("/_updraft/apps/{app}/live/events", get(live::events))
        .route("/_updraft/apps/{app}/logs", get(logs::page))
        .route("/_updraft/apps/{app}/logs/events", get(logs::events))
        .route("/_updraft/apps/{app}/buckets", get(buckets::list))
        .route(
            "/_updraft/apps/{app}/buckets/{bucket}",
            get(buckets::browse),
        )
        .route("/_updraft/apps/{app}/sql", get(explorer::page))
        .route("/_updraft/apps/{app}/sql/export.csv", get(explorer::export))
        .route("/_updraft/apps/{app}/dashboard", get(panels::app_page))
        .route("/_updraft/dashboard", get(panels::only_app_page))
        .layer(axum::middleware::from_fn(crate::api::require_token))
        .route("/_updraft/login", get(login::page).post(login::sign_in))
        .route("/_updraft/logout", post(login::sign_out))
}

/// Which header link is the current page; `Public` shows none (the public panel route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Live,
    Logs,
    Queues,
    Streams,
    Tables,
    Buckets,
    Dashboard,
    Public,
}

/// A whole page: header with the app's links, then `body`. `reload` adds a reload link.
fn layout(title: &str, app: &AppState, nav: Nav, body: &str, reload: Option<&str>) -> String {
    let mut links = String::new();
    if nav != Nav::Public {
        let base = format!("/_updraft/apps/{}", app.name);
        let mut entries = vec![
            (Nav::Overview, base.clone(), "Overview"),
            (Nav::Live, format!("{base}/live"), "Live"),
            (Nav::Logs, format!("{base}/logs"), "Logs"),
            (Nav::Queues, format!("{base}/queues"), "Queues"),
        ];
        if !app.streams.is_empty() {
            entries.push((Nav::Streams, format!("{base}/streams"), "Streams"));
        }
        if !app.sql.is_empty() {
            entries.push((Nav::Tables, format!("{base}/sql"), "Tables"));
        }
        if !app.buckets.is_empty() {
            entries.push((Nav::Buckets, format!("{base}/buckets"), "Buckets"));
        }
        if !app.dashboard.panel.is_empty() {
            entries.push((Nav::Dashboard, format!("{base}/dashboard"), "Dashboard"));
        }
        links.push_str(r#"<nav aria-label="updraft"><ul>"#);
        for (which, href, text) in entries {
            let current = if which == nav {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(
                links,
                r#"<li><a href="{}"{current}>{text}</a></li>"#,
                escape(&href)
            );
        }
        links.push_str("</ul></nav>");
        let _ = write!(
            links,
            r#"<form class="find" role="search" method="get" action="{}/invocations"><label for="find-id">Invocation id</label> <input id="find-id" name="id" size="38" required placeholder="from updraft-invocation-id or the logs"> <button type="submit">Find</button></form>"#,
            escape(&base)
        );
        // Harmless where no token is needed (loopback under `up`).
        links.push_str(r#"<form class="sign-out" method="post" action="/_updraft/logout"><button type="submit">Sign out</button></form>"#);
    }
    let generated = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let reload = reload.map_or(String::new(), |r| {
        format!(r#" · <a href="{}">reload</a>"#, escape(r))
    });
    format!(
        r#"<!doctype html>
<html lang="en"><head>{HEAD}
<title>{title} · updraft</title><style>{STYLE}</style></head>
<body><header>{links}<h1>{title}</h1><p class="meta">App <code>{app}</code> · drawn at {generated}{reload}</p></header>
<main>{body}</main><script>{SCRIPT}</script></body></html>"#,
        title = escape(title),
        app = escape(&app.name),
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The app a page is about: the `{app}` of its path, hosted on this node; a page for any
/// other name answers [`no_app`] before its handler runs.
pub(super) struct PageApp(pub(super) std::sync::Arc<AppState>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PageApp {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        use axum::extract::Path;
        let Path(params) =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(IntoResponse::into_response)?;
        let name = params.get("app").map_or("", String::as_str);
        parts
            .extensions
            .get::<std::sync::Arc<crate::state::NodeState>>()
            .and_then(|node| node.apps.get(name))
            .map(|app| PageApp(app.clone()))
            .ok_or_else(|| no_app(name))
    }
}

/// The answer for an app this node does not host.
fn no_app(app: &str) -> Response {
    not_found(&format!(
        "app `{app}` is not on this node; `updraft ls` (or `GET /_updraft/api/v1/apps`) lists the apps it hosts"
    ))
}

fn not_found(why: &str) -> Response {
    html(
        StatusCode::NOT_FOUND,
        format!(
            r#"<!doctype html><html lang="en"><head>{HEAD}<title>Not found · updraft</title></head><body><main><h1>Not found</h1><p>{}</p></main></body></html>"#,
            escape(why)
        ),
    )
}

/// `s` safe inside HTML text and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What every page's `<head>` starts with. The inline icon spares the browser a
/// `/favicon.ico` request, which the app's own routes would answer 404 (a console error).
pub(crate) const HEAD: &str = concat!(
    r#"<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">"#,
    r#"<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Cpath d='M8 1l6 7h-4v7H6V8H2z' fill='%230072b2'/%3E%3C/svg%3E">"#
);

pub(crate) const STYLE: &str = r#"
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #57606a; --bg: #ffffff; --card: #f6f8fa; --line: #d0d7de; --err: #b42318; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9da7b1; --bg: #0d1117; --card: #161b22; --line: #30363d; --err: #ff7b72; } }
* { box-sizing: border-box; } ol.runs { display: flex; flex-wrap: wrap; gap: .25rem .5rem; list-style: none; margin: 0; padding: 0; } .actions { display: flex; gap: .5rem; flex-wrap: wrap; margin-bottom: .5rem; } td form { display: inline-block; margin: 0 .25rem .25rem 0; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header, main { max-width: 1400px; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: 0; } h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
.meta { color: var(--muted); margin: .25rem 0 0; } a { color: inherit; }
.panels { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 520px), 1fr)); } .charts { display: grid; gap: 0 1rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 480px), 1fr)); }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem; min-width: 0; }
.chart { width: 100%; height: auto; max-height: 360px; display: block; }
.chart .dense { opacity: 0; } .chart .dense:hover { opacity: 1; }
.chart.pie { max-width: 300px; margin: 0 auto; }
.chart text { fill: var(--muted); font-size: 11px; } .chart .axis-title { fill: var(--fg); font-size: 12px; }
.chart .grid { stroke: var(--line); stroke-width: 1; } .chart .axis { stroke: var(--muted); stroke-width: 1; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: .25rem 1rem; padding: 0; margin: .5rem 0 0; font-size: .9rem; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: .35em; vertical-align: -.05em; }
.table-wrap { overflow-x: auto; } table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.error { color: var(--err); } .empty, .note { color: var(--muted); }
nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: .25rem 1rem; padding: 0; margin: 0 0 .5rem; }
.find { display: flex; flex-wrap: wrap; align-items: center; gap: .25rem .5rem; margin: 0 0 .5rem; } .find input { flex: 1 1 12rem; min-width: 0; max-width: 24rem; }
nav a { text-decoration: none; padding: .15rem 0; } nav a[aria-current] { border-bottom: 2px solid currentColor; font-weight: 600; }
.stats { display: flex; flex-wrap: wrap; gap: .5rem 2rem; margin: 0 0 1rem; padding: 0; list-style: none; }
.stats b { font-size: 1.4rem; display: block; } .windows { margin: 0 0 1rem; } .windows a { margin-right: .75rem; }
.windows a[aria-current] { font-weight: 600; } section + section { margin-top: 1rem; }
.ok { color: inherit; } .bad { color: var(--err); font-weight: 600; }
button { font: inherit; padding: .3rem .8rem; border-radius: 6px; border: 1px solid var(--line); background: var(--bg); color: var(--fg); cursor: pointer; }
button:focus-visible, a:focus-visible { outline: 2px solid #0072b2; outline-offset: 2px; }
pre.logs { white-space: pre-wrap; word-break: break-word; } #log-lines { max-height: 70vh; overflow: auto; } .stderr { color: var(--err); }
.explorer { display: grid; gap: 1rem; grid-template-columns: minmax(0, 1fr); }
@media (min-width: 900px) { .explorer { grid-template-columns: 18rem minmax(0, 1fr); } }
.schema { padding-left: 1rem; } .schema li { margin-bottom: .4rem; } textarea { width: 100%; font: 13px/1.4 ui-monospace, monospace; }
select, input, textarea { max-width: 100%; box-sizing: border-box; font: inherit; padding: .2rem .3rem; border: 1px solid var(--line); border-radius: 4px; background: var(--bg); color: var(--fg); }
dl.fields { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; } dl.fields dt { color: var(--muted); } dl.fields dd { margin: 0; }
pre { background: var(--card); border: 1px solid var(--line); padding: .75rem; overflow-x: auto; }
"#;

/// Re-fetches each panel that asks for it; a failed fetch keeps what is shown.
const SCRIPT: &str = r#"
document.querySelectorAll('[data-refresh-ms]').forEach(function (panel) {
  setInterval(function () {
    fetch(panel.dataset.src, { headers: { Accept: 'text/html' } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        var shown = document.getElementById(panel.id);
        if (html && shown) { shown.outerHTML = html; }
      })
      .catch(function () {});
  }, Number(panel.dataset.refreshMs));
});
"#;
