//! `[gateway]`: routes with policies, declared once by label (DESIGN §9 "Gateway").
//!
//! `[[gateway.route]]` is the long form of `[[trigger.http]]`: it adds host and header
//! matches, path rewriting, a timeout, CORS, rate limits, upstream services and weighted
//! targets. Both feed one route table (built in `updraft-triggers`, served by the gateway).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::values::{ByteSize, HumanDuration};
use crate::{Manifest, ManifestError, declared, unknown_function};

/// `[gateway]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Proxies (CIDRs or addresses) whose `x-forwarded-for` names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// One JSON line per request on stdout.
    #[serde(default)]
    pub access_log: bool,
    /// `[gateway.auth.<label>]`: how routes that name it authenticate callers.
    #[serde(default)]
    pub auth: BTreeMap<String, AuthDecl>,
    /// `[gateway.limit.<label>]`: rate limits routes name.
    #[serde(default)]
    pub limit: BTreeMap<String, LimitDecl>,
    /// `[gateway.cors.<label>]`: CORS policies routes name.
    #[serde(default)]
    pub cors: BTreeMap<String, CorsDecl>,
    /// `[gateway.upstream.<label>]`: services with several instances and a health check.
    #[serde(default)]
    pub upstream: BTreeMap<String, UpstreamDecl>,
    /// `[[gateway.route]]`, in manifest order.
    #[serde(default)]
    pub route: Vec<GatewayRoute>,
}

/// `[gateway.auth.<label>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthDecl {
    /// How callers prove who they are.
    #[serde(rename = "type")]
    pub kind: AuthKind,
    /// JWT: the keys, a JWKS file (relative to the app) or an https URL.
    #[serde(default)]
    pub jwks: Option<String>,
    /// JWT: the `iss` a token must carry.
    #[serde(default)]
    pub issuer: Option<String>,
    /// JWT: an `aud` a token must carry.
    #[serde(default)]
    pub audience: Option<String>,
    /// JWT: the algorithms accepted (default RS256 and ES256).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// JWT: clock leeway for `exp` and `nbf` (default 60s).
    #[serde(default)]
    pub leeway: Option<HumanDuration>,
    /// JWT: claims a token must have besides `exp` (`["sub", "email"]`).
    #[serde(default)]
    pub required_claims: Vec<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned()]
}

/// Signature algorithms a JWT label may accept.
pub const JWT_ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// The kinds of `[gateway.auth.<label>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuthKind {
    /// Keys made by `updraft keys create`, sent as `x-api-key` or `Authorization: Bearer`.
    #[serde(rename = "api-key")]
    ApiKey,
    /// Bearer JWTs checked against a JWKS.
    #[serde(rename = "jwt")]
    Jwt,
}

/// `[gateway.limit.<label>]`: a GCRA rate limit (per node), a daily quota (in the state
/// store, so shared by the nodes that share it), or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitDecl {
    /// `"<count>/<s|m|h>"`, like `"100/s"`.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// `"<count>/day"`: requests per UTC day.
    #[serde(default)]
    pub quota: Option<DailyQuota>,
    /// Requests that may arrive at once (default: one second's worth, at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
    /// What a limit counts: each client IP, or the route as a whole.
    #[serde(default)]
    pub by: LimitBy,
}

/// What one rate limit counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    /// Each client IP address (after `trusted_proxies`).
    #[default]
    Ip,
    /// Each API key (the route must have `auth`).
    Key,
    /// Every request of the route together.
    Route,
}

/// A rate: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many.
    pub count: u32,
    /// In how long.
    pub per: std::time::Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{s}` is not a rate; write `<count>/s`, `<count>/m` or `<count>/h`, like \"100/s\""
            )
        };
        let (count, unit) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!(
                "`{s}` allows nothing; the count must be at least 1"
            ));
        }
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            _ => return Err(bad()),
        };
        Ok(Self {
            count,
            per: std::time::Duration::from_secs(secs),
        })
    }
}

/// A daily quota: `count` requests per UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyQuota {
    /// How many.
    pub count: u64,
}

impl std::str::FromStr for DailyQuota {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a quota; write `<count>/day`, like \"10000/day\"");
        let (count, unit) = s.split_once('/').ok_or_else(bad)?;
        if !matches!(unit.trim(), "day" | "d") {
            return Err(bad());
        }
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!(
                "`{s}` allows nothing; the count must be at least 1"
            ));
        }
        Ok(Self { count })
    }
}

impl<'de> Deserialize<'de> for DailyQuota {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[gateway.cors.<label>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsDecl {
    /// Origins allowed (`https://shop.example.com`), or `["*"]` for any (without credentials).
    pub origins: Vec<String>,
    /// Methods a preflight allows (default: the route's methods, else the usual ones).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Request headers a preflight allows (default: `content-type`, `authorization`).
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    /// Response headers the browser may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Whether cookies and `Authorization` may be sent (only with listed origins).
    #[serde(default)]
    pub credentials: bool,
    /// How long a browser may cache a preflight answer.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}

/// `[gateway.upstream.<label>]`: instances of one HTTP service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDecl {
    /// Base URLs of its instances (`http://127.0.0.1:9000`), used round robin.
    pub urls: Vec<String>,
    /// A path answered `2xx` by a healthy instance; checked every `health_interval`.
    #[serde(default)]
    pub health: Option<String>,
    /// How often to check (default 5s).
    #[serde(default)]
    pub health_interval: Option<HumanDuration>,
}

/// `[[gateway.route]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRoute {
    /// A name for messages and metrics (default: the route pattern).
    #[serde(default)]
    pub name: Option<String>,
    /// `/literal/:param/...`
    pub route: String,
    /// Methods it answers; all when absent.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// `api.example.com` or `*.example.com`; any host when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// Headers the request must carry with exactly these values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `[gateway.auth.<label>]`s; any one of them lets a request in.
    #[serde(default)]
    pub auth: Vec<String>,
    /// A `[gateway.limit.<label>]`.
    #[serde(default)]
    pub limit: Option<String>,
    /// A `[gateway.cors.<label>]`.
    #[serde(default)]
    pub cors: Option<String>,
    /// How the path changes before the target sees it.
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
    /// The longest the target may take to answer (504 after).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// At most this many requests at once (503 + `Retry-After` beyond).
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// Compress answers with gzip or Brotli when the client accepts it (`Accept-Encoding`);
    /// event streams, images and bodies already encoded or under 32 bytes are left as they are.
    #[serde(default)]
    pub compress: bool,
    /// The largest request body this route takes (`413` beyond), instead of the node's
    /// `--max-body`; it holds for every target, upstreams included.
    #[serde(default)]
    pub max_body: Option<ByteSize>,
    /// The most bytes a request's headers may take (`431` beyond); the listener's 64 KiB
    /// holds for every route.
    #[serde(default)]
    pub max_headers: Option<ByteSize>,
    /// A JSON Schema file (relative to the app) the request body must match (400 naming
    /// the failing field otherwise).
    #[serde(default)]
    pub body_schema: Option<PathBuf>,
    /// A JSON Schema file the query string, read as an object of its parameters, must match.
    #[serde(default)]
    pub query_schema: Option<PathBuf>,
    /// One target: a function,
    #[serde(default)]
    pub function: Option<String>,
    /// … an upstream (a URL, or a `[gateway.upstream.<label>]`),
    #[serde(default)]
    pub upstream: Option<String>,
    /// … or a folder of static files.
    #[serde(default, rename = "static")]
    pub static_dir: Option<PathBuf>,
    /// Several targets with weights (a canary).
    #[serde(default)]
    pub targets: Vec<WeightedTarget>,
    /// Keep a client on the target it first got.
    #[serde(default)]
    pub sticky: Option<Sticky>,
}

/// `rewrite = { strip_prefix = "/v2", add_prefix = "/api" }`: strip, then add.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Removed from the start of the path when there.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Put in front of the path.
    #[serde(default)]
    pub add_prefix: Option<String>,
}

/// One of a route's `targets`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedTarget {
    /// A function,
    #[serde(default)]
    pub function: Option<String>,
    /// … an upstream,
    #[serde(default)]
    pub upstream: Option<String>,
    /// … or a static folder.
    #[serde(default, rename = "static")]
    pub static_dir: Option<PathBuf>,
    /// Its share of requests, relative to the others.
    pub weight: u32,
}

/// `sticky = { cookie = "canary" }` or `{ header = "x-user" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    /// A cookie the gateway sets to the chosen target and reads back.
    #[serde(default)]
    pub cookie: Option<String>,
    /// A request header whose value picks the target (the same value, the same target).
    #[serde(default)]
    pub header: Option<String>,
}

/// What serves a route, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetDecl {
    /// A function, by id.
    Function(String),
    /// An upstream: a URL or a `[gateway.upstream.<label>]`.
    Upstream(String),
    /// A folder of static files, as written.
    Static(PathBuf),
}

impl GatewayRoute {
    /// The name messages and metrics use.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.route)
    }

    /// The route's targets with their weights (one target has weight 1).
    pub fn weighted_targets(&self) -> Vec<(TargetDecl, u32)> {
        match one_target(&self.function, &self.upstream, &self.static_dir) {
            Ok(Some(t)) => vec![(t, 1)],
            _ => self
                .targets
                .iter()
                .filter_map(|t| {
                    Some((
                        one_target(&t.function, &t.upstream, &t.static_dir).ok()??,
                        t.weight,
                    ))
                })
                .collect(),
        }
    }
}

/// The single target among the three keys; `Err` when more than one is set.
fn one_target(
    function: &Option<String>,
    upstream: &Option<String>,
    static_dir: &Option<PathBuf>,
) -> Result<Option<TargetDecl>, ()> {
    match (function, upstream, static_dir) {
        (Some(f), None, None) => Ok(Some(TargetDecl::Function(f.clone()))),
        (None, Some(u), None) => Ok(Some(TargetDecl::Upstream(u.clone()))),
        (None, None, Some(d)) => Ok(Some(TargetDecl::Static(d.clone()))),
        (None, None, None) => Ok(None),
        _ => Err(()),
    }
}

/// Whether an upstream is written as a URL (else it names a `[gateway.upstream.<label>]`).
pub fn is_upstream_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Checks what parsing cannot: labels exist, targets are one of each kind, URLs parse.
pub(crate) fn validate(m: &Manifest) -> Result<(), ManifestError> {
    let g = &m.gateway;
    for (i, proxy) in g.trusted_proxies.iter().enumerate() {
        if parse_cidr(proxy).is_none() {
            return Err(ManifestError::invalid(
                format!("gateway.trusted_proxies[{i}]"),
                format!(
                    "`{proxy}` is not an address or CIDR; write \"127.0.0.1/32\" or \"10.0.0.0/8\""
                ),
            ));
        }
    }
    for (label, auth) in &g.auth {
        let key = |k: &str| format!("gateway.auth.{label}.{k}");
        match auth.kind {
            AuthKind::Jwt => {
                match auth.jwks.as_deref() {
                    None => {
                        return Err(ManifestError::invalid(
                            key("jwks"),
                            "a `jwt` auth needs `jwks`: a JWKS file in the app, or an https URL",
                        ));
                    }
                    Some(url) if url.starts_with("http://") => {
                        return Err(ManifestError::invalid(
                            key("jwks"),
                            format!("`{url}` is plain http; fetch keys over https"),
                        ));
                    }
                    Some(_) => {}
                }
                if auth.algorithms.is_empty() {
                    return Err(ManifestError::invalid(
                        key("algorithms"),
                        "list at least one algorithm, like [\"RS256\"]",
                    ));
                }
                for a in &auth.algorithms {
                    if !JWT_ALGORITHMS.contains(&a.as_str()) {
                        return Err(ManifestError::invalid(
                            key("algorithms"),
                            format!(
                                "`{a}` is not an algorithm; use {}",
                                JWT_ALGORITHMS.join(", ")
                            ),
                        ));
                    }
                }
            }
            AuthKind::ApiKey => {
                if auth.jwks.is_some() || auth.issuer.is_some() || auth.audience.is_some() {
                    return Err(ManifestError::invalid(
                        format!("gateway.auth.{label}"),
                        "`jwks`, `issuer` and `audience` are for `type = \"jwt\"`; an `api-key` auth takes none",
                    ));
                }
            }
        }
    }
    for (label, limit) in &g.limit {
        if limit.rate.is_none() && limit.quota.is_none() {
            return Err(ManifestError::invalid(
                format!("gateway.limit.{label}"),
                "a limit needs `rate = \"<count>/s\"`, `quota = \"<count>/day\"` or both",
            ));
        }
        if limit.rate.is_none() && limit.burst.is_some() {
            return Err(ManifestError::invalid(
                format!("gateway.limit.{label}.burst"),
                "`burst` goes with a `rate`; a `quota` alone has none",
            ));
        }
    }
    for (label, cors) in &g.cors {
        let key = |k: &str| format!("gateway.cors.{label}.{k}");
        if cors.origins.is_empty() {
            return Err(ManifestError::invalid(
                key("origins"),
                "list at least one origin, like \"https://shop.example.com\"",
            ));
        }
        for o in &cors.origins {
            if o == "*" {
                if cors.credentials {
                    return Err(ManifestError::invalid(
                        key("origins"),
                        "`*` cannot go with `credentials = true`; list the origins that may send credentials",
                    ));
                }
            } else if !(is_upstream_url(o)
                && http::Uri::try_from(o.as_str())
                    .is_ok_and(|u| u.path() == "/" && !o.ends_with('/')))
            {
                return Err(ManifestError::invalid(
                    key("origins"),
                    format!(
                        "`{o}` is not an origin; write scheme and host (and port), like \"https://shop.example.com\", without a path"
                    ),
                ));
            }
        }
    }
    for (label, up) in &g.upstream {
        let key = |k: &str| format!("gateway.upstream.{label}.{k}");
        if up.urls.is_empty() {
            return Err(ManifestError::invalid(
                key("urls"),
                "list at least one instance, like \"http://127.0.0.1:9000\"",
            ));
        }
        for u in &up.urls {
            check_upstream_url(&key("urls"), u)?;
        }
        if let Some(h) = &up.health
            && !h.starts_with('/')
        {
            return Err(ManifestError::invalid(
                key("health"),
                format!("`{h}` is not a path; write one like \"/healthz\""),
            ));
        }
    }
    for (i, r) in g.route.iter().enumerate() {
        route(m, i, r)?;
    }
    Ok(())
}

fn route(m: &Manifest, i: usize, r: &GatewayRoute) -> Result<(), ManifestError> {
    let g = &m.gateway;
    let key = |k: &str| format!("gateway.route[{i}].{k}");
    if let Some(limit) = &r.limit
        && !g.limit.contains_key(limit)
    {
        return Err(ManifestError::invalid(
            key("limit"),
            format!(
                "limit `{limit}` is not declared; add a `[gateway.limit.{limit}]` table{}",
                declared(g.limit.keys())
            ),
        ));
    }
    for (j, label) in r.auth.iter().enumerate() {
        if !g.auth.contains_key(label) {
            return Err(ManifestError::invalid(
                format!("gateway.route[{i}].auth[{j}]"),
                format!(
                    "auth `{label}` is not declared; add a `[gateway.auth.{label}]` table{}",
                    declared(g.auth.keys())
                ),
            ));
        }
    }
    if let Some(limit) = r.limit.as_ref().and_then(|l| g.limit.get(l))
        && limit.by == LimitBy::Key
        && r.auth.is_empty()
    {
        return Err(ManifestError::invalid(
            key("limit"),
            "a limit `by = \"key\"` counts API keys, and this route takes none; add `auth = [\"<label>\"]` or limit `by = \"ip\"`",
        ));
    }
    if let Some(cors) = &r.cors
        && !g.cors.contains_key(cors)
    {
        return Err(ManifestError::invalid(
            key("cors"),
            format!(
                "CORS policy `{cors}` is not declared; add a `[gateway.cors.{cors}]` table{}",
                declared(g.cors.keys())
            ),
        ));
    }
    if r.max_in_flight == Some(0) {
        return Err(ManifestError::invalid(
            key("max_in_flight"),
            "0 admits nothing; give at least 1, or drop the key for no cap",
        ));
    }
    if let Some(rw) = &r.rewrite {
        for (k, p) in [
            ("rewrite.strip_prefix", &rw.strip_prefix),
            ("rewrite.add_prefix", &rw.add_prefix),
        ] {
            if let Some(p) = p
                && (!p.starts_with('/') || p.len() < 2 || p.ends_with('/'))
            {
                return Err(ManifestError::invalid(
                    key(k),
                    format!(
                        "`{p}` is not a prefix; write one like \"/v2\" (a leading `/`, no trailing one)"
                    ),
                ));
            }
        }
    }
    for name in r.headers.keys() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ManifestError::invalid(
                key("headers"),
                format!("`{name}` is not a header name"),
            ));
        }
    }
    let single = one_target(&r.function, &r.upstream, &r.static_dir).map_err(|()| {
        ManifestError::invalid(format!("gateway.route[{i}]"), "a route has one of `function`, `upstream` or `static`, or several `targets`; it has more than one")
    })?;
    match (single, r.targets.is_empty()) {
        (Some(_), false) => {
            return Err(ManifestError::invalid(
                key("targets"),
                "a route has either one target (`function`, `upstream` or `static`) or `targets`, not both",
            ));
        }
        (None, true) => {
            return Err(ManifestError::invalid(
                format!("gateway.route[{i}]"),
                "the route has no target; add `function = \"<id>\"`, `upstream = \"http://…\"`, `static = \"dir\"` or `targets = [...]`",
            ));
        }
        (Some(t), true) => target(m, &key(""), &t)?,
        (None, false) => {
            for (j, t) in r.targets.iter().enumerate() {
                let at = format!("gateway.route[{i}].targets[{j}]");
                match one_target(&t.function, &t.upstream, &t.static_dir) {
                    Ok(Some(decl)) => target(m, &format!("{at}."), &decl)?,
                    _ => {
                        return Err(ManifestError::invalid(
                            at,
                            "a target has exactly one of `function`, `upstream` or `static`",
                        ));
                    }
                }
            }
            if r.targets.iter().all(|t| t.weight == 0) {
                return Err(ManifestError::invalid(
                    key("targets"),
                    "every weight is 0; give at least one target a weight above 0",
                ));
            }
        }
    }
    if let Some(s) = &r.sticky {
        match (&s.cookie, &s.header) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(ManifestError::invalid(
                    key("sticky"),
                    "write `sticky = { cookie = \"name\" }` or `sticky = { header = \"name\" }`",
                ));
            }
        }
        if r.targets.is_empty() {
            return Err(ManifestError::invalid(
                key("sticky"),
                "`sticky` keeps a client on one of several `targets`; this route has one target",
            ));
        }
    }
    Ok(())
}

/// `prefix` ends in `.` (`gateway.route[0].`), so the key is the target's own.
fn target(m: &Manifest, prefix: &str, t: &TargetDecl) -> Result<(), ManifestError> {
    match t {
        TargetDecl::Function(f) if !m.function.contains_key(f) => {
            Err(unknown_function(m, format!("{prefix}function"), f))
        }
        TargetDecl::Upstream(u) if is_upstream_url(u) => {
            check_upstream_url(&format!("{prefix}upstream"), u)
        }
        TargetDecl::Upstream(label) if !m.gateway.upstream.contains_key(label) => {
            Err(ManifestError::invalid(
                format!("{prefix}upstream"),
                format!(
                    "`{label}` is neither a URL nor a declared upstream; write \"http://host:port\" or declare `[gateway.upstream.{label}]`{}",
                    declared(m.gateway.upstream.keys())
                ),
            ))
        }
        _ => Ok(()),
    }
}

fn check_upstream_url(key: &str, u: &str) -> Result<(), ManifestError> {
    match http::Uri::try_from(u) {
        Ok(uri) if is_upstream_url(u) && uri.host().is_some() && uri.query().is_none() => Ok(()),
        _ => Err(ManifestError::invalid(
            key,
            format!(
                "`{u}` is not an upstream URL; write \"http://host:port\" with an optional base path"
            ),
        )),
    }
}

/// `10.0.0.0/8` or a single address, as (network, prefix length).
pub fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<std::net::IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = s.parse::<std::net::IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}
