//! The dashboard: HTML pages for people, next to the admin API for programs.
//!
//! Today it serves an app's own analytics page: the `[[dashboard.panel]]`s of its manifest,
//! each a read-only query of one of its sql databases drawn as a chart or a table, at
//! `/_updraft/apps/<app>/dashboard` (admin auth, as the API), and on the user route
//! `[dashboard] route` when the app sets one (public). Pages are rendered on the server
//! (`chart.rs` draws SVG), so they work without a network and show the same data a test
//! reads; a panel with `refresh` is re-fetched as a fragment (`?panel=<n>`).
//!
//! To add a page: a handler here and one `.route` line in [`router`].

mod chart;

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use serde::Deserialize;
use updraft_manifest::Panel;

use crate::state::{AppState, NodeState};

/// Longest a panel's query may run before the panel says so.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The dashboard's pages under `/_updraft/` (behind the admin API's auth).
pub(crate) fn router() -> axum::Router {
    axum::Router::new()
        .route("/_updraft/apps/{app}/dashboard", get(app_page))
        .route("/_updraft/dashboard", get(only_app_page))
        .layer(axum::middleware::from_fn(crate::api::require_token))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    /// Only this panel, as a fragment (what a refreshing panel fetches).
    panel: Option<usize>,
}

async fn app_page(
    Extension(node): Extension<Arc<NodeState>>,
    Path(app): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    match node.apps.get(&app) {
        Some(state) => {
            let base = format!("/_updraft/apps/{app}/dashboard");
            page(state, &base, query.panel).await
        }
        None => not_found(&format!(
            "app `{app}` is not on this node; `updraft ls` (or `GET /_updraft/api/v1/apps`) lists the apps it hosts"
        )),
    }
}

async fn only_app_page(
    Extension(node): Extension<Arc<NodeState>>,
    Query(query): Query<PageQuery>,
) -> Response {
    match node.only_app() {
        Some(state) => {
            let base = format!("/_updraft/apps/{}/dashboard", state.name);
            page(state, &base, query.panel).await
        }
        None => not_found(
            "this node hosts several apps; open `/_updraft/apps/<app>/dashboard` for one of them",
        ),
    }
}

/// The page on the app's `[dashboard] route`, for anyone who can reach the app.
pub(crate) async fn public_page<B>(app: &AppState, req: &http::Request<B>) -> Response {
    let panel = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("panel=")))
        .and_then(|n| n.parse().ok());
    page(app, req.uri().path(), panel).await
}

/// The whole page, or one panel's fragment when `panel` is given. `base` is the page's own
/// path, which refreshing panels fetch from.
async fn page(app: &AppState, base: &str, panel: Option<usize>) -> Response {
    let panels = &app.dashboard.panel;
    if let Some(i) = panel {
        return match panels.get(i) {
            Some(p) => html(StatusCode::OK, panel_html(app, base, i, p).await),
            None => not_found(&format!(
                "the dashboard has {} panel(s); `panel` counts from 0",
                panels.len()
            )),
        };
    }
    let rendered = futures::future::join_all(
        panels
            .iter()
            .enumerate()
            .map(|(i, p)| panel_html(app, base, i, p)),
    )
    .await;
    let title = app
        .dashboard
        .title
        .clone()
        .unwrap_or_else(|| app.name.clone());
    let body = if rendered.is_empty() {
        format!(
            r#"<p class="empty">App <code>{}</code> declares no panels yet. Add one to its <code>updraft.toml</code>:</p><pre>[[dashboard.panel]]
title = "Orders per day"
sql = "orders"            # a [sql.&lt;label&gt;] of the app
query = "SELECT day, count(*) AS orders FROM orders GROUP BY day ORDER BY day"
chart = "line"            # line | bar | area | pie | table
x = "day"
y = "orders"</pre>"#,
            escape(&app.name)
        )
    } else {
        format!(r#"<div class="panels">{}</div>"#, rendered.concat())
    };
    let generated = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    html(
        StatusCode::OK,
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · updraft</title><style>{STYLE}</style></head>
<body><header><h1>{title}</h1><p class="meta">App <code>{app}</code> · drawn at {generated} · <a href="{base}">reload</a></p></header>
<main>{body}</main><script>{SCRIPT}</script></body></html>"#,
            title = escape(&title),
            app = escape(&app.name),
            base = escape(base),
        ),
    )
}

/// One panel: its heading and its chart, or a message saying why there is none.
async fn panel_html(app: &AppState, base: &str, i: usize, p: &Panel) -> String {
    let body = match draw(app, p).await {
        Ok(chart) => chart,
        Err(Problem::Empty) => format!(
            r#"<p class="empty">No rows yet: the query on <code>{}</code> returned nothing. The chart appears once the app writes some.</p>"#,
            escape(&p.sql)
        ),
        Err(Problem::Failed(why)) => {
            format!(r#"<p class="error" role="alert">{}</p>"#, escape(&why))
        }
    };
    let refresh = p.refresh.as_ref().map_or(String::new(), |r| {
        format!(
            r#" data-refresh-ms="{}" data-src="{}?panel={i}""#,
            r.0.as_millis(),
            escape(base)
        )
    });
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<section class="panel" id="panel-{i}" aria-labelledby="panel-{i}-title"{refresh}><h2 id="panel-{i}-title">{}</h2>{body}</section>"#,
        escape(&p.title)
    );
    out
}

enum Problem {
    Empty,
    Failed(String),
}

async fn draw(app: &AppState, p: &Panel) -> Result<String, Problem> {
    let db = app
        .sql
        .get(&p.sql)
        .ok_or_else(|| Problem::Failed(format!("sql database `{}` is not open", p.sql)))?;
    let rows = tokio::time::timeout(QUERY_TIMEOUT, db.read(&p.query, Vec::new()))
        .await
        .map_err(|_| {
            Problem::Failed(format!(
                "the query ran longer than {} s and was stopped; make it cheaper (an index, a `LIMIT`)",
                QUERY_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| Problem::Failed(e.to_string()))?;
    let spec = chart::Spec {
        chart: p.chart,
        x: p.x.as_deref(),
        y: p.y.as_ref().map(|y| y.to_vec()).unwrap_or_default(),
        group: p.group.as_deref(),
    };
    chart::columns(&spec, &rows).map_err(Problem::Failed)?;
    if rows.rows.is_empty() {
        return Err(Problem::Empty);
    }
    chart::render(&spec, &rows).map_err(Problem::Failed)
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

fn not_found(why: &str) -> Response {
    html(
        StatusCode::NOT_FOUND,
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found · updraft</title></head><body><main><h1>Not found</h1><p>{}</p></main></body></html>"#,
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

const STYLE: &str = r#"
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #57606a; --bg: #ffffff; --card: #f6f8fa; --line: #d0d7de; --err: #b42318; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9da7b1; --bg: #0d1117; --card: #161b22; --line: #30363d; --err: #ff7b72; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header, main { max-width: 1400px; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: 0; } h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
.meta { color: var(--muted); margin: .25rem 0 0; } a { color: inherit; }
.panels { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 520px), 1fr)); }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem; min-width: 0; }
.chart { width: 100%; height: auto; display: block; }
.chart.pie { max-width: 300px; margin: 0 auto; }
.chart text { fill: var(--muted); font-size: 11px; } .chart .axis-title { fill: var(--fg); font-size: 12px; }
.chart .grid { stroke: var(--line); stroke-width: 1; } .chart .axis { stroke: var(--muted); stroke-width: 1; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: .25rem 1rem; padding: 0; margin: .5rem 0 0; font-size: .9rem; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: .35em; vertical-align: -.05em; }
.table-wrap { overflow-x: auto; } table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.error { color: var(--err); } .empty, .note { color: var(--muted); }
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
