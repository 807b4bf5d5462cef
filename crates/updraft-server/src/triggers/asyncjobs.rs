//! Async invocations: requests sent with `Prefer: respond-async` are stored and queued (the
//! client gets `202` and a status URL); this worker runs them, keeps the outcome for
//! `GET /_updraft/api/v1/async/<id>`, publishes a completion event and POSTs callbacks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::{Semaphore, watch};
use updraft_runtime::{
    Function, HttpError, HttpFunction, HttpInvocation, InvokeError, QueueHandle, TopicHandle,
    now_us,
};
use updraft_store::{AsyncJob, AsyncStore, Event, Leased};

use super::queue::LeaseKeeper;

/// The internal queue async jobs go through.
pub const QUEUE: &str = "_updraft.async";
/// Largest response body kept for the status endpoint.
const MAX_RESULT: usize = 10 << 20;
/// Jobs at once.
const CONCURRENCY: u32 = 16;
/// How long finished results are kept (DESIGN §9: 24 h).
const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// First lease of a job, extended while it runs; a process that dies mid-run lets it run
/// again after the lease in force runs out.
const LEASE: Duration = Duration::from_secs(10);
/// How long a running job's lease lasts beyond the function's timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
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

/// Starts the worker until `stop` turns true.
pub fn spawn(runner: AsyncRunner, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(CONCURRENCY as usize));
        let lease_us = i64::try_from(LEASE.as_micros()).unwrap_or(i64::MAX);
        let mut last_prune: Option<tokio::time::Instant> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                last_prune = Some(tokio::time::Instant::now());
                let cutoff = now_us() - i64::try_from(RETENTION.as_micros()).unwrap_or(0);
                if let Err(e) = runner.jobs.prune(cutoff).await {
                    tracing::warn!("cannot prune old async results: {e}");
                }
            }
            let free = slots.available_permits() as u32;
            if free == 0 {
                tokio::select! {
                    permit = slots.clone().acquire_owned() => drop(permit),
                    changed = stop.changed() => if changed.is_err() { break },
                }
                continue;
            }
            let notified = runner.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let leased = if free == 0 {
                Vec::new()
            } else {
                match runner
                    .queue
                    .store
                    .lease(QUEUE, free, lease_us, now_us())
                    .await
                {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("cannot lease async jobs: {e}");
                        Vec::new()
                    }
                }
            };
            if leased.is_empty() {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    changed = stop.changed() => if changed.is_err() { break },
                }
                continue;
            }
            for message in leased {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let runner = runner.clone();
                tokio::spawn(async move {
                    runner.run(message).await;
                    drop(permit);
                });
            }
        }
        let _ = slots.acquire_many(CONCURRENCY).await;
    })
}

impl AsyncRunner {
    async fn run(&self, message: Leased) {
        let id = message.event.id.clone();
        let job = match self.jobs.get(&id).await {
            Ok(Some(job)) if job.finished_us.is_none() => job,
            Ok(Some(job)) => {
                // Finished already (a redelivery after a crash past `finish`): announce again
                // (the completion event is deduplicated by id) and ack.
                self.announce(&job).await;
                let _ = self
                    .queue
                    .store
                    .ack(QUEUE, &message.id, &message.token)
                    .await;
                return;
            }
            Ok(None) => {
                let _ = self
                    .queue
                    .store
                    .ack(QUEUE, &message.id, &message.token)
                    .await;
                return;
            }
            Err(e) => {
                tracing::error!(invocation = %id, "cannot read async job: {e}");
                return;
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
                // Hold the job for as long as the function may run, from now on: the first
                // lease may be shorter than the keeper's first extension is away.
                let lease = f.timeout() + LEASE_MARGIN;
                let until = now_us() + super::queue::micros(lease);
                match self
                    .queue
                    .store
                    .extend(QUEUE, &message.id, &message.token, until)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return, // another worker has it now
                    Err(e) => {
                        tracing::warn!(invocation = %id, "cannot extend the async job's lease: {e}");
                        return;
                    }
                }
                let _keeper = LeaseKeeper::start(
                    self.queue.store.clone(),
                    QUEUE.to_owned(),
                    vec![(message.id.clone(), message.token.clone())],
                    lease,
                );
                if !self.invoke(f, &job, &mut done).await {
                    // No free instance: put it back without finishing it.
                    let at = now_us() + super::queue::micros(Duration::from_millis(200));
                    let _ = self
                        .queue
                        .store
                        .release(QUEUE, &message.id, &message.token, at)
                        .await;
                    return;
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
            return;
        }
        if let Ok(Some(stored)) = self.jobs.get(&id).await {
            self.announce(&stored).await;
        }
        let _ = self
            .queue
            .store
            .ack(QUEUE, &message.id, &message.token)
            .await;
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
