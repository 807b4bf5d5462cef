//! The bucket browser: an app's buckets, their objects by prefix (a page at a time, with
//! the folders of that page), each object's metadata and a download link (the admin API's
//! object endpoint).

use std::collections::BTreeSet;
use std::fmt::Write;

use axum::extract::{Path, Query};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use super::{Nav, PageApp, escape, html, layout, not_found};
use crate::api::{self, url_encode as url};

/// Objects per page.
const PAGE: u32 = 200;

pub(super) async fn list(PageApp(ref app): PageApp) -> Response {
    let mut body = String::new();
    if app.buckets.is_empty() {
        body.push_str(r#"<p class="empty">The app declares no buckets. Add one with <code>[bucket.&lt;name&gt;]</code>.</p>"#);
    } else {
        body.push_str(r#"<section class="panel"><h2>Buckets</h2><ul>"#);
        for name in app.buckets.keys() {
            let _ = write!(
                body,
                r#"<li><a href="/_updraft/apps/{}/buckets/{}">{}</a></li>"#,
                url(&app.name),
                url(name),
                escape(name)
            );
        }
        body.push_str("</ul></section>");
    }
    html(
        StatusCode::OK,
        layout("Buckets", app, Nav::Buckets, &body, None),
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct Browse {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
}

pub(super) async fn browse(
    PageApp(ref app): PageApp,
    Path((_, bucket)): Path<(String, String)>,
    Query(b): Query<Browse>,
) -> Response {
    let page =
        match api::object_page(app, &bucket, &b.prefix, b.cursor.as_deref(), Some(PAGE)).await {
            Ok(Some(page)) => page,
            Ok(None) => {
                return not_found(&format!(
                    "bucket `{bucket}` is not declared in this app; the buckets page lists them"
                ));
            }
            Err(e) => return html(StatusCode::BAD_REQUEST, escape(&e.to_string())),
        };
    let here = format!("/_updraft/apps/{}/buckets/{}", url(&app.name), url(&bucket));
    let mut body = format!(
        r#"<nav class="crumbs" aria-label="prefix"><a href="{here}">{}</a>"#,
        escape(&bucket)
    );
    let mut walked = String::new();
    for part in b.prefix.split_inclusive('/') {
        walked.push_str(part);
        let _ = write!(
            body,
            r#" / <a href="{here}?prefix={}">{}</a>"#,
            url(&walked),
            escape(part.trim_end_matches('/'))
        );
    }
    body.push_str("</nav>");
    // The folders of this page, then its objects at this level.
    let mut folders = BTreeSet::new();
    let mut files = Vec::new();
    for o in &page.objects {
        let rest = &o.name[b.prefix.len().min(o.name.len())..];
        match rest.find('/') {
            Some(i) => {
                folders.insert(format!("{}{}", b.prefix, &rest[..=i]));
            }
            None => files.push(o),
        }
    }
    if page.objects.is_empty() {
        body.push_str(r#"<p class="empty">No objects here. Put one with <code>updraft blob put</code>, or copy a file into the bucket's folder.</p>"#);
    }
    body.push_str(r#"<section class="panel"><div class="table-wrap"><table><thead><tr><th scope="col">name</th><th scope="col">size</th><th scope="col">modified</th><th scope="col">type</th><th scope="col">etag</th></tr></thead><tbody>"#);
    for f in &folders {
        let _ = write!(
            body,
            r#"<tr><td><a href="{here}?prefix={}">{}</a></td><td colspan="4" class="note">folder</td></tr>"#,
            url(f),
            escape(f)
        );
    }
    for o in files {
        let _ = write!(
            body,
            r#"<tr data-object="{name}"><td><a href="/_updraft/api/v1/apps/{}/buckets/{}/objects/{}" download>{name}</a></td><td class="num">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>"#,
            url(&app.name),
            url(&bucket),
            url(&o.name),
            o.size,
            escape(&o.modified),
            escape(o.content_type.as_deref().unwrap_or("")),
            escape(&o.etag),
            name = escape(&o.name),
        );
    }
    body.push_str("</tbody></table></div>");
    if let Some(cursor) = &page.cursor {
        let _ = write!(
            body,
            r#"<p><a href="{here}?prefix={}&amp;cursor={}">Next {PAGE} objects</a></p>"#,
            url(&b.prefix),
            url(cursor)
        );
    }
    body.push_str("</section>");
    html(
        StatusCode::OK,
        layout(&format!("Bucket {bucket}"), app, Nav::Buckets, &body, None),
    )
}
