//! An app's own page: its `[[dashboard.panel]]`s, each a read-only query of one of its sql
//! databases drawn as a chart or a table.

use std::fmt::Write;
use std::sync::Arc;

use axum::Extension;
use axum::extract::Query;
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use updraft_manifest::Panel;

use super::range::{Picked, picker};
use super::{Nav, PageApp, chart, escape, html, layout, not_found};
use crate::api::TimeRange;
use crate::state::{AppState, NodeState};

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    /// Only this panel, as a fragment (what a refreshing panel fetches).
    panel: Option<usize>,
    /// The time range the panels' `$from` and `$to` stand for (default `all`).
    range: Option<String>,
}

pub(super) async fn app_page(
    PageApp(ref app): PageApp,
    Query(query): Query<PageQuery>,
) -> Response {
    let base = format!("/_updraft/apps/{}/dashboard", app.name);
    page(app, &base, query, Nav::Dashboard).await
}

pub(super) async fn only_app_page(
    Extension(node): Extension<Arc<NodeState>>,
    Query(query): Query<PageQuery>,
) -> Response {
    match node.only_app() {
        Some(state) => {
            let base = format!("/_updraft/apps/{}/dashboard", state.name);
            page(state, &base, query, Nav::Dashboard).await
        }
        None => not_found(
            "this node hosts several apps; open `/_updraft/apps/<app>/dashboard` for one of them",
        ),
    }
}

/// The page on the app's `[dashboard] route`, for anyone who can reach the app.
pub(crate) async fn public_page<B>(app: &AppState, req: &http::Request<B>) -> Response {
    match Query::<PageQuery>::try_from_uri(req.uri()) {
        Ok(Query(query)) => page(app, req.uri().path(), query, Nav::Public).await,
        Err(e) => html(
            StatusCode::BAD_REQUEST,
            escape(&format!(
                "{e}; the page takes `panel` (a number) and `range`"
            )),
        ),
    }
}

/// The whole page, or one panel's fragment when `panel` is given. `base` is the page's own
/// path, which refreshing panels fetch from.
async fn page(app: &AppState, base: &str, query: PageQuery, nav: Nav) -> Response {
    let panels = &app.dashboard.panel;
    let picked = match Picked::named(query.range.as_deref()) {
        Ok(picked) => picked,
        Err(why) => return html(StatusCode::BAD_REQUEST, escape(&why)),
    };
    if let Some(i) = query.panel {
        return match panels.get(i) {
            Some(p) => html(StatusCode::OK, panel_html(app, base, &picked, i, p).await),
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
            .map(|(i, p)| panel_html(app, base, &picked, i, p)),
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
        // The picker only where a panel's query says where time goes in it.
        let ranged = panels.iter().any(|p| TimeRange::used_by(&p.query));
        let picker = if ranged {
            picker(base, picked.name)
        } else {
            String::new()
        };
        format!(r#"{picker}<div class="panels">{}</div>"#, rendered.concat())
    };
    html(StatusCode::OK, layout(&title, app, nav, &body, Some(base)))
}

/// One panel: its heading and its chart, or a message saying why there is none.
async fn panel_html(app: &AppState, base: &str, picked: &Picked, i: usize, p: &Panel) -> String {
    let body = match draw(app, picked, p).await {
        Ok(chart) => chart,
        Err(Problem::Empty) if picked.span_of(&p.query).is_some() => format!(
            r#"<p class="empty">No rows in the last {}: pick a longer range.</p>"#,
            picked.name
        ),
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
            r#" data-refresh-ms="{}" data-src="{}?panel={i}&amp;range={}""#,
            r.0.as_millis(),
            escape(base),
            picked.name
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

async fn draw(app: &AppState, picked: &Picked, p: &Panel) -> Result<String, Problem> {
    // The same bounded, read-only path as the table explorer and the API.
    let rows = crate::api::read_query(app, &p.sql, &p.query, &picked.range)
        .await
        .map_err(|e| Problem::Failed(e.message().to_owned()))?;
    let spec = chart::Spec {
        chart: p.chart,
        x: p.x.as_deref(),
        y: p.y.as_ref().map(|y| y.to_vec()).unwrap_or_default(),
        group: p.group.as_deref(),
        range: picked.span_of(&p.query),
    };
    chart::columns(&spec, &rows).map_err(Problem::Failed)?;
    if rows.rows.is_empty() {
        return Err(Problem::Empty);
    }
    chart::render(&spec, &rows).map_err(Problem::Failed)
}
