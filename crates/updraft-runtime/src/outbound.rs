//! Outbound HTTP: allowed only to the hosts a function's manifest lists, never to hosts
//! taken from a request.

use std::sync::Arc;

use http::uri::Scheme;
use updraft_manifest::AllowedHost;
use updraft_manifest::values::default_port;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The `wasi:http` hooks of one invocation.
pub(crate) struct OutboundPolicy {
    pub(crate) function: Arc<str>,
    pub(crate) invocation: Arc<str>,
    pub(crate) allowed: Arc<[AllowedHost]>,
}

impl OutboundPolicy {
    fn allows(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let Some(host) = uri.host() else {
            return false;
        };
        let Some(port) = uri.port_u16().or_else(|| default_port(&scheme)) else {
            return false;
        };
        self.allowed
            .iter()
            .any(|entry| entry.allows(&scheme, host, port))
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn is_supported_scheme(&mut self, scheme: &Scheme) -> bool {
        *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        drop(fut);
        if !self.allows(request.uri()) {
            tracing::warn!(
                function = &*self.function,
                invocation = &*self.invocation,
                "outbound request to `{}` denied: add its `scheme://host:port` to `allowed_outbound_hosts` of function `{}`",
                authority_of(request.uri()),
                self.function,
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}

/// `scheme://authority` of `uri`, as a denial logs it (the authority cut short: a guest
/// chooses its length).
fn authority_of(uri: &http::Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        crate::host::shown(uri.authority().map(|a| a.as_str()).unwrap_or(""))
    )
}
