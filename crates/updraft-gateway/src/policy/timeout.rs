//! `timeout = "5s"` on a route: the target must answer (its response head) in time, else 504.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

use super::BoxFuture;
use crate::{Body, error_response};

/// Answers 504 when the inner service takes longer than the route allows.
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    /// The route's name, for the message.
    pub route: String,
    /// How long.
    pub after: Duration,
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            layer: self.clone(),
        }
    }
}

/// A route with a deadline.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    layer: TimeoutLayer,
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let fut = self.inner.call(req);
        let TimeoutLayer { route, after } = self.layer.clone();
        Box::pin(async move {
            match tokio::time::timeout(after, fut).await {
                Ok(answer) => answer,
                Err(_) => Ok(error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "route `{route}` did not answer within its timeout of {}",
                        humanize(after)
                    ),
                    None,
                )),
            }
        })
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
