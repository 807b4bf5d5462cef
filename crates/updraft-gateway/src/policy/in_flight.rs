//! `max_in_flight = N` on a route: at most N requests at once; the next one is answered 503
//! with `Retry-After` at once instead of queueing (a queue would only add latency to a
//! target that is already saturated).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::BoxFuture;
use crate::{Body, error_response};

/// Caps a route's concurrent requests.
#[derive(Debug, Clone)]
pub struct InFlightLayer {
    /// The route's name, for the message.
    pub route: String,
    /// The cap.
    pub max: u32,
    permits: Arc<Semaphore>,
}

impl InFlightLayer {
    /// A cap of `max` for `route`.
    pub fn new(route: &str, max: u32) -> Self {
        Self {
            route: route.to_owned(),
            max,
            permits: Arc::new(Semaphore::new(max as usize)),
        }
    }
}

impl<S> Layer<S> for InFlightLayer {
    type Service = InFlight<S>;
    fn layer(&self, inner: S) -> InFlight<S> {
        InFlight {
            inner,
            layer: self.clone(),
        }
    }
}

/// A route with a cap on concurrent requests.
#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
    layer: InFlightLayer,
}

impl<S, B> Service<Request<B>> for InFlight<S>
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
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            let mut r = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "route `{}` has {} requests in flight, its `max_in_flight`; try again shortly",
                    self.layer.route, self.layer.max
                ),
                None,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Box::pin(std::future::ready(Ok(r)));
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await;
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn the_request_over_the_cap_is_refused_at_once_and_the_cap_frees() {
        let (release, wait) = tokio::sync::watch::channel(false);
        let slow = tower::service_fn(move |_req: Request<()>| {
            let mut wait = wait.clone();
            async move {
                let _ = wait.wait_for(|go| *go).await;
                Ok::<_, Infallible>(Response::new(crate::full("done")))
            }
        });
        let svc = InFlightLayer::new("r", 2).layer(slow);
        let first = tokio::spawn(svc.clone().oneshot(Request::new(())));
        let second = tokio::spawn(svc.clone().oneshot(Request::new(())));
        // Both hold their permit once they have been polled.
        for _ in 0..1000 {
            if svc.layer.permits.available_permits() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(svc.layer.permits.available_permits(), 0);
        let refused = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(second.await.unwrap().unwrap().status(), StatusCode::OK);
        let again = svc.oneshot(Request::new(())).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
    }
}
