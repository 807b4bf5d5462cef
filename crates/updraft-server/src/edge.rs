//! An app's HTTP path: route lookup, static folders, the body limit, updraft's headers,
//! `Prefer: respond-async`, and turning invocation errors into status codes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tower::ServiceExt;
use updraft_gateway::headers::{FunctionHeaders, INVOCATION_ID, identity_headers};
use updraft_gateway::policy::RouteService;
use updraft_gateway::policy::auth::Identity;
use updraft_gateway::policy::cors;
use updraft_gateway::policy::upstream::Forwarded;
use updraft_gateway::{Body, BoxError, Lookup, RequestView, error_response, trace};
use updraft_runtime::{HttpError, HttpFunction, HttpInvocation, InvokeError};
use updraft_triggers::async_jobs;

use updraft_manifest::AsyncPolicy;

use crate::body_limit::LimitedBody;
use crate::state::{AppState, Handler, Served};

impl AppState {
    /// Answers a request for one of the app's routes.
    pub(crate) async fn handle(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        let path = req.uri().path().to_owned();
        let id: Arc<str> = Arc::from(uuid::Uuid::now_v7().to_string());
        let request_id = trace::prepare(req.headers_mut(), &id);
        let client = self.trusted_proxies.client(peer, req.headers());
        let method = req.method().clone();
        let mut route_name = None;
        let mut response = if let Err(why) = updraft_gateway::request::check(&req) {
            // A target without a path, or a `Host` that is no authority: a function would
            // fail on it before its code runs.
            error_response(StatusCode::BAD_REQUEST, &why, Some(&id))
        } else {
            match self.lookup(&req) {
                Lookup::Found(m) => {
                    let call = RouteCall {
                        app: self.clone(),
                        served: m.route.target.clone(),
                        route: Arc::from(m.route.pattern.as_str()),
                        params: m.params,
                        path_info: m.path_info,
                        raw_path_info: m.raw_path_info,
                        id: id.clone(),
                        peer,
                    };
                    route_name = Some(call.served.name.clone());
                    match &call.served.stack {
                        None => call.dispatch(req).await,
                        Some(stack) => {
                            req.extensions_mut().insert(client);
                            let stack = stack.clone();
                            req.extensions_mut().insert(call);
                            match stack.oneshot(req).await {
                                Ok(response) => response,
                                Err(never) => match never {},
                            }
                        }
                    }
                }
                Lookup::MethodNotAllowed { allow } => {
                    let allow_list = allow
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", ");
                    let mut r = error_response(
                        StatusCode::METHOD_NOT_ALLOWED,
                        &format!(
                            "`{}` does not accept {}; it accepts {allow_list}",
                            path,
                            req.method()
                        ),
                        Some(&id),
                    );
                    if let Ok(v) = HeaderValue::from_str(&allow_list) {
                        r.headers_mut().insert(header::ALLOW, v);
                    }
                    r
                }
                Lookup::NotFound => error_response(
                    StatusCode::NOT_FOUND,
                    &format!("no route matches `{} {path}`", req.method()),
                    Some(&id),
                ),
            }
        };
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(INVOCATION_ID, v);
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(trace::REQUEST_ID, v);
        }
        if self.access_log {
            let answered = response.extensions().get::<Answered>();
            let line = trace::access_line(&trace::Access {
                request_id: &request_id,
                method: method.as_str(),
                path: &path,
                route: route_name.as_deref(),
                target: answered.map(|a| a.target.as_str()),
                status: response.status().as_u16(),
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                key_id: answered.and_then(|a| a.key_id.as_deref()),
                client: &client.0.to_string(),
            });
            trace::log_access(&line);
        }
        response
    }

    /// The route for `req`, by method, path, host and headers. A CORS preflight goes to the
    /// route that would serve the method it asks about, when that route has a CORS policy:
    /// the preflight is answered there.
    fn lookup<B>(&self, req: &Request<B>) -> Lookup<'_, Arc<Served>> {
        let mut host = String::new();
        let view = RequestView::of(req, &mut host);
        if let Some(asked) = cors::preflight_method(req) {
            let preflight = RequestView {
                method: &asked,
                ..view
            };
            if let Lookup::Found(m) = self.router.lookup_request(&preflight)
                && m.route.target.cors
            {
                return Lookup::Found(m);
            }
        }
        self.router.lookup_request(&view)
    }

    /// Runs `function` for `req`, with the body limit `max_body` and updraft's headers.
    pub(crate) async fn call<B>(
        &self,
        function: &HttpFunction,
        mut req: Request<B>,
        headers: &FunctionHeaders<'_>,
        id: Arc<str>,
        max_body: u64,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<HttpError>,
    {
        let declared = content_length(&req);
        if let Some(len) = declared
            && len > max_body
        {
            discard(req.into_body(), max_body.saturating_mul(4));
            return self.too_large(&id, max_body);
        }
        // A body of declared length cannot pass the limit once it is under it (hyper holds
        // it to its length); only a streamed one can, after the answer has started.
        let streamed = declared.is_none() && !req.body().is_end_stream();
        headers.apply(req.headers_mut());
        // `Prefer` is a preference: a function that did not opt in runs at once.
        if wants_async(req.headers())
            && let Some(policy) = self.async_policies.get(function.id())
        {
            return self.submit_async(function, policy, req, id, max_body).await;
        }
        if req
            .headers()
            .get(header::HOST)
            .is_none_or(HeaderValue::is_empty)
        {
            // HTTP/2 carries the host in `:authority`; HTTP/1.0 may carry none, and a request
            // without an authority sends an empty one (RFC 9112 §3.2).
            let host = req
                .uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_else(|| self.local_addr.to_string());
            if let Ok(host) = HeaderValue::from_str(&host) {
                req.headers_mut().insert(header::HOST, host);
            }
        }
        let exceeded = Arc::new(AtomicBool::new(false));
        let req = req.map(|b| LimitedBody::new(b, max_body, exceeded.clone()));
        let result = function
            .handle(
                req,
                HttpInvocation {
                    id: id.clone(),
                    https: self.https,
                },
            )
            .await;
        if exceeded.load(Ordering::Relaxed) {
            return self.too_large(&id, max_body);
        }
        match result {
            Ok(response) => {
                let function = function.id().to_owned();
                response.map(|body| {
                    let body = body.map_err(|code| -> BoxError {
                        format!("function body failed: {code:?}").into()
                    });
                    if !streamed {
                        return body.boxed_unsync();
                    }
                    CutIfOverLimit {
                        inner: body,
                        exceeded,
                        function,
                        invocation: id.clone(),
                        limit: max_body,
                    }
                    .boxed_unsync()
                })
            }
            Err(err) => invoke_error_response(&err, &id),
        }
    }

    /// Stores the request for the async worker and answers `202` with where to look.
    async fn submit_async<B>(
        &self,
        function: &HttpFunction,
        policy: &AsyncPolicy,
        req: Request<B>,
        id: Arc<str>,
        max_body: u64,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<HttpError>,
    {
        let (queued, queued_bytes) = match self.async_jobs.pending(function.id()).await {
            Ok(pending) => pending,
            Err(e) => {
                return self.async_unavailable(
                    &format!("cannot count the waiting async invocations: {e}"),
                    &id,
                );
            }
        };
        if queued >= u64::from(policy.max_queued) {
            return self.async_unavailable(
                &format!(
                    "function `{}` has {queued} async invocations waiting, its `async.max_queued`; try again later",
                    function.id()
                ),
                &id,
            );
        }
        let room = policy.max_bytes.saturating_sub(queued_bytes);
        let (parts, mut body) = req.into_parts();
        let mut bytes = Vec::new();
        let deadline = tokio::time::Instant::now() + BODY_DEADLINE;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    return error_response(
                        StatusCode::REQUEST_TIMEOUT,
                        &format!(
                            "the request body was not received within {}s; send it faster or without `Prefer: respond-async`",
                            BODY_DEADLINE.as_secs()
                        ),
                        Some(&id),
                    );
                }
            };
            if let Ok(frame) = &frame
                && let Some(data) = frame.data_ref()
                && (bytes.len() + data.len()) as u64 > room
                && (bytes.len() + data.len()) as u64 <= max_body
            {
                return self.async_unavailable(
                    &format!(
                        "function `{}` holds {queued_bytes} bytes of waiting async requests, near its `async.max_bytes` of {}; try again later",
                        function.id(),
                        policy.max_bytes
                    ),
                    &id,
                );
            }
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        if (bytes.len() + data.len()) as u64 > max_body {
                            return self.too_large(&id, max_body);
                        }
                        bytes.extend_from_slice(data);
                    }
                }
                Err(e) => {
                    return match e.into() {
                        HttpError::HttpRequestBodySize(_) => self.too_large(&id, max_body),
                        // Bad chunked framing, or a client that went away before the length
                        // it announced.
                        e => error_response(
                            StatusCode::BAD_REQUEST,
                            &format!("the request body could not be read: {e}"),
                            Some(&id),
                        ),
                    };
                }
            }
        }
        let body = bytes;
        let callback = parts
            .headers
            .get("callback-url")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(url) = &callback
            && !self.callback_allowed(url)
        {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "callback `{url}` is not allowed; add its `scheme://host:port` to `[async] callback_hosts` in updraft.toml"
                ),
                Some(&id),
            );
        }
        let job = updraft_store::AsyncJob {
            id: id.to_string(),
            function: function.id().to_owned(),
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            headers: parts
                .headers
                .iter()
                .filter(|(k, _)| *k != "prefer" && *k != "callback-url")
                // Credentials are not stored unless the function asks for them.
                .filter(|(k, _)| {
                    !SENSITIVE_HEADERS.contains(&k.as_str())
                        || policy.keep_headers.iter().any(|h| h == k.as_str())
                })
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body,
            callback,
            ..updraft_store::AsyncJob::default()
        };
        if let Err(e) = self
            .async_jobs
            .submit(job, async_jobs::QUEUE, updraft_runtime::now_us())
            .await
        {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot store the async invocation: {e}"),
                Some(&id),
            );
        }
        self.async_queue.notify.notify_waiters();
        let status_url = format!("/_updraft/api/v1/apps/{}/async/{id}", self.name);
        let body = serde_json::json!({ "invocation_id": &*id, "status": "queued", "status_url": status_url });
        let mut response = Response::new(updraft_gateway::full(body.to_string()));
        *response.status_mut() = StatusCode::ACCEPTED;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            "preference-applied",
            HeaderValue::from_static("respond-async"),
        );
        if let Ok(v) = HeaderValue::from_str(&status_url) {
            headers.insert(header::LOCATION, v);
        }
        response
    }

    fn async_unavailable(&self, why: &str, id: &str) -> Response<Body> {
        let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, why, Some(id));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        response
    }

    fn callback_allowed(&self, url: &str) -> bool {
        let Ok(uri) = http::Uri::try_from(url) else {
            return false;
        };
        let scheme = uri.scheme_str().unwrap_or("");
        let (Some(host), Some(port)) = (
            uri.host(),
            uri.port_u16()
                .or_else(|| updraft_manifest::values::default_port(scheme)),
        ) else {
            return false;
        };
        self.callback_hosts
            .iter()
            .any(|h| h.allows(scheme, host, port))
    }

    fn too_large(&self, id: &str, max_body: u64) -> Response<Body> {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body is over the limit of {max_body} bytes; send a smaller body"),
            Some(id),
        )
    }
}

/// A matched request on its way to a route's target: what the target needs besides the
/// request. It rides in the request's extensions through the route's policy stack.
#[derive(Clone)]
pub(crate) struct RouteCall {
    app: Arc<AppState>,
    served: Arc<Served>,
    route: Arc<str>,
    params: Vec<(String, String)>,
    path_info: String,
    raw_path_info: String,
    id: Arc<str>,
    peer: SocketAddr,
}

/// A request body read whole (to be checked against a route's `body_schema`), with the error
/// type of the streamed one, so every target takes either.
type ReadBody = http_body_util::combinators::MapErr<
    http_body_util::Full<bytes::Bytes>,
    fn(std::convert::Infallible) -> hyper::Error,
>;

impl RouteCall {
    /// Checks the request against the route's schemas, if it has any, then has a target
    /// answer it.
    async fn dispatch(self, req: Request<Incoming>) -> Response<Body> {
        let Some(schema) = self.served.schema.clone() else {
            return self.answer(req).await;
        };
        if let Err(refusal) = schema.check_query(req.uri().query()) {
            return refusal.response(&self.id);
        }
        if !schema.checks_body() {
            return self.answer(req).await;
        }
        let (parts, body) = req.into_parts();
        let bytes = match self.read_body(body).await {
            Ok(bytes) => bytes,
            Err(response) => return *response,
        };
        if let Err(refusal) = schema.check_body(&parts.method, &bytes) {
            return refusal.response(&self.id);
        }
        let never: fn(std::convert::Infallible) -> hyper::Error = |never| match never {};
        let body: ReadBody = http_body_util::Full::new(bytes).map_err(never);
        self.answer(Request::from_parts(parts, body)).await
    }

    /// The route's `max_body`, else the node's.
    fn max_body(&self) -> u64 {
        self.served.max_body.unwrap_or(self.app.max_body)
    }

    /// Reads a body whole, within the route's body limit (413) and [`BODY_DEADLINE`] (408).
    async fn read_body(&self, body: Incoming) -> Result<bytes::Bytes, Box<Response<Body>>> {
        let max = self.max_body();
        let limited =
            http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
        match tokio::time::timeout(BODY_DEADLINE, limited.collect()).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(Box::new(self.app.too_large(&self.id, max)))
            }
            Ok(Err(e)) => Err(Box::new(error_response(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {e}"),
                Some(&self.id),
            ))),
            Err(_) => Err(Box::new(error_response(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {}s; send it at once",
                    BODY_DEADLINE.as_secs()
                ),
                Some(&self.id),
            ))),
        }
    }

    /// Chooses the target and has it answer.
    async fn answer<B>(self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes, Error = hyper::Error> + Send + Unpin + 'static,
    {
        let served = &self.served;
        let pick = served.split.as_ref().map(|s| s.pick(req.headers()));
        let index = pick.as_ref().map_or(0, |p| p.index);
        let started = std::time::Instant::now();
        let verified = req.extensions().get::<Identity>();
        let key_id = verified.and_then(|i| i.key_id.clone());
        let identity = verified
            .map(|i| identity_headers(i.key_id.as_deref(), &i.claims))
            .unwrap_or_default();
        let mut response = match &served.targets[index.min(served.targets.len() - 1)] {
            Handler::Static(site) => site.serve(req, &self.raw_path_info).await,
            Handler::Ingest(ingest) => ingest.accept(req, self.max_body(), &self.id).await,
            Handler::Dashboard => crate::dashboard::public_page(&self.app, &req)
                .await
                .map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()),
            Handler::Function(f) => {
                let headers = FunctionHeaders {
                    invocation_id: &self.id,
                    route: &self.route,
                    path_info: &self.path_info,
                    params: &self.params,
                    client_addr: Some(self.peer),
                    identity: &identity,
                };
                self.app
                    .call(f, req, &headers, self.id.clone(), self.max_body())
                    .await
            }
            Handler::Upstream(upstream) => {
                let how = Forwarded {
                    peer: self.peer,
                    peer_trusted: self.app.trusted_proxies.trusts(self.peer.ip()),
                    proto: if self.app.https { "https" } else { "http" },
                    identity,
                };
                let max = self.max_body();
                if content_length(&req).is_some_and(|len| len > max) {
                    discard(req.into_body(), max.saturating_mul(4));
                    self.app.too_large(&self.id, max)
                } else {
                    let exceeded = Arc::new(AtomicBool::new(false));
                    let req = req.map(|b| LimitedBody::new(b, max, exceeded.clone()));
                    let response = upstream.forward(req, &how).await;
                    if exceeded.load(Ordering::Relaxed) {
                        self.app.too_large(&self.id, max)
                    } else {
                        response
                    }
                }
            }
        };
        if self.app.access_log {
            response.extensions_mut().insert(Answered {
                target: served.labels.get(index).cloned().unwrap_or_default(),
                key_id,
            });
        }
        if let Some(cookie) = pick.and_then(|p| p.set_cookie) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        if served.gateway {
            let target = served.labels.get(index).cloned().unwrap_or_default();
            let labels = [
                ("route", served.name.clone()),
                ("target", target),
                ("status", response.status().as_u16().to_string()),
            ];
            metrics::counter!("updraft_gateway_requests_total", &labels).increment(1);
            metrics::histogram!("updraft_gateway_request_duration_seconds", &labels[..2])
                .record(started.elapsed().as_secs_f64());
        }
        response
    }
}

/// What answered a request, for its access log line (in the response's extensions).
#[derive(Clone)]
struct Answered {
    target: String,
    key_id: Option<String>,
}

/// The innermost service of every route's policy stack: takes the [`RouteCall`] the edge put
/// in the request and dispatches it.
pub(crate) fn target_service() -> RouteService<Incoming> {
    RouteService::new(tower::service_fn(|mut req: Request<Incoming>| async move {
        let response = match req.extensions_mut().remove::<RouteCall>() {
            Some(call) => call.dispatch(req).await,
            None => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request reached a route's target without its route",
                None,
            ),
        };
        Ok::<_, std::convert::Infallible>(response)
    }))
}

/// How long a body that is read whole (an async request's, or one checked against a
/// schema) may take to arrive (DESIGN §9: 30 s, else 408).
const BODY_DEADLINE: Duration = Duration::from_secs(30);
/// Request headers a stored async invocation drops unless its function keeps them.
const SENSITIVE_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// Reads and drops up to `cap` bytes of a refused body in the background, so a client that
/// is still sending gets to read the error answer instead of a broken pipe.
fn discard<B>(mut body: B, cap: u64)
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
{
    tokio::spawn(async move {
        let mut read = 0u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while read <= cap {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    });
}

/// `Prefer: respond-async` (RFC 7240).
fn wants_async(headers: &http::HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
        })
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn invoke_error_response(err: &InvokeError, id: &str) -> Response<Body> {
    let status = match err {
        InvokeError::AtCapacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
        InvokeError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        InvokeError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        InvokeError::MemoryLimit { .. }
        | InvokeError::HostMemoryLimit { .. }
        | InvokeError::Failed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = error_response(status, &err.to_string(), Some(id));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// A response body that ends in an error, not cleanly, when the request body went over the
/// limit after the response headers were sent: the function saw a cut-off request, so its
/// answer must not pass for complete. An error makes hyper close an HTTP/1.1 connection
/// without the last chunk and reset an HTTP/2 stream.
struct CutIfOverLimit<B> {
    inner: B,
    exceeded: Arc<AtomicBool>,
    function: String,
    invocation: Arc<str>,
    limit: u64,
}

impl<B> http_body::Body for CutIfOverLimit<B>
where
    B: http_body::Body<Data = bytes::Bytes, Error = BoxError> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            std::task::Poll::Ready(None) if this.exceeded.load(Ordering::Relaxed) => {
                tracing::warn!(
                    function = %this.function,
                    invocation = %this.invocation,
                    "the request body went over the limit of {} bytes after the response started; the response is cut off",
                    this.limit
                );
                metrics::counter!("updraft_responses_cut_total", "function" => this.function.clone(), "reason" => "request_body_limit").increment(1);
                std::task::Poll::Ready(Some(Err(format!(
                    "request body over the limit of {} bytes",
                    this.limit
                )
                .into())))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        // Never claim the end early: the limit check happens when the inner body ends.
        false
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.inner.size_hint();
        hint.set_upper(u64::MAX);
        hint
    }
}
