//! Signing in to the dashboard where the admin API needs a token: a form takes the token
//! once and sets the session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` under TLS,
//! path `/_updraft`, 12 hours), which the pages and the API then accept as the token.

use std::sync::Arc;

use axum::extract::Query;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;

use super::{HEAD, STYLE, escape, html};
use crate::admin_token;
use crate::state::NodeState;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "updraft_session";

#[derive(Debug, Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Login {
    token: String,
    next: Option<String>,
}

/// Where to go after signing in: a dashboard path, never another site.
fn next_page(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/_updraft/") && !n.starts_with("/_updraft//") => n,
        _ => "/_updraft/",
    }
}

fn form(status: StatusCode, next: &str, problem: Option<&str>) -> Response {
    let problem = problem.map_or(String::new(), |p| {
        format!(r#"<p class="error" role="alert">{}</p>"#, escape(p))
    });
    html(
        status,
        format!(
            r#"<!doctype html>
<html lang="en"><head>{HEAD}
<title>Sign in · updraft</title><style>{STYLE}</style></head>
<body><main><h1>Sign in to updraft</h1>{problem}
<form method="post" action="/_updraft/login"><p><label for="token">Admin token</label><br>
<input id="token" name="token" type="password" autocomplete="current-password" required size="40"></p>
<input type="hidden" name="next" value="{next}"><p><button type="submit">Sign in</button></p></form>
<p class="note">The token is in <code>.updraft/admin-token</code> beside the app (or <code>UPDRAFT_ADMIN_TOKEN</code>); <code>updraft up</code> prints it when it makes one.</p>
</main></body></html>"#,
            next = escape(next),
        ),
    )
}

pub(super) async fn page(Query(q): Query<Next>) -> Response {
    form(StatusCode::OK, next_page(q.next.as_deref()), None)
}

pub(super) async fn sign_in(
    Extension(node): Extension<Arc<NodeState>>,
    Form(login): Form<Login>,
) -> Response {
    let next = next_page(login.next.as_deref()).to_owned();
    let Some(token) = &node.admin_token else {
        // No token on loopback under `up`: nothing to sign in to.
        return Redirect::to(&next).into_response();
    };
    if !admin_token::matches(login.token.trim(), token) {
        return form(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That is not this node's admin token."),
        );
    }
    let secure = if node.apps.values().any(|a| a.https) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; Path=/_updraft; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        admin_token::session(token, now_s()),
        admin_token::SESSION_LIFETIME.as_secs()
    );
    with_cookie(Redirect::to(&next).into_response(), &cookie)
}

pub(super) async fn sign_out() -> Response {
    let cookie = format!("{COOKIE}=; Path=/_updraft; HttpOnly; SameSite=Strict; Max-Age=0");
    with_cookie(Redirect::to("/_updraft/login").into_response(), &cookie)
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

pub(crate) fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether the request's session cookie was made with `token` and is still good.
pub(crate) fn has_session(headers: &http::HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(|value| admin_token::session_valid(token, value, now_s()))
}
