//! The NATS anchor: one work-queue stream (file storage) with one durable pull consumer
//! (explicit ack), configured as updraft configures a queue's; nothing else (no headers, no
//! lease records, no envelope).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use futures::StreamExt;
use futures::future::join_all;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout};

use crate::{Common, left, log, now_us, num, pct};

/// Most messages one fetch takes in the drain.
const CHUNK: usize = 100;
/// Longest wait for one server answer.
const WAIT: Duration = Duration::from_secs(30);
/// The consumer's ack wait (updraft's default lease).
const ACK_WAIT: Duration = Duration::from_secs(30);

/// Message `k`: its send time (µs, big endian), `k`, filler up to `size` bytes.
fn payload(k: u64, at_us: i64, size: usize) -> bytes::Bytes {
    let mut v = Vec::with_capacity(size.max(16));
    v.extend_from_slice(&at_us.to_be_bytes());
    v.extend_from_slice(&k.to_be_bytes());
    v.extend((16..size).map(|i| b'a' + (i % 26) as u8));
    v.into()
}

fn sent_us(payload: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(payload.get(..8)?.try_into().ok()?))
}

/// A double ack as updraft sends it: `+ACK` as a request the server answers.
async fn double_ack(client: &async_nats::Client, reply: Option<&str>) -> Result<(), String> {
    let reply = reply.ok_or("a delivery without an ack subject")?;
    timeout(WAIT, client.request(reply.to_owned(), "+ACK".into()))
        .await
        .map_err(|_| "ack timed out".to_string())?
        .map(drop)
        .map_err(|e| format!("ack: {e}"))
}

pub async fn run(url: &str, inflight: usize, c: &Common) -> Result<serde_json::Value, String> {
    let deadline = Instant::now() + Duration::from_secs_f64(c.limit);
    let client = timeout(
        Duration::from_secs(10),
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(WAIT))
            .connect(url),
    )
    .await
    .map_err(|_| format!("cannot connect to {url}: timed out"))?
    .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    // Room for every publish ack of phase (a) at once (they are awaited after all sends).
    let js = jetstream::ContextBuilder::new()
        .timeout(WAIT)
        .max_ack_inflight(usize::try_from(c.messages).unwrap_or(usize::MAX).max(5_000) + 1)
        .build(client.clone());
    let tag = format!("{}_{}", std::process::id(), now_us());
    let name = format!("anchor-{tag}");
    let subject = format!("anchor.{tag}.q");
    let stream = timeout(
        WAIT,
        js.create_stream(Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: 1,
            duplicate_window: Duration::from_secs(600),
            allow_direct: true,
            ..Default::default()
        }),
    )
    .await
    .map_err(|_| "create stream: timed out".to_string())?
    .map_err(|e| format!("create stream {name}: {e}"))?;
    let result = async {
        let consumer: PullConsumer = timeout(
            WAIT,
            stream.create_consumer(pull::Config {
                durable_name: Some("worker".into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_deliver: -1,
                max_ack_pending: -1,
                ..Default::default()
            }),
        )
        .await
        .map_err(|_| "create consumer: timed out".to_string())?
        .map_err(|e| format!("create consumer: {e}"))?;
        let run = Run {
            client: &client,
            js: &js,
            consumer: &consumer,
            subject: &subject,
            inflight,
            c,
            deadline,
        };
        phases(run).await
    }
    .await;
    match timeout(WAIT, js.delete_stream(&name)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => log(format!("cannot delete stream {name}: {e}")),
        Err(_) => log(format!("cannot delete stream {name}: timed out")),
    }
    let _ = timeout(Duration::from_secs(5), client.flush()).await;
    result
}

/// What every phase of a run works with.
#[derive(Clone, Copy)]
struct Run<'a> {
    client: &'a async_nats::Client,
    js: &'a Context,
    consumer: &'a PullConsumer,
    subject: &'a str,
    /// Most deliveries left unacked at once.
    inflight: usize,
    c: &'a Common,
    /// When everything must be over.
    deadline: Instant,
}

async fn phases(run: Run<'_>) -> Result<serde_json::Value, String> {
    let Run {
        client,
        js,
        consumer,
        subject,
        inflight: _,
        c,
        deadline,
    } = run;
    let n = c.messages;

    // (a) Publish: send all, then await every publish ack.
    let t0 = Instant::now();
    let mut acks = Vec::with_capacity(n as usize);
    for k in 0..n {
        if Instant::now() >= deadline {
            break;
        }
        let ack = timeout(
            WAIT,
            js.publish(subject.to_owned(), payload(k, now_us(), c.payload)),
        )
        .await
        .map_err(|_| "publish: timed out".to_string())?
        .map_err(|e| format!("publish: {e}"))?;
        acks.push(ack);
    }
    let sent = acks.len();
    let mut published = 0u64;
    for ack in acks {
        match timeout(left(deadline).min(WAIT), ack.into_future()).await {
            Ok(Ok(_)) => published += 1,
            Ok(Err(e)) => return Err(format!("publish ack: {e}")),
            Err(_) => {
                return Err(format!(
                    "publish acks: {published} of {sent} by the deadline"
                ));
            }
        }
    }
    let publish_secs = t0.elapsed().as_secs_f64();
    let publish_rate = published as f64 / publish_secs;
    log(format!(
        "nats publish: {published} in {publish_secs:.2} s = {publish_rate:.0}/s (acks pipelined)"
    ));

    // (b) Drain: fetch up to 100 without waiting, double-ack them all at once, again.
    let t0 = Instant::now();
    let mut drained = 0u64;
    let mut empty = 0;
    for _ in 0..(n / CHUNK as u64 + 1_000) {
        if drained >= published || Instant::now() >= deadline {
            break;
        }
        let mut batch = timeout(WAIT, consumer.fetch().max_messages(CHUNK).messages())
            .await
            .map_err(|_| "fetch: timed out".to_string())?
            .map_err(|e| format!("fetch: {e}"))?;
        let mut got = Vec::with_capacity(CHUNK);
        for _ in 0..=CHUNK {
            match timeout(WAIT, batch.next()).await {
                Ok(Some(Ok(m))) => got.push(m),
                Ok(Some(Err(e))) => return Err(format!("fetch: {e}")),
                Ok(None) => break,
                Err(_) => return Err("fetch: timed out".into()),
            }
        }
        if got.is_empty() {
            // Published and acknowledged, so it is there: give the server a moment.
            empty += 1;
            if empty > 500 {
                return Err(format!(
                    "drain: nothing to fetch after {drained} of {published}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        let results = join_all(got.iter().map(|m| double_ack(client, m.reply.as_deref()))).await;
        for r in results {
            r?;
            drained += 1;
        }
    }
    let drain_secs = t0.elapsed().as_secs_f64();
    let drain_rate = drained as f64 / drain_secs;
    log(format!(
        "nats drain: {drained} fetched and double-acked in {drain_secs:.2} s = {drain_rate:.0} msg/s"
    ));
    if drained != published {
        return Err(format!("drained {drained} of {published}"));
    }

    let p = paced(run).await?;
    let mut out = json!({
        "engine": "nats",
        "messages": published,
        "payload": c.payload,
        "enqueue_rate": num(publish_rate),
        "enqueue_secs": num(publish_secs),
        "drain_rate": num(drain_rate),
        "drain_secs": num(drain_secs),
        "drained": drained,
        "ack": "double (+ACK request)",
    });
    if let (Some(o), serde_json::Value::Object(p)) = (out.as_object_mut(), p) {
        o.extend(p);
    }
    Ok(out)
}

/// (c) One publish every 1/rate s (its ack awaited on the side) while a task reads the
/// consumer's long-lived pull stream (`messages()`) and double-acks each delivery (at most
/// `inflight` unsettled). Latency: the clock before the publish to the clock on receipt.
async fn paced(run: Run<'_>) -> Result<serde_json::Value, String> {
    let Run {
        client,
        js,
        consumer,
        subject,
        inflight,
        c,
        deadline,
    } = run;
    let n = c.paced_count();
    let mut messages = timeout(WAIT, consumer.messages())
        .await
        .map_err(|_| "messages: timed out".to_string())?
        .map_err(|e| format!("messages: {e}"))?;
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let end = (Instant::now() + Duration::from_millis(200))
        .checked_add(Duration::from_secs_f64(c.duration + 30.0))
        .unwrap_or(deadline)
        .min(deadline);
    let end_tokio = tokio::time::Instant::from_std(end);

    let acked = Arc::new(AtomicU64::new(0));
    let ack_client = client.clone();
    let acked_in = acked.clone();
    let receiver = tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(inflight));
        let mut acks = JoinSet::new();
        let mut latencies = Vec::with_capacity(n as usize);
        let mut errors = 0u64;
        // Bounded by `end` and by `n` receipts.
        while (latencies.len() as u64) < n {
            match tokio::time::timeout_at(end_tokio, messages.next()).await {
                Ok(Some(Ok(m))) => {
                    let t = now_us();
                    if let Some(at) = sent_us(&m.payload) {
                        latencies.push((t - at) as f64 / 1e3);
                    }
                    let Ok(permit) =
                        tokio::time::timeout_at(end_tokio, permits.clone().acquire_owned()).await
                    else {
                        break;
                    };
                    let client = ack_client.clone();
                    let acked = acked_in.clone();
                    acks.spawn(async move {
                        if double_ack(&client, m.reply.as_deref()).await.is_ok() {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        drop(permit);
                    });
                    // Reap finished acks as we go.
                    while acks.try_join_next().is_some() {}
                }
                Ok(Some(Err(e))) => {
                    errors += 1;
                    log(format!("nats paced: pull stream: {e}"));
                    if errors > 100 {
                        break;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let _ = tokio::time::timeout_at(end_tokio + WAIT, async {
            while acks.join_next().await.is_some() {}
        })
        .await;
        acks.abort_all();
        (latencies, errors)
    });

    let mut publish_acks = JoinSet::new();
    let mut lags = Vec::with_capacity(n as usize);
    let period = Duration::from_secs_f64(1.0 / c.rate);
    let (mut sent, mut published_ok) = (0u64, 0u64);
    for k in 0..n {
        let due = start + period.mul_f64(k as f64);
        if due >= end_tokio {
            break;
        }
        sleep_until(due).await;
        lags.push(
            tokio::time::Instant::now()
                .saturating_duration_since(due)
                .as_secs_f64()
                * 1e3,
        );
        let ack = timeout(
            WAIT,
            js.publish(subject.to_owned(), payload(k, now_us(), c.payload)),
        )
        .await
        .map_err(|_| "paced publish: timed out".to_string())?
        .map_err(|e| format!("paced publish: {e}"))?;
        publish_acks.spawn(async move {
            timeout(WAIT, ack.into_future())
                .await
                .is_ok_and(|r| r.is_ok())
        });
        sent += 1;
        while let Some(r) = publish_acks.try_join_next() {
            published_ok += u64::from(r.unwrap_or(false));
        }
    }
    let _ = timeout(left(deadline).min(WAIT + Duration::from_secs(1)), async {
        while let Some(r) = publish_acks.join_next().await {
            published_ok += u64::from(r.unwrap_or(false));
        }
    })
    .await;
    publish_acks.abort_all();
    let (mut latencies, errors) = timeout(left(deadline) + Duration::from_secs(1), receiver)
        .await
        .map_err(|_| "the paced receiver did not end".to_string())?
        .map_err(|e| format!("the paced receiver failed: {e}"))?;
    let received = latencies.len();
    let acked = acked.load(Ordering::Relaxed);
    let max = latencies.iter().copied().fold(f64::NAN, f64::max);
    let (p50, p99) = (pct(&mut latencies, 50.0), pct(&mut latencies, 99.0));
    let lag99 = pct(&mut lags, 99.0);
    log(format!(
        "nats paced @{:.0}/s: {sent} published ({published_ok} acknowledged), {received} \
         received, {acked} double-acked, {errors} pull errors; publish -> received p50 \
         {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; send lag p99 {lag99:.2} ms",
        c.rate
    ));
    Ok(json!({
        "paced_rate": num(c.rate),
        "paced_duration": num(c.duration),
        "paced_sent": sent,
        "paced_committed": published_ok,
        "paced_leased": received,
        "paced_acked": acked,
        "p50_ms": num(p50),
        "p99_ms": num(p99),
        "max_ms": num(max),
        "lag99_ms": num(lag99),
    }))
}
