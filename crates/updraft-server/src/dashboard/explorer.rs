//! The table explorer: an app's databases with their tables and columns, a read-only query
//! (refused if it writes, bounded in time and rows) shown as a table and, when asked, as a
//! chart, and its result as CSV.

use std::fmt::Write;

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::Deserialize;
use updraft_manifest::ChartKind;

use super::range::{self, Picked};
use super::{Nav, PageApp, chart, escape, html, layout};
use crate::api;
use crate::api::url_encode as url;
use crate::state::AppState;

/// Rows the page shows; the CSV has them all.
const SHOWN_ROWS: usize = 1_000;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Explore {
    /// The database (default: the first).
    db: Option<String>,
    /// The query; none shows the schema only.
    q: Option<String>,
    /// `table` (default), `line`, `bar`, `area` or `pie`.
    chart: Option<String>,
    x: Option<String>,
    /// One column, or several separated by commas.
    y: Option<String>,
    group: Option<String>,
    /// The time range `$from` and `$to` in the query stand for (default `all`).
    range: Option<String>,
}

fn chart_kind(name: Option<&str>) -> ChartKind {
    match name {
        Some("line") => ChartKind::Line,
        Some("bar") => ChartKind::Bar,
        Some("area") => ChartKind::Area,
        Some("pie") => ChartKind::Pie,
        _ => ChartKind::Table,
    }
}

fn blank(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub(super) async fn page(PageApp(ref app): PageApp, Query(e): Query<Explore>) -> Response {
    let databases = match api::databases(app).await {
        Ok(d) => d,
        Err(p) => return html(StatusCode::INTERNAL_SERVER_ERROR, escape(p.message())),
    };
    if databases.is_empty() {
        let body = r#"<p class="empty">The app declares no sql databases. Add one with <code>[sql.&lt;label&gt;]</code> and a function that writes to it.</p>"#;
        return html(
            StatusCode::OK,
            layout("Tables", app, Nav::Tables, body, None),
        );
    }
    let db = blank(&e.db)
        .map(str::to_owned)
        .unwrap_or_else(|| databases[0].name.clone());
    let base = format!("/_updraft/apps/{}/sql", app.name);
    let mut body = String::from(
        r#"<div class="explorer"><aside class="panel" aria-label="tables"><h2>Tables</h2>"#,
    );
    for d in &databases {
        let _ = write!(
            body,
            "<h3><code>{}</code></h3><ul class=\"schema\">",
            escape(&d.name)
        );
        for t in &d.tables {
            let q = format!(
                "SELECT * FROM \"{}\" LIMIT 100",
                t.name.replace('"', "\"\"")
            );
            let cols: Vec<String> = t
                .columns
                .iter()
                .map(|c| {
                    format!(
                        "{} <span class=\"note\">{}</span>",
                        escape(&c.name),
                        escape(&c.ty)
                    )
                })
                .collect();
            let _ = write!(
                body,
                r#"<li><a href="{base}?db={}&amp;q={}">{}</a>{}<br><small>{}</small></li>"#,
                url(&d.name),
                url(&q),
                escape(&t.name),
                if t.kind == "view" {
                    " <span class=\"note\">view</span>"
                } else {
                    ""
                },
                cols.join(", "),
                base = escape(&base),
            );
        }
        if d.tables.is_empty() {
            body.push_str(r#"<li class="empty">No tables yet.</li>"#);
        }
        body.push_str("</ul>");
    }
    body.push_str("</aside><div>");
    let picked = match Picked::named(e.range.as_deref()) {
        Ok(picked) => picked,
        Err(why) => return html(StatusCode::BAD_REQUEST, escape(&why)),
    };
    body.push_str(&form(&base, &databases, &db, &e, &picked));
    if let Some(q) = blank(&e.q) {
        body.push_str(&results(app, &base, &db, q, &e, &picked).await);
    }
    body.push_str("</div></div>");
    html(
        StatusCode::OK,
        layout("Tables", app, Nav::Tables, &body, None),
    )
}

fn form(
    base: &str,
    databases: &[api::DatabaseInfo],
    db: &str,
    e: &Explore,
    picked: &Picked,
) -> String {
    let mut options = String::new();
    for d in databases {
        let selected = if d.name == db { " selected" } else { "" };
        let _ = write!(options, r#"<option{selected}>{}</option>"#, escape(&d.name));
    }
    let mut charts = String::new();
    let current = chart_kind(e.chart.as_deref());
    for kind in [
        ChartKind::Table,
        ChartKind::Line,
        ChartKind::Bar,
        ChartKind::Area,
        ChartKind::Pie,
    ] {
        let selected = if kind == current { " selected" } else { "" };
        let _ = write!(charts, r#"<option{selected}>{}</option>"#, kind.as_str());
    }
    let field = |v: &Option<String>| escape(v.as_deref().unwrap_or_default());
    format!(
        r#"<form class="panel query" method="get" action="{base}"><h2>Query</h2>
<p><label for="db">Database</label> <select id="db" name="db">{options}</select></p>
<p><label for="q">Read-only SQL</label><br><textarea id="q" name="q" rows="5" cols="80" spellcheck="false">{q}</textarea></p>
<p><label for="chart">Draw as</label> <select id="chart" name="chart">{charts}</select>
<label for="x">x</label> <input id="x" name="x" size="10" value="{x}">
<label for="y">y</label> <input id="y" name="y" size="14" value="{y}" placeholder="a, b">
<label for="group">group</label> <input id="group" name="group" size="10" value="{group}"></p>
<p><label for="range">Range</label> <select id="range" name="range">{ranges}</select> <span class="note">what <code>$from</code> and <code>$to</code> in the query stand for (RFC 3339 text), e.g. <code>WHERE at &gt;= $from</code></span></p>
<p><button type="submit">Run</button> <span class="note">Statements that write are refused; a query runs at most 5 s.</span></p></form>"#,
        ranges = range::options(picked.name),
        base = escape(base),
        q = field(&e.q),
        x = field(&e.x),
        y = field(&e.y),
        group = field(&e.group),
    )
}

async fn results(
    app: &AppState,
    base: &str,
    db: &str,
    q: &str,
    e: &Explore,
    picked: &Picked,
) -> String {
    let rows = match api::read_query(app, db, q, &picked.range).await {
        Ok(rows) => rows,
        Err(p) => {
            return format!(
                r#"<section class="panel" id="result"><h2>Result</h2><p class="error" role="alert">{}</p></section>"#,
                escape(p.message())
            );
        }
    };
    let mut out = format!(
        r#"<section class="panel" id="result"><h2>Result</h2><p class="note"><span data-rows="{n}">{n}</span> row(s) · <a href="{base}/export.csv?db={}&amp;q={}&amp;range={}">Download CSV</a></p>"#,
        url(db),
        url(q),
        picked.name,
        n = rows.rows.len(),
        base = escape(base),
    );
    let kind = chart_kind(e.chart.as_deref());
    if kind != ChartKind::Table {
        let y: Vec<String> = blank(&e.y)
            .map(|y| {
                y.split(',')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let spec = chart::Spec {
            chart: kind,
            x: blank(&e.x),
            y,
            group: blank(&e.group),
            range: picked.span_of(q),
        };
        let drawn = if spec.x.is_none() || spec.y.is_empty() {
            Err(format!(
                "a `{}` chart needs `x` and `y`: name the columns to draw",
                kind.as_str()
            ))
        } else {
            chart::render(&spec, &rows)
        };
        match drawn {
            Ok(svg) => out.push_str(&svg),
            Err(why) => {
                let _ = write!(out, r#"<p class="error" role="alert">{}</p>"#, escape(&why));
            }
        }
    }
    let total = rows.rows.len();
    let shown = updraft_store::RowSet {
        columns: rows.columns,
        rows: rows.rows.into_iter().take(SHOWN_ROWS).collect(),
    };
    out.push_str(
        &chart::render(
            &chart::Spec {
                chart: ChartKind::Table,
                x: None,
                y: Vec::new(),
                group: None,
                range: None,
            },
            &shown,
        )
        .unwrap_or_default(),
    );
    if total > SHOWN_ROWS {
        let _ = write!(
            out,
            r#"<p class="note">The page shows the first {SHOWN_ROWS}; the CSV has all {total}.</p>"#
        );
    }
    out + "</section>"
}

/// The query's whole result as CSV (RFC 4180: a header row, fields quoted when needed).
pub(super) async fn export(PageApp(ref app): PageApp, Query(e): Query<Explore>) -> Response {
    let (Some(db), Some(q)) = (blank(&e.db), blank(&e.q)) else {
        return (
            StatusCode::BAD_REQUEST,
            "give `db` and `q`: the database and the query",
        )
            .into_response();
    };
    let picked = match Picked::named(e.range.as_deref()) {
        Ok(picked) => picked,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    match api::read_query(app, db, q, &picked.range).await {
        Ok(rows) => {
            let mut out = csv_line(rows.columns.iter().map(String::as_str));
            for row in &rows.rows {
                let cells: Vec<String> = row.iter().map(chart::label).collect();
                out.push_str(&csv_line(cells.iter().map(String::as_str)));
            }
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"query.csv\"",
                    ),
                ],
                out,
            )
                .into_response()
        }
        Err(p) => (StatusCode::BAD_REQUEST, p.message().to_owned()).into_response(),
    }
}

fn csv_line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = fields
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_owned()
            }
        })
        .collect();
    quoted.join(",") + "\r\n"
}
