//! The operator's pages: the overview, one invocation, queues with their dead letters.

use std::fmt::Write;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use serde::Deserialize;
use updraft_manifest::ChartKind;
use updraft_store::{InvocationQuery, RowSet, StoreError, Value};

use super::{HEAD, Nav, PageApp, chart, escape, html, layout, not_found};
use crate::api::{self, AppStats, FunctionInfo, Invocation};
use crate::state::{AppState, NodeState};

/// The windows the overview offers.
const WINDOWS: [&str; 4] = ["15m", "1h", "6h", "24h"];
/// Latest invocations listed on the overview.
const LATEST: u32 = 25;

#[derive(Debug, Deserialize)]
pub(super) struct OverviewQuery {
    window: Option<String>,
    /// Only this function's latest invocations.
    function: Option<String>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            r#"<!doctype html><html lang="en"><head>{HEAD}<title>Error · updraft</title></head><body><main><h1>Cannot show {}</h1><p role="alert">{}</p></main></body></html>"#,
            escape(what),
            escape(&e.to_string())
        ),
    )
}

pub(super) async fn only_app_overview(
    Extension(node): Extension<Arc<NodeState>>,
    Query(q): Query<OverviewQuery>,
) -> Response {
    match node.only_app() {
        Some(app) => overview_page(app, q).await,
        None => {
            let mut list = String::new();
            for name in node.apps.keys() {
                let _ = write!(
                    list,
                    r#"<li><a href="/_updraft/apps/{0}">{0}</a></li>"#,
                    escape(name)
                );
            }
            html(
                StatusCode::OK,
                format!(
                    r#"<!doctype html><html lang="en"><head>{HEAD}<title>Apps · updraft</title></head><body><main><h1>Apps on this node</h1><ul>{list}</ul></main></body></html>"#
                ),
            )
        }
    }
}

pub(super) async fn overview(
    PageApp(ref app): PageApp,
    Query(q): Query<OverviewQuery>,
) -> Response {
    overview_page(app, q).await
}

async fn overview_page(app: &AppState, q: OverviewQuery) -> Response {
    let window_text = q.window.clone().unwrap_or_else(|| "1h".to_owned());
    let window = match api::parse_window(Some(&window_text)) {
        Ok(w) => w,
        // The message repeats the window as given: escaped, as everything a page echoes.
        Err(why) => return html(StatusCode::BAD_REQUEST, escape(&why)),
    };
    let functions = match api::function_infos(app).await {
        Ok(f) => f,
        Err(_) => return failed("the functions", "the function list could not be read"),
    };
    let stats = match api::app_stats(app, window).await {
        Ok(s) => s,
        Err(e) => return failed("the statistics", e),
    };
    if let Some(f) = &q.function
        && !app.functions.contains_key(f)
    {
        return not_found(&format!(
            "function `{f}` does not exist in this app; the overview lists the functions"
        ));
    }
    let latest = match app
        .records
        .invocations(InvocationQuery {
            function: q.function.clone(),
            before_us: None,
            limit: LATEST,
        })
        .await
    {
        Ok(rows) => rows.into_iter().map(Invocation::from).collect::<Vec<_>>(),
        Err(e) => return failed("the latest invocations", e),
    };
    let base = format!("/_updraft/apps/{}", app.name);
    let mut body = String::new();
    body.push_str(&super::range::links(
        "Last",
        &base,
        "window",
        &WINDOWS,
        &window_text,
    ));
    body.push_str(&totals(&stats));
    body.push_str(&per_minute(&stats, &window_text, window));
    body.push_str(&function_table(&base, &functions, &stats, &window_text));
    body.push_str(&latest_table(&base, &latest, q.function.as_deref()));
    html(
        StatusCode::OK,
        layout("Overview", app, Nav::Overview, &body, None),
    )
}

fn totals(stats: &AppStats) -> String {
    let (n, errors, cold) = stats.functions.iter().fold((0, 0, 0), |(n, e, c), f| {
        (n + f.invocations, e + f.errors, c + f.cold)
    });
    let rate = if n == 0 {
        "–".to_owned()
    } else {
        format!("{:.1}%", errors as f64 * 100.0 / n as f64)
    };
    format!(
        r#"<ul class="stats"><li><b data-stat="invocations">{n}</b>invocations</li><li><b data-stat="errors">{errors}</b>errors</li><li><b>{rate}</b>error rate</li><li><b data-stat="cold">{cold}</b>cold starts</li></ul>"#
    )
}

/// The overview's charts over the window, one point per minute: invocations (ok and
/// failed), p50/p99 duration, error rate and cold starts.
fn per_minute(stats: &AppStats, window: &str, span: std::time::Duration) -> String {
    let range = Some(api::TimeRange::last(span).seconds());
    if stats.minutes.iter().all(|m| m.ok + m.failed == 0) {
        return format!(
            r#"<section class="panel"><h2>Invocations per minute, last {}</h2><p class="empty">No invocations in this window. Call a route, or send an event (`updraft events enqueue …`), and they appear here.</p></section>"#,
            escape(window)
        );
    }
    let count = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let ms = |us: Option<i64>| us.map_or(Value::Null, |us| Value::Float(us as f64 / 1e3));
    let mut out = minute_chart(
        "per-minute",
        &format!("Invocations per minute, last {window}"),
        ChartKind::Area,
        &["ok", "failed"],
        stats,
        range,
        |m| vec![count(m.ok), count(m.failed)],
    );
    out.push_str(r#"<div class="charts">"#);
    out.push_str(&minute_chart(
        "durations",
        "Duration per minute (ms)",
        ChartKind::Line,
        &["p50 ms", "p99 ms"],
        stats,
        range,
        |m| vec![ms(m.p50_us), ms(m.p99_us)],
    ));
    out.push_str(&minute_chart(
        "error-rate",
        "Error rate per minute (%)",
        ChartKind::Line,
        &["errors %"],
        stats,
        range,
        |m| {
            let n = m.ok + m.failed;
            vec![if n == 0 {
                Value::Null
            } else {
                Value::Float(m.failed as f64 * 100.0 / n as f64)
            }]
        },
    ));
    out.push_str(&minute_chart(
        "cold-starts",
        "Cold starts per minute",
        ChartKind::Area,
        &["cold starts"],
        stats,
        range,
        |m| vec![count(m.cold)],
    ));
    out.push_str("</div>");
    out
}

/// One chart of `stats`' minutes: `columns` are the series `values` gives for each.
fn minute_chart(
    id: &str,
    title: &str,
    kind: ChartKind,
    columns: &[&str],
    stats: &AppStats,
    range: Option<(f64, f64)>,
    values: impl Fn(&api::MinuteStats) -> Vec<Value>,
) -> String {
    let mut names = vec!["minute".to_owned()];
    names.extend(columns.iter().map(|c| (*c).to_owned()));
    let rows = RowSet {
        columns: names,
        rows: stats
            .minutes
            .iter()
            .map(|m| {
                let mut row = vec![Value::Text(m.minute.clone())];
                row.extend(values(m));
                row
            })
            .collect(),
    };
    let spec = chart::Spec {
        chart: kind,
        x: Some("minute"),
        y: columns.iter().map(|c| (*c).to_owned()).collect(),
        group: None,
        range,
    };
    let drawn = chart::render(&spec, &rows)
        .unwrap_or_else(|e| format!(r#"<p class="error">{}</p>"#, escape(&e)));
    format!(
        r#"<section class="panel" id="{id}"><h2>{}</h2>{drawn}</section>"#,
        escape(title)
    )
}

/// `us` microseconds as people read them.
fn duration(us: i64) -> String {
    match us {
        i64::MIN..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

fn function_table(
    base: &str,
    functions: &[FunctionInfo],
    stats: &AppStats,
    window: &str,
) -> String {
    let mut out = format!(
        r#"<section class="panel" id="functions"><h2>Functions</h2><div class="table-wrap"><table><caption class="note">Invocations over the last {window}</caption><thead><tr><th scope="col">function</th><th scope="col">triggers</th><th scope="col">may use</th><th scope="col">invocations</th><th scope="col">errors</th><th scope="col">p50</th><th scope="col">p99</th><th scope="col">cold</th></tr></thead><tbody>"#
    );
    for f in functions {
        let s = stats.functions.iter().find(|s| s.function == f.id);
        let triggers: Vec<String> = f
            .triggers
            .iter()
            .map(|t| {
                if t.summary.starts_with(&t.kind) {
                    t.summary.clone()
                } else {
                    format!("{} {}", t.kind, t.summary)
                }
            })
            .collect();
        let allowed: Vec<String> = f
            .allow
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}: {}", v.join(", ")))
            .chain(
                (!f.allowed_outbound_hosts.is_empty())
                    .then(|| format!("http: {}", f.allowed_outbound_hosts.join(", "))),
            )
            .collect();
        let (n, errors, p50, p99, cold) =
            s.map_or((0, 0, "–".to_owned(), "–".to_owned(), 0), |s| {
                (
                    s.invocations,
                    s.errors,
                    duration(s.p50_us),
                    duration(s.p99_us),
                    s.cold,
                )
            });
        let error_class = if errors > 0 { "num bad" } else { "num" };
        let _ = write!(
            out,
            r#"<tr data-function="{id}"><th scope="row"><a href="{base}?function={id}#latest">{id}</a> <span class="note">{kind}</span></th><td>{}</td><td>{}</td><td class="num">{n}</td><td class="{error_class}">{errors}</td><td class="num">{p50}</td><td class="num">{p99}</td><td class="num">{cold}</td></tr>"#,
            escape(&triggers.join("; ")),
            escape(&allowed.join("; ")),
            id = escape(&f.id),
            kind = escape(&f.kind),
            base = escape(base),
        );
    }
    out + "</tbody></table></div></section>"
}

fn latest_table(base: &str, latest: &[Invocation], function: Option<&str>) -> String {
    let heading = match function {
        Some(f) => format!(
            r#"Latest invocations of <code>{}</code> <a class="note" href="{}#latest">(all functions)</a>"#,
            escape(f),
            escape(base)
        ),
        None => "Latest invocations".to_owned(),
    };
    if latest.is_empty() {
        return format!(
            r#"<section class="panel" id="latest"><h2>{heading}</h2><p class="empty">None yet.</p></section>"#
        );
    }
    let mut out = format!(
        r#"<section class="panel" id="latest"><h2>{heading}</h2><div class="table-wrap"><table><thead><tr><th scope="col">started</th><th scope="col">function</th><th scope="col">trigger</th><th scope="col">outcome</th><th scope="col">duration</th><th scope="col">start</th></tr></thead><tbody>"#
    );
    for i in latest {
        let outcome_class = if i.outcome == "ok" { "ok" } else { "bad" };
        let _ = write!(
            out,
            r#"<tr><td><a href="{base}/invocations/{id}">{}</a></td><td>{}</td><td>{}</td><td class="{outcome_class}">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            escape(&i.started),
            escape(&i.function),
            escape(&i.trigger),
            escape(&i.outcome),
            duration(i.duration_us),
            if i.cold { "cold" } else { "warm" },
            base = escape(base),
            id = escape(&i.id),
        );
    }
    out + "</tbody></table></div></section>"
}

#[derive(Debug, Deserialize)]
pub(super) struct FindQuery {
    id: Option<String>,
}

/// The header's search box: an invocation's page by its id (as the `updraft-invocation-id`
/// response header, the logs and `updraft logs` show it).
pub(super) async fn find(PageApp(ref app): PageApp, Query(q): Query<FindQuery>) -> Response {
    let id = q.id.as_deref().map(str::trim).unwrap_or_default();
    if id.is_empty() {
        return Redirect::to(&format!("/_updraft/apps/{}", app.name)).into_response();
    }
    match app.records.invocation(id).await {
        Ok(Some(_)) => Redirect::to(&format!(
            "/_updraft/apps/{}/invocations/{}",
            app.name,
            api::url_encode(id)
        ))
        .into_response(),
        Ok(None) => not_found(&api::no_invocation(id)),
        Err(e) => failed("the invocation", e),
    }
}

pub(super) async fn invocation(
    PageApp(ref app): PageApp,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let detail = match api::invocation_detail(app, &id).await {
        Ok(Some(d)) => d,
        Ok(None) => return not_found(&api::no_invocation(&id)),
        Err(e) => return failed("the invocation", e),
    };
    let i = &detail.invocation;
    let mut body = format!(
        r#"<section class="panel"><h2>Invocation <code>{}</code></h2><dl class="fields"><dt>function</dt><dd>{}</dd><dt>trigger</dt><dd>{}</dd><dt>started</dt><dd>{}</dd><dt>outcome</dt><dd class="{}">{}</dd><dt>duration</dt><dd>{}</dd><dt>instantiation</dt><dd>{} ({})</dd>"#,
        escape(&i.id),
        escape(&i.function),
        escape(&i.trigger),
        escape(&i.started),
        if i.outcome == "ok" { "ok" } else { "bad" },
        escape(&i.outcome),
        duration(i.duration_us),
        duration(i.instantiate_us),
        if i.cold { "cold" } else { "warm" },
    );
    if let Some(r) = &i.request {
        let _ = write!(
            body,
            r#"<dt>request</dt><dd><code>{}</code></dd>"#,
            escape(r)
        );
    }
    if let Some(e) = &i.error {
        let _ = write!(body, r#"<dt>error</dt><dd class="bad">{}</dd>"#, escape(e));
    }
    body.push_str("</dl></section>");
    if detail.logs.is_empty() {
        body.push_str(r#"<section class="panel" id="logs"><h2>Logs</h2><p class="empty">It printed nothing.</p></section>"#);
    } else {
        body.push_str(r#"<section class="panel" id="logs"><h2>Logs</h2><pre class="logs">"#);
        for l in &detail.logs {
            let _ = writeln!(
                body,
                r#"<span class="{}">{} {}</span>"#,
                escape(&l.stream),
                escape(&l.time),
                escape(&l.line)
            );
        }
        body.push_str("</pre>");
        let _ = write!(
            body,
            r#"<p><a href="/_updraft/apps/{}/logs?function={}">Follow {}'s logs live</a></p></section>"#,
            escape(&api::url_encode(&app.name)),
            escape(&api::url_encode(&i.function)),
            escape(&i.function)
        );
    }
    html(
        StatusCode::OK,
        layout("Invocation", app, Nav::Overview, &body, None),
    )
}

pub(super) async fn queues(PageApp(ref app): PageApp) -> Response {
    let queues = match api::queue_infos(app).await {
        Ok(q) => q,
        Err(e) => return failed("the queues", e),
    };
    let mut body = String::new();
    if queues.is_empty() {
        body.push_str(r#"<p class="empty">The app has no queues. Declare one with <code>[queue.&lt;name&gt;]</code>; topic subscriptions and file and cron triggers have queues of their own, listed here too.</p>"#);
    } else {
        body.push_str(r#"<section class="panel"><h2>Queues</h2><div class="table-wrap"><table><thead><tr><th scope="col">queue</th><th scope="col">ready</th><th scope="col">waiting</th><th scope="col">dead letters</th><th scope="col">in flight</th><th scope="col">oldest message</th></tr></thead><tbody>"#);
        for q in &queues {
            let dead_class = if q.dead > 0 { "num bad" } else { "num" };
            let oldest = q.oldest_age_s.map_or_else(
                || "–".to_owned(),
                |s| {
                    humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
                        + " ago"
                },
            );
            let _ = write!(
                body,
                r#"<tr data-queue="{0}"><th scope="row">{0}</th><td class="num">{1}</td><td class="num">{2}</td><td class="{dead_class}">{3}</td><td class="num">{4}</td><td data-oldest="{5}">{6}</td></tr>"#,
                escape(&q.name),
                q.ready,
                q.waiting,
                q.dead,
                q.in_flight,
                q.oldest_age_s.map_or(String::new(), |s| s.to_string()),
                escape(&oldest),
            );
        }
        body.push_str("</tbody></table></div></section>");
    }
    for q in queues.iter().filter(|q| q.dead > 0) {
        let dead = match api::dead_letter_infos(app, &q.name).await {
            Ok(d) => d.unwrap_or_default(),
            Err(e) => return failed("the dead letters", e),
        };
        let action = format!("/_updraft/apps/{}/queues/{}/redrive", app.name, q.name);
        let delete = format!("/_updraft/apps/{}/queues/{}/delete", app.name, q.name);
        let _ = write!(
            body,
            r#"<section class="panel" id="dead-{name}"><h2>Dead letters of <code>{name}</code></h2><div class="actions"><form method="post" action="{action}"><button type="submit">Redrive all {n}</button></form><form method="post" action="{delete}"><button type="submit">Delete all {n}</button></form></div><div class="table-wrap"><table><thead><tr><th scope="col">event</th><th scope="col">type</th><th scope="col">data</th><th scope="col">attempts</th><th scope="col">last error</th><th scope="col">dead since</th><th scope="col"><span class="note">action</span></th></tr></thead><tbody>"#,
            name = escape(&q.name),
            action = escape(&action),
            delete = escape(&delete),
            n = dead.len(),
        );
        for d in &dead {
            let _ = write!(
                body,
                r#"<tr data-dead="{id}"><td>{event}</td><td>{ty}</td><td><code>{data}</code></td><td class="num">{attempts}</td><td class="bad">{error}</td><td>{at}</td><td><form method="post" action="{action}?id={id}"><button type="submit" aria-label="redrive {event}">Redrive</button></form><form method="post" action="{delete}?id={id}"><button type="submit" aria-label="delete {event}">Delete</button></form></td></tr>"#,
                id = escape(&d.id),
                event = escape(&d.event_id),
                ty = escape(&d.event_type),
                data = escape(&shorten(&d.data, 200)),
                attempts = d.attempts,
                error = escape(d.last_error.as_deref().unwrap_or("")),
                at = escape(&d.dead_at),
                action = escape(&action),
                delete = escape(&delete),
            );
        }
        body.push_str("</tbody></table></div></section>");
    }
    match schedules_section(app).await {
        Ok(section) => body.push_str(&section),
        Err(e) => return failed("the schedules", e),
    }
    match async_section(app).await {
        Ok(section) => body.push_str(&section),
        Err(e) => return failed("the async invocations", e),
    }
    let reload = format!("/_updraft/apps/{}/queues", app.name);
    html(
        StatusCode::OK,
        layout("Queues", app, Nav::Queues, &body, Some(&reload)),
    )
}

/// Recent runs shown per cron trigger.
const RECENT_RUNS: usize = 10;

/// Each cron trigger with its last and next run and its recent runs (their outcomes, each a
/// link to its page); nothing for an app without schedules.
async fn schedules_section(app: &AppState) -> Result<String, String> {
    let functions = api::function_infos(app)
        .await
        .map_err(|_| "the function list could not be read".to_owned())?;
    let mut rows = String::new();
    for f in &functions {
        let crons: Vec<_> = f.triggers.iter().filter(|t| t.kind == "cron").collect();
        if crons.is_empty() {
            continue;
        }
        let recent = app
            .records
            .invocations(InvocationQuery {
                function: Some(f.id.clone()),
                before_us: None,
                limit: 200,
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut runs = String::new();
        for r in recent
            .iter()
            .filter(|r| r.trigger == "cron")
            .take(RECENT_RUNS)
        {
            let class = if r.outcome == "ok" { "ok" } else { "bad" };
            let started = Invocation::from(r.clone()).started;
            let _ = write!(
                runs,
                r#"<li><a class="{class}" href="/_updraft/apps/{}/invocations/{}" title="{}">{}</a></li>"#,
                escape(&api::url_encode(&app.name)),
                escape(&api::url_encode(&r.id)),
                escape(&started),
                escape(&r.outcome),
            );
        }
        let runs = if runs.is_empty() {
            r#"<span class="note">none yet</span>"#.to_owned()
        } else {
            format!(r#"<ol class="runs">{runs}</ol>"#)
        };
        for t in crons {
            let field = |k: &str| t.details[k].as_str().unwrap_or("-").to_owned();
            let _ = write!(
                rows,
                r#"<tr data-schedule="{function}"><th scope="row">{function}</th><td><code>{schedule}</code> {tz}</td><td>{last}</td><td>{next}</td><td>{runs}</td></tr>"#,
                function = escape(&f.id),
                schedule = escape(&field("schedule")),
                tz = escape(&field("timezone")),
                last = escape(&field("last_run")),
                next = escape(&field("next_run")),
            );
        }
    }
    if rows.is_empty() {
        return Ok(String::new());
    }
    Ok(format!(
        r#"<section class="panel" id="schedules"><h2>Schedules</h2><div class="table-wrap"><table><thead><tr><th scope="col">function</th><th scope="col">schedule</th><th scope="col">last run</th><th scope="col">next run</th><th scope="col">recent runs, newest first</th></tr></thead><tbody>{rows}</tbody></table></div></section>"#
    ))
}

/// Async invocations shown on the queues page, newest first.
const ASYNC_SHOWN: u32 = 50;

/// The newest async invocations with their status; nothing for an app none of whose
/// functions takes `Prefer: respond-async`.
async fn async_section(app: &AppState) -> Result<String, StoreError> {
    if app.async_policies.is_empty() {
        return Ok(String::new());
    }
    let jobs = api::async_invocations(app, None, ASYNC_SHOWN).await?;
    let mut out = String::from(r#"<section class="panel" id="async"><h2>Async invocations</h2>"#);
    if jobs.is_empty() {
        out.push_str(r#"<p class="empty">None in the last 24 hours. Send a request with <code>Prefer: respond-async</code> to a function with <code>async = true</code>; the 202 names its id.</p></section>"#);
        return Ok(out);
    }
    let _ = write!(
        out,
        r#"<p class="note">The newest {ASYNC_SHOWN}; each outcome is kept 24 hours.</p><div class="table-wrap"><table><thead><tr><th scope="col">invocation</th><th scope="col">function</th><th scope="col">request</th><th scope="col">status</th><th scope="col">answer</th><th scope="col">accepted</th><th scope="col">finished</th></tr></thead><tbody>"#
    );
    for j in &jobs {
        let class = match j.status.as_str() {
            "succeeded" => "ok",
            "failed" => "bad",
            _ => "",
        };
        let answer = match (j.response_status, &j.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        let _ = write!(
            out,
            r#"<tr data-async="{id}"><td><a href="/_updraft/apps/{app}/invocations/{id_url}">{id}</a></td><td>{function}</td><td><code>{method} {path}</code></td><td class="{class}">{status}</td><td>{answer}</td><td>{created}</td><td>{finished}</td></tr>"#,
            id = escape(&j.invocation_id),
            app = escape(&api::url_encode(&app.name)),
            id_url = escape(&api::url_encode(&j.invocation_id)),
            function = escape(&j.function),
            method = escape(&j.method),
            path = escape(&j.path),
            status = escape(&j.status),
            answer = escape(&answer),
            created = escape(&j.created),
            finished = escape(j.finished.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table></div></section>");
    Ok(out)
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RedriveQuery {
    id: Option<String>,
}

/// The redrive and delete buttons (`/queues/<name>/redrive|delete[?id=…]`): does it, then
/// back to the queues page (303, so a reload does not post again).
pub(super) async fn dead_letters(
    PageApp(ref app): PageApp,
    Path((_, name, action)): Path<(String, String, String)>,
    Query(q): Query<RedriveQuery>,
) -> Response {
    let action = match action.as_str() {
        "redrive" => api::DeadLetterAction::Redrive,
        "delete" => api::DeadLetterAction::Delete,
        other => {
            return not_found(&format!(
                "no dead-letter action `{other}`; use redrive or delete"
            ));
        }
    };
    match api::act_on_dead_letters(app, &name, q.id, action).await {
        Ok(Some(_)) => Redirect::to(&format!("/_updraft/apps/{}/queues", app.name)).into_response(),
        Ok(None) => not_found(&format!("queue `{name}` is not declared in this app")),
        Err(e) => failed("the dead letters", e),
    }
}
