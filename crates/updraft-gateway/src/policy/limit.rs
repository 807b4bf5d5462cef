//! `[gateway.limit.<label>]`: GCRA rate limits (via `governor`), per client IP or per route,
//! per node. A refused request gets 429 with `Retry-After` and the `RateLimit-*` headers.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};
use updraft_manifest::gateway::{LimitBy, LimitDecl};

use super::client_ip::ClientIp;
use crate::{Body, error_response};

/// What one budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Counted {
    Ip(IpAddr),
    Key(String),
    /// The route as a whole, or a client whose address or key is unknown.
    All,
}

type Keyed =
    RateLimiter<Counted, DefaultKeyedStateStore<Counted>, DefaultClock, StateInformationMiddleware>;

/// One declared limit: its own counters, shared by the routes that name it.
pub struct Limiter {
    label: String,
    by: LimitBy,
    burst: u32,
    period: Duration,
    limiter: Keyed,
    checks: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("label", &self.label)
            .finish()
    }
}

/// Keys a limiter forgets unused entries after this many checks.
const RETAIN_EVERY: u64 = 4096;

impl Limiter {
    /// From its declaration: `rate` requests per period, `burst` at once.
    pub fn new(label: &str, decl: &LimitDecl) -> Self {
        let per_second = f64::from(decl.rate.count) / decl.rate.per.as_secs_f64();
        let burst = decl
            .burst
            .unwrap_or_else(|| (per_second.ceil() as u32).max(1))
            .max(1);
        let period = decl.rate.per / decl.rate.count;
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            label: label.to_owned(),
            by: decl.by,
            burst,
            period,
            limiter: RateLimiter::dashmap(quota).with_middleware(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request of `client` (its address, and who its credential says it is);
    /// `Err` holds the 429.
    pub fn check(
        &self,
        client: Option<IpAddr>,
        key_id: Option<&str>,
    ) -> Result<HeaderMap, Box<Response<Body>>> {
        let key = match (self.by, client, key_id) {
            (LimitBy::Ip, Some(ip), _) => Counted::Ip(ip),
            (LimitBy::Key, _, Some(id)) => Counted::Key(id.to_owned()),
            _ => Counted::All,
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let reset = self.period * (self.burst - remaining.min(self.burst));
                Ok(self.headers(remaining, reset))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut response = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!("rate limit `{}` reached; retry in {secs}s", self.label),
                    None,
                );
                let headers = response.headers_mut();
                headers.extend(self.headers(0, self.period * self.burst));
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                metrics::counter!("updraft_gateway_rate_limited_total", "limit" => self.label.clone())
                    .increment(1);
                Err(Box::new(response))
            }
        }
    }

    fn headers(&self, remaining: u32, reset: Duration) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-limit", HeaderValue::from(self.burst));
        h.insert("ratelimit-remaining", HeaderValue::from(remaining));
        h.insert(
            "ratelimit-reset",
            HeaderValue::from(reset.as_secs() + u64::from(reset.subsec_nanos() > 0)),
        );
        h
    }
}

/// Puts a [`Limiter`] in front of a route.
#[derive(Debug, Clone)]
pub struct RateLimitLayer(pub Arc<Limiter>);

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limiter: self.0.clone(),
        }
    }
}

/// A route behind a rate limit.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = std::convert::Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = super::BoxFuture<Result<Response<Body>, std::convert::Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let client = req.extensions().get::<ClientIp>().map(|c| c.0);
        let key_id = req
            .extensions()
            .get::<super::auth::Identity>()
            .map(|i| i.subject.as_str());
        match self.limiter.check(client, key_id) {
            Err(refused) => Box::pin(std::future::ready(Ok(*refused))),
            Ok(headers) => {
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let mut response = fut.await?;
                    response.headers_mut().extend(headers);
                    Ok(response)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_429_says_when() {
        let decl = LimitDecl {
            rate: "2/m".parse().unwrap(),
            burst: Some(3),
            by: LimitBy::Ip,
        };
        let l = Limiter::new("tight", &decl);
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        for left in [2, 1, 0] {
            let h = l.check(a, None).unwrap();
            assert_eq!(h["ratelimit-remaining"], left.to_string());
            assert_eq!(h["ratelimit-limit"], "3");
        }
        let refused = l.check(a, None).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        assert!(
            l.check(b, None).is_ok(),
            "another client has its own budget"
        );
    }
}
