//! Functions and routes: what each function is and what runs it, and invoking one.

use std::collections::BTreeMap;

use updraft_triggers::{RouteSpec, RouteTarget};

use super::*;

/// One route of the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteInfo {
    /// Methods it answers (`["*"]` for all).
    pub methods: Vec<String>,
    /// The pattern.
    pub route: String,
    /// A `[[gateway.route]]`'s name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The host it answers for (`api.example.com`, `*.example.com`); any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Headers a request must carry with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The function that answers, if any.
    pub function: Option<String>,
    /// The static folder that answers, if any.
    pub static_dir: Option<String>,
    /// The upstream service that answers (a URL or a `[gateway.upstream.<label>]`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The app's dashboard page answers (`[dashboard] route`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dashboard: bool,
    /// The stream an `[[ingest.http]]` route stores its events in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// A split route's targets with their weights (empty for one target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<RouteTargetInfo>,
    /// The policies in front of it (`cors:spa`, `limit:per-ip`, `timeout:5s`, `rewrite`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
}

/// One of a split route's targets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteTargetInfo {
    /// `function:<id>`, `upstream:<url or label>` or `static:<dir>`.
    pub target: String,
    /// Its share, relative to the others.
    pub weight: u32,
}

impl RouteInfo {
    /// What the API says about a route of the app's table.
    pub(crate) fn of(route: &updraft_gateway::Route<RouteSpec>) -> Self {
        let spec = &route.target;
        let single = match spec.targets.as_slice() {
            [(t, _)] => Some(t),
            _ => None,
        };
        let gateway = spec.gateway.as_deref();
        let mut policies = Vec::new();
        if let Some(g) = gateway {
            policies.extend(g.cors.iter().map(|c| format!("cors:{c}")));
            policies.extend(g.limit.iter().map(|l| format!("limit:{l}")));
            policies.extend(
                g.timeout
                    .map(|t| format!("timeout:{}", humantime::format_duration(t.0))),
            );
            policies.extend(g.max_in_flight.map(|n| format!("max_in_flight:{n}")));
            policies.extend(g.rewrite.as_ref().map(|_| "rewrite".to_owned()));
            policies.extend(g.compress.then(|| "compress".to_owned()));
            policies.extend(g.max_body.map(|b| format!("max_body:{}", b.0)));
            policies.extend(g.max_headers.map(|b| format!("max_headers:{}", b.0)));
            policies.extend(
                g.body_schema
                    .as_ref()
                    .map(|f| format!("body_schema:{}", f.display())),
            );
            policies.extend(
                g.query_schema
                    .as_ref()
                    .map(|f| format!("query_schema:{}", f.display())),
            );
            policies.extend(g.sticky.as_ref().map(|_| "sticky".to_owned()));
        }
        Self {
            methods: route.methods.as_ref().map_or_else(
                || vec!["*".to_owned()],
                |m| m.iter().map(|m| m.as_str().to_owned()).collect(),
            ),
            route: route.pattern.as_str().to_owned(),
            name: gateway.and_then(|g| g.name.clone()),
            host: route.host.as_ref().map(|h| h.as_text()),
            headers: route
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect(),
            function: match single {
                Some(RouteTarget::Function(f)) => Some(f.clone()),
                _ => None,
            },
            static_dir: match single {
                Some(RouteTarget::Static(dir)) => Some(dir.display().to_string()),
                _ => None,
            },
            upstream: match single {
                Some(RouteTarget::Upstream(u)) => Some(u.clone()),
                _ => None,
            },
            dashboard: matches!(single, Some(RouteTarget::Dashboard)),
            stream: match single {
                Some(RouteTarget::Ingest { stream, .. }) => Some(stream.clone()),
                _ => None,
            },
            targets: if single.is_some() {
                Vec::new()
            } else {
                spec.targets
                    .iter()
                    .map(|(t, weight)| RouteTargetInfo {
                        target: target_label(t),
                        weight: *weight,
                    })
                    .collect()
            },
            policies,
        }
    }

    /// Whether `function` answers this route, alone or as one of its targets.
    pub fn serves(&self, function: &str) -> bool {
        self.function.as_deref() == Some(function)
            || self
                .targets
                .iter()
                .any(|t| t.target.strip_prefix("function:") == Some(function))
    }

    /// What answers, in a few words (`function `a``, `90% function `a`, 10% …`).
    pub fn describe_target(&self) -> String {
        if let Some(f) = &self.function {
            return format!("function `{f}`");
        }
        if let Some(dir) = &self.static_dir {
            return format!("static `{dir}`");
        }
        if let Some(u) = &self.upstream {
            return format!("upstream `{u}`");
        }
        if self.dashboard {
            return "the app's dashboard".to_owned();
        }
        if let Some(stream) = &self.stream {
            return format!("ingest into stream `{stream}`");
        }
        let total: u32 = self.targets.iter().map(|t| t.weight).sum::<u32>().max(1);
        self.targets
            .iter()
            .map(|t| format!("{}% {}", t.weight * 100 / total, t.target))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `function:<id>`, `upstream:<name>`, `static:<dir>`.
pub(crate) fn target_label(t: &RouteTarget) -> String {
    match t {
        RouteTarget::Function(f) => format!("function:{f}"),
        RouteTarget::Upstream(u) => format!("upstream:{u}"),
        RouteTarget::Static(dir) => format!("static:{}", dir.display()),
        RouteTarget::Dashboard => "dashboard".to_owned(),
        RouteTarget::Ingest { stream, .. } => format!("stream:{stream}"),
    }
}

/// The app's routes, most specific first.
fn route_infos(app: &AppState) -> Vec<RouteInfo> {
    app.router
        .routes()
        .iter()
        .map(|r| r.target.info.clone())
        .collect()
}

/// One function.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionInfo {
    /// Its id.
    pub id: String,
    /// `http` (exports `wasi:http/incoming-handler`) or `event` (exports
    /// `updraft:platform/event-handler`).
    pub kind: String,
    /// The component file.
    pub source: String,
    /// Wall-clock limit per invocation, in milliseconds.
    pub timeout_ms: u64,
    /// Memory cap per instance, in bytes.
    pub memory_bytes: u64,
    /// Instances at once.
    pub max_concurrency: u32,
    /// Requests one instance may serve (1: a fresh instance per request).
    pub reuse: u32,
    /// Its allow-lists, by manifest key (`kv`, `sql`, `enqueue`, `publish`, …): the
    /// resources it may reach.
    #[serde(flatten)]
    pub allow: BTreeMap<String, Vec<String>>,
    /// Where it may send HTTP requests.
    pub allowed_outbound_hosts: Vec<String>,
    /// The routes it serves.
    pub routes: Vec<RouteInfo>,
    /// Every trigger that runs it: its routes, queues, topic subscriptions and cron
    /// schedules (with their last and next run).
    #[serde(default)]
    pub triggers: Vec<TriggerInfo>,
}

/// What the API says about function `id`; `Ok(None)` when there is none.
pub(crate) async fn function_info(
    state: &AppState,
    id: &str,
) -> Result<Option<FunctionInfo>, Response> {
    let Some(f) = state.functions.get(id) else {
        return Ok(None);
    };
    let node = InfoContext {
        schedules: &*state.schedules,
    };
    let triggers = state
        .triggers
        .info_for(id, &node)
        .await
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    let spec = f.spec();
    Ok(Some(FunctionInfo {
        id: id.to_owned(),
        kind: f.kind().to_owned(),
        source: spec.source.display().to_string(),
        timeout_ms: u64::try_from(f.timeout().as_millis()).unwrap_or(u64::MAX),
        memory_bytes: spec.memory,
        max_concurrency: spec.max_concurrency,
        reuse: spec.reuse,
        allow: spec.resources.allow_lists(),
        allowed_outbound_hosts: spec
            .allowed_outbound_hosts
            .iter()
            .map(|h| h.as_str().to_owned())
            .collect(),
        routes: route_infos(state)
            .into_iter()
            .filter(|r| r.serves(id))
            .collect(),
        triggers,
    }))
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/functions", params(("app" = String, Path, description = "the app's name")), responses((status = 200, body = [FunctionInfo]), (status = 500, body = ApiError)))]
pub(super) async fn functions(Extension(state): Extension<Arc<AppState>>) -> Response {
    match function_infos(&state).await {
        Ok(all) => Json(all).into_response(),
        Err(response) => response,
    }
}

/// What the API says about every function, in id order.
pub(crate) async fn function_infos(state: &AppState) -> Result<Vec<FunctionInfo>, Response> {
    let mut all = Vec::new();
    for id in state.functions.keys() {
        if let Some(info) = function_info(state, id).await? {
            all.push(info);
        }
    }
    Ok(all)
}

pub(super) fn unknown_function(id: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!("function `{id}` does not exist in this app; `updraft ls` lists the functions"),
    )
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/functions/{id}", params(("app" = String, Path, description = "the app's name"), ("id" = String, Path, description = "function id")),
    responses((status = 200, body = FunctionInfo), (status = 404, body = ApiError), (status = 500, body = ApiError)))]
pub(super) async fn function(
    Extension(state): Extension<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    match function_info(&state, &id).await {
        Ok(Some(info)) => Json(info).into_response(),
        Ok(None) => unknown_function(&id),
        Err(response) => response,
    }
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/routes", params(("app" = String, Path, description = "the app's name")), responses((status = 200, body = [RouteInfo])))]
pub(super) async fn routes(Extension(state): Extension<Arc<AppState>>) -> Json<Vec<RouteInfo>> {
    Json(route_infos(&state))
}

/// How to shape the request a function receives from `invoke`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct InvokeParams {
    /// HTTP method the function sees (default `POST`).
    pub method: Option<String>,
    /// Path and query the function sees (default `/`).
    pub path: Option<String>,
}

#[utoipa::path(post, path = "/_updraft/api/v1/apps/{app}/functions/{id}/invoke",
    params(("app" = String, Path, description = "the app's name"), ("id" = String, Path, description = "function id"), InvokeParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the request body the function receives"),
    responses((status = 200, description = "whatever the function answers, with `updraft-invocation-id`"), (status = 404, body = ApiError)))]
pub(super) async fn invoke(
    Extension(state): Extension<Arc<AppState>>,
    Path(id): Path<String>,
    Query(params): Query<InvokeParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let function = match state.functions.get(&id).cloned() {
        Some(Function::Http(f)) => f,
        Some(Function::Event(f)) => return invoke_event(&f, &headers, body).await,
        None => return unknown_function(&id),
    };
    let method = params
        .method
        .as_deref()
        .unwrap_or("POST")
        .to_ascii_uppercase();
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("`{method}` is not an HTTP method"),
        );
    };
    let path = params.path.unwrap_or_else(|| "/".to_owned());
    let Ok(uri) = http::Uri::try_from(path.as_str()) else {
        return api_error(StatusCode::BAD_REQUEST, format!("`{path}` is not a path"));
    };
    let mut req =
        http::Request::new(body.map_err(|e| HttpError::InternalError(Some(e.to_string()))));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::ACCEPT] {
        if let Some(v) = headers.get(&name) {
            req.headers_mut().insert(name, v.clone());
        }
    }
    let invocation_id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
    let fh = FunctionHeaders {
        invocation_id: &invocation_id,
        route: "(invoke)",
        path_info: "",
        params: &[],
        client_addr: None,
        identity: &[],
    };
    let mut response = state
        .call(&function, req, &fh, invocation_id.clone(), state.max_body)
        .await;
    if let Ok(v) = http::HeaderValue::from_str(&invocation_id) {
        response
            .headers_mut()
            .insert(updraft_gateway::headers::INVOCATION_ID, v);
    }
    response.into_response()
}

/// Runs an event function on one event whose data is the request body.
pub(super) async fn invoke_event(
    function: &EventFunction,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Response {
    let data = match axum::body::to_bytes(body, 10 << 20).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body: {e}"),
            );
        }
    };
    let id = uuid::Uuid::now_v7().to_string();
    let event = Event {
        id: id.clone(),
        source: "/_updraft/api/v1/invoke".to_owned(),
        ty: "updraft.invoke".to_owned(),
        datacontenttype: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        data,
        ..Event::default()
    };
    let result = function
        .invoke(vec![event], "invoke", Arc::from(id.as_str()))
        .await;
    let (status, body) = match result {
        Ok(()) => (
            StatusCode::OK,
            serde_json::json!({ "ok": true, "invocation_id": id }),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": e.to_string(), "invocation_id": id }),
        ),
    };
    let mut response = (status, Json(body)).into_response();
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(updraft_gateway::headers::INVOCATION_ID, v);
    }
    response
}
