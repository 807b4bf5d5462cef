//! The streams page: each stream's partitions (events kept, bytes) and each consumer's lag
//! per partition, with its dead letters, from the same function the admin API's
//! `GET /streams` uses.

use std::fmt::Write;

use axum::response::Response;
use http::StatusCode;

use super::{Nav, PageApp, escape, html, layout};
use crate::api;

pub(super) async fn page(PageApp(ref app): PageApp) -> Response {
    let mut body = String::new();
    if app.streams.is_empty() {
        body.push_str(r#"<p class="empty">The app declares no streams. Add one with <code>[stream.&lt;name&gt;]</code>.</p>"#);
    }
    for stream in app.streams.values() {
        let info = match api::stream_info(stream).await {
            Ok(info) => info,
            Err(e) => {
                let _ = write!(
                    body,
                    r#"<section class="panel"><h2>{}</h2><p class="error">cannot read the stream: {}</p></section>"#,
                    escape(&stream.name),
                    escape(&e.to_string())
                );
                continue;
            }
        };
        let _ = write!(
            body,
            r#"<section class="panel"><h2>Stream <code>{}</code></h2><p>{} partitions · {} events kept · {} bytes</p>"#,
            escape(&info.name),
            info.partitions,
            info.events,
            info.bytes
        );
        if info.consumers.is_empty() {
            body.push_str(r#"<p class="empty">No consumer has started yet.</p>"#);
        }
        for c in &info.consumers {
            let _ = write!(
                body,
                r#"<h3>Consumer <code>{}</code>: lag {} · {} dead letters</h3><table><thead><tr><th scope="col">partition</th><th scope="col">next offset</th><th scope="col">end</th><th scope="col">lag</th></tr></thead><tbody>"#,
                escape(&c.name),
                c.lag,
                c.dead_letters
            );
            for p in &c.partitions {
                let end = info
                    .partition_states
                    .iter()
                    .find(|s| s.partition == p.partition)
                    .map_or(0, |s| s.next);
                let _ = write!(
                    body,
                    r#"<tr><td>{}</td><td>{}</td><td>{end}</td><td data-lag="{}">{}</td></tr>"#,
                    p.partition, p.next, p.lag, p.lag
                );
            }
            body.push_str("</tbody></table>");
        }
        body.push_str("</section>");
    }
    let reload = format!("/_updraft/apps/{}/streams", app.name);
    html(
        StatusCode::OK,
        layout("Streams", app, Nav::Streams, &body, Some(&reload)),
    )
}
