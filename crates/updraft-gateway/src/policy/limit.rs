//! `[gateway.limit.<label>]`: GCRA rate limits (via `governor`), per client IP, key or route,
//! per node, and daily quotas ([`super::quota`]) counted the same way. A refused request gets
//! 429 with `Retry-After` and the `RateLimit-*` (rate) or `x-quota-*` (quota) headers.

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
use super::quota::{DailyQuota, QuotaStore};
use crate::{Body, error_response};

/// What one budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Counted {
    Ip(IpAddr),
    Key(String),
    /// The route as a whole, or a client whose address or key is unknown.
    All,
}

impl Counted {
    /// Its name in the quota store.
    fn subject(&self) -> String {
        match self {
            Counted::Ip(ip) => format!("ip:{ip}"),
            Counted::Key(key) => key.clone(),
            Counted::All => "all".to_owned(),
        }
    }
}

type Keyed =
    RateLimiter<Counted, DefaultKeyedStateStore<Counted>, DefaultClock, StateInformationMiddleware>;

/// A declared rate: GCRA cells per subject.
struct RateCells {
    burst: u32,
    period: Duration,
    cells: Keyed,
}

/// One declared limit: its own counters, shared by the routes that name it.
pub struct Limiter {
    label: String,
    by: LimitBy,
    rate: Option<RateCells>,
    quota: Option<Arc<DailyQuota>>,
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
    /// From its declaration: `rate` requests per period, `burst` at once, and `quota`
    /// requests a day counted in `quotas`.
    pub fn new(label: &str, decl: &LimitDecl, quotas: &Arc<dyn QuotaStore>) -> Self {
        let rate = decl.rate.map(|rate| {
            let per_second = f64::from(rate.count) / rate.per.as_secs_f64();
            let burst = decl
                .burst
                .unwrap_or_else(|| (per_second.ceil() as u32).max(1))
                .max(1);
            let period = rate.per / rate.count;
            let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
            RateCells {
                burst,
                period,
                cells: RateLimiter::dashmap(quota).with_middleware(),
            }
        });
        Self {
            label: label.to_owned(),
            by: decl.by,
            rate,
            quota: decl
                .quota
                .map(|q| DailyQuota::start(label, q.count, quotas.clone())),
            checks: AtomicU64::new(0),
        }
    }

    fn counted(&self, client: Option<IpAddr>, key_id: Option<&str>) -> Counted {
        match (self.by, client, key_id) {
            (LimitBy::Ip, Some(ip), _) => Counted::Ip(ip),
            (LimitBy::Key, _, Some(id)) => Counted::Key(id.to_owned()),
            _ => Counted::All,
        }
    }

    /// Counts one request of `client` (its address, and who its credential says it is)
    /// against the rate; `Err` holds the 429.
    pub fn check(
        &self,
        client: Option<IpAddr>,
        key_id: Option<&str>,
    ) -> Result<HeaderMap, Box<Response<Body>>> {
        let Some(rate) = &self.rate else {
            return Ok(HeaderMap::new());
        };
        let key = self.counted(client, key_id);
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            rate.cells.retain_recent();
        }
        match rate.cells.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let reset = rate.period * (rate.burst - remaining.min(rate.burst));
                Ok(rate.headers(remaining, reset))
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
                headers.extend(rate.headers(0, rate.period * rate.burst));
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
                metrics::counter!("updraft_gateway_rate_limited_total", "limit" => self.label.clone())
                    .increment(1);
                Err(Box::new(response))
            }
        }
    }

    /// Stores what the daily quota counted and has not stored yet.
    pub async fn flush(&self) {
        if let Some(quota) = &self.quota {
            quota.flush().await;
        }
    }

    /// What the daily quota counts this request as; `None` when the limit has no quota.
    fn quota_subject(&self, client: Option<IpAddr>, key_id: Option<&str>) -> Option<String> {
        self.quota
            .as_ref()
            .map(|_| self.counted(client, key_id).subject())
    }

    /// Counts one request of `subject` against the daily quota, if there is one.
    pub async fn check_quota(&self, subject: &str) -> Result<HeaderMap, Box<Response<Body>>> {
        match &self.quota {
            None => Ok(HeaderMap::new()),
            Some(quota) => quota.take(subject).await,
        }
    }
}

impl RateCells {
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
    S: Service<Request<B>, Response = Response<Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
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
        let mut headers = match self.limiter.check(client, key_id) {
            Err(refused) => return Box::pin(std::future::ready(Ok(*refused))),
            Ok(headers) => headers,
        };
        let Some(subject) = self.limiter.quota_subject(client, key_id) else {
            let fut = self.inner.call(req);
            return Box::pin(async move {
                let mut response = fut.await?;
                response.headers_mut().extend(headers);
                Ok(response)
            });
        };
        // The quota may read the store first: take the service that was made ready along.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let limiter = self.limiter.clone();
        Box::pin(async move {
            match limiter.check_quota(&subject).await {
                Err(refused) => Ok(*refused),
                Ok(quota) => {
                    headers.extend(quota);
                    let mut response = inner.call(req).await?;
                    response.headers_mut().extend(headers);
                    Ok(response)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoQuotas;

    #[async_trait::async_trait]
    impl QuotaStore for NoQuotas {
        async fn add(&self, _: &str, _: i64) -> Result<i64, String> {
            Err("no quotas here".to_owned())
        }
        async fn forget_before(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_burst_passes_then_429_says_when() {
        let decl = LimitDecl {
            rate: Some("2/m".parse().unwrap()),
            quota: None,
            burst: Some(3),
            by: LimitBy::Ip,
        };
        let none: Arc<dyn QuotaStore> = Arc::new(NoQuotas);
        let l = Limiter::new("tight", &decl, &none);
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
