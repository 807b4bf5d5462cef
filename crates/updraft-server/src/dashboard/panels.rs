//! An app's own page: its `[[dashboard.panel]]`s, each a read-only query of one of its sql
//! databases drawn as a chart or a table.

use std::fmt::Write;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use updraft_manifest::Panel;

use super::{Nav, chart, escape, html, layout, no_app, not_found};
use crate::state::{AppState, NodeState};

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    /// Only this panel, as a fragment (what a refreshing panel fetches).
    panel: Option<usize>,
}

pub(super) async fn app_page(
    Extension(node): Extension<Arc<NodeState>>,
    Path(app): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    match node.apps.get(&app) {
        Some(state) => {
            let base = format!("/_updraft/apps/{app}/dashboard");
            page(state, &base, query.panel, Nav::Dashboard).await
        }
        None => no_app(&app),
    }
}

pub(super) async fn only_app_page(
    Extension(node): Extension<Arc<NodeState>>,
    Query(query): Query<PageQuery>,
) -> Response {
    match node.only_app() {
        Some(state) => {
            let base = format!("/_updraft/apps/{}/dashboard", state.name);
            page(state, &base, query.panel, Nav::Dashboard).await
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
    page(app, req.uri().path(), panel, Nav::Public).await
}

/// The whole page, or one panel's fragment when `panel` is given. `base` is the page's own
/// path, which refreshing panels fetch from.
async fn page(app: &AppState, base: &str, panel: Option<usize>, nav: Nav) -> Response {
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
    html(StatusCode::OK, layout(&title, app, nav, &body, Some(base)))
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
    // The same bounded, read-only path as the table explorer and the API.
    let rows = crate::api::read_query(app, &p.sql, &p.query)
        .await
        .map_err(|e| Problem::Failed(e.message().to_owned()))?;
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
