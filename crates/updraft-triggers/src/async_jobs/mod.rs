//! Async invocations: requests sent with `Prefer: respond-async` are stored and queued (the
//! client gets `202` and a status URL); this consumer runs them on the shared worker loop,
//! keeps the outcome for `GET /_updraft/api/v1/async/<id>`, publishes a completion event
//! and POSTs callbacks. It is not a manifest trigger: every node runs it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::watch;
use updraft_runtime::{
    Function, HttpError, HttpFunction, HttpInvocation, InvokeError, QueueHandle, TopicHandle,
    now_us,
};
use updraft_store::{AsyncJob, AsyncStore, Event, Leased};

use crate::worker::{self, Consumer, Delivery, Settle};

/// The internal queue async jobs go through.
pub const QUEUE: &str = "_updraft.async";
/// Largest response body kept for the status endpoint.
const MAX_RESULT: usize = 10 << 20;
/// Jobs at once.
const CONCURRENCY: u32 = 16;
/// How long finished results are kept (DESIGN §9: 24 h).
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Lease of a job, extended while it runs; a process that dies mid-run lets it run again
/// after the lease in force runs out.
const LEASE: Duration = Duration::from_secs(10);
/// Deliveries of one job; a job whose runs never finish (the process died during each, which
/// may be the request's doing) fails after these instead of crashing every restart.
const MAX_DELIVERIES: u32 = 3;

/// Everything the worker needs.
#[derive(Clone)]
pub struct AsyncRunner {
    /// Where jobs live.
    pub jobs: Arc<dyn AsyncStore>,
    /// The internal queue.
    pub queue: Arc<QueueHandle>,
    /// The functions by id.
    pub functions: Arc<BTreeMap<String, Function>>,
    /// Gets a completion event per job, if configured.
    pub completion_topic: Option<Arc<TopicHandle>>,
}

/// The JSON the status endpoint and callbacks carry.
pub fn outcome_json(job: &AsyncJob) -> serde_json::Value {
    let us = |t: i64| {
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_micros(u64::try_from(t).unwrap_or(0)),
        )
        .to_string()
    };
    serde_json::json!({
        "invocation_id": job.id,
        "function": job.function,
        "status": job.status,
        "created": us(job.created_us),
        "finished": job.finished_us.map(us),
        "response": job.response_status.map(|s| serde_json::json!({
            "status": s,
            "headers": job.response_headers.iter().cloned().collect::<BTreeMap<_, _>>(),
            "body": String::from_utf8_lossy(&job.response_body),
        })),
        "error": job.error,
    })
}

/// Starts running jobs until `stop` turns true.
pub fn spawn(runner: AsyncRunner, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let delivery = Delivery {
        // Jobs settle themselves (`finish`); deliveries are capped by `MAX_DELIVERIES`.
        max_attempts: u32::MAX,
        lease: LEASE,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        batch: 1,
        concurrency: CONCURRENCY,
        trigger: "async",
    };
    let queue = runner.queue.clone();
    worker::spawn(queue, Arc::new(runner), delivery, stop)
}

#[async_trait::async_trait]
impl Consumer for AsyncRunner {
    async fn consume(&self, batch: &[Leased]) -> Vec<Settle> {
        let mut settled = Vec::with_capacity(batch.len());
        for message in batch {
            settled.push(self.run(message).await);
        }
        settled
    }
}

impl AsyncRunner {
    async fn run(&self, message: &Leased) -> Settle {
        let id = message.event.id.clone();
        let job = match self.jobs.get(&id).await {
            Ok(Some(job)) if job.finished_us.is_none() => job,
            Ok(Some(job)) => {
                // Finished already (a redelivery after a crash past `finish`): announce again
                // (the completion event is deduplicated by id) and ack.
                self.announce(&job).await;
                return Settle::Ack;
            }
            Ok(None) => return Settle::Ack,
            Err(e) => {
                tracing::error!(invocation = %id, "cannot read async job: {e}");
                return Settle::Keep;
            }
        };
        let _ = self.jobs.start(&id).await;
        let mut done = job.clone();
        match self.functions.get(&job.function) {
            _ if message.attempts > MAX_DELIVERIES => {
                done.status = "failed".into();
                done.error = Some(format!(
                    "gave up after {} deliveries: updraft stopped during each run (a crash or a kill), so the request may be what brings it down",
                    message.attempts - 1
                ));
                tracing::error!(invocation = %id, "async invocation given up: {:?}", done.error);
            }
            Some(Function::Http(f)) => {
                if !self.invoke(f, &job, &mut done).await {
                    // No free instance: put it back without finishing it.
                    return Settle::Release;
                }
            }
            _ => {
                done.status = "failed".into();
                done.error = Some(format!(
                    "function `{}` is no longer an HTTP function of this app",
                    job.function
                ));
            }
        }
        if let Err(e) = self.jobs.finish(&done, now_us()).await {
            tracing::error!(invocation = %id, "cannot record the async outcome: {e}");
            return Settle::Keep;
        }
        if let Ok(Some(stored)) = self.jobs.get(&id).await {
            self.announce(&stored).await;
        }
        Settle::Ack
    }

    /// Runs the job; false when the function had no free instance (try again later).
    async fn invoke(&self, f: &HttpFunction, job: &AsyncJob, done: &mut AsyncJob) -> bool {
        let mut req = http::Request::new(
            Full::new(Bytes::from(job.body.clone()))
                .map_err(|never| -> HttpError { match never {} }),
        );
        *req.method_mut() =
            http::Method::from_bytes(job.method.as_bytes()).unwrap_or(http::Method::POST);
        *req.uri_mut() =
            http::Uri::try_from(job.path.as_str()).unwrap_or_else(|_| http::Uri::from_static("/"));
        for (k, v) in &job.headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::try_from(k.as_str()),
                http::HeaderValue::try_from(v.as_str()),
            ) {
                req.headers_mut().append(k, v);
            }
        }
        let invocation = HttpInvocation {
            id: Arc::from(job.id.as_str()),
            https: false,
        };
        match f.handle(req, invocation).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                done.response_status = Some(parts.status.as_u16());
                done.response_headers = parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                match Limited::new(body, MAX_RESULT).collect().await {
                    Ok(bytes) => {
                        done.response_body = bytes.to_bytes().to_vec();
                        done.status = "succeeded".into();
                    }
                    Err(e) => {
                        done.status = "failed".into();
                        done.error = Some(format!(
                            "the response body broke off or is over {MAX_RESULT} bytes: {e}"
                        ));
                    }
                }
            }
            Err(InvokeError::AtCapacity { .. }) => return false,
            Err(e) => {
                done.status = "failed".into();
                done.error = Some(e.to_string());
            }
        }
        true
    }

    /// Completion event and callback. Both are best effort after the outcome is stored.
    async fn announce(&self, job: &AsyncJob) {
        let outcome = outcome_json(job);
        if let Some(topic) = &self.completion_topic {
            let event = Event {
                id: format!("{}/completed", job.id),
                source: format!("/functions/{}", job.function),
                ty: "updraft.async.completed".to_owned(),
                subject: Some(job.id.clone()),
                datacontenttype: Some("application/json".to_owned()),
                data: outcome.to_string().into_bytes(),
                ..Event::default()
            };
            if let Err(e) = topic.publish(event).await {
                tracing::warn!(invocation = %job.id, "cannot publish the completion event: {e}");
            }
        }
        if let Some(url) = &job.callback {
            // No redirects: an allowed host must not forward the outcome elsewhere.
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build();
            let Ok(client) = client else { return };
            let sent = client
                .post(url)
                .timeout(Duration::from_secs(10))
                .json(&outcome)
                .send()
                .await;
            if let Err(e) = sent {
                tracing::warn!(invocation = %job.id, "callback to `{url}` failed: {e}");
            }
        }
    }
}
