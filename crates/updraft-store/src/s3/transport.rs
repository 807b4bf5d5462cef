//! The HTTP transport under [`super::S3BlobStore`]: hyper's client with TLS from rustls on
//! the ring provider, given explicitly, and the system's root certificates.
//!
//! `object_store`'s own transport is reqwest, whose TLS features either pull in aws-lc (two
//! rustls providers in one process: rustls can then pick no default, and a library that
//! relies on the default, such as async-nats's TLS, panics) or need a process-wide default
//! provider installed before *any* reqwest client is built. This transport leaves both
//! reqwest and the process default alone.
//!
//! Limits: a connect timeout, a timeout until the response's headers arrive, and an idle
//! timeout between chunks of a response body (a stalled download fails instead of hanging).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};

/// Makes the HTTP client of one store.
#[derive(Debug, Clone)]
pub(super) struct Transport {
    /// Whether `http://` URLs are allowed.
    pub allow_http: bool,
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait from sending a request (its body included) to the response's headers.
    pub response_timeout: Duration,
    /// Longest wait between two chunks of a response body.
    pub idle_timeout: Duration,
}

impl HttpConnector for Transport {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let tls = crate::tls::client_config(None).map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: e.into(),
        })?;
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(self.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(HttpClient::new(Service {
            client,
            limits: self.clone(),
        }))
    }
}

#[derive(Debug)]
struct Service {
    client: Client<hyper_rustls::HttpsConnector<TcpConnector>, HttpRequestBody>,
    limits: Transport,
}

#[async_trait]
impl HttpService for Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        if req.uri().scheme_str() == Some("http") && !self.limits.allow_http {
            return Err(HttpError::new(
                HttpErrorKind::Unknown,
                std::io::Error::other(format!(
                    "`{}` is plain http, which this bucket does not allow; use https or set `allow_http`",
                    req.uri()
                )),
            ));
        }
        let timeout = self.limits.response_timeout;
        let response = match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => {
                return Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no response within {timeout:?}"),
                    ),
                ));
            }
            Ok(Err(e)) => {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                return Err(HttpError::new(kind, e));
            }
            Ok(Ok(response)) => response,
        };
        let (parts, body) = response.into_parts();
        let body = IdleTimeout {
            inner: body,
            limit: self.limits.idle_timeout,
            sleep: Box::pin(tokio::time::sleep(self.limits.idle_timeout)),
        };
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// A response body that fails when no chunk arrives for `limit`.
struct IdleTimeout {
    inner: hyper::body::Incoming,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for IdleTimeout {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + self.limit;
                self.sleep.as_mut().reset(deadline);
                Poll::Ready(
                    frame.map(|f| f.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e))),
                )
            }
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the response stalled for {:?}", self.limit),
                    ),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
