//! `updraft simulate`: devices sending readings, over MQTT (QoS 1) or in batches to an
//! `[[ingest.http]]` route, for trying a stream app and measuring one.
//!
//! Each round every device sends one reading `{"device", "time", "celsius", "humidity"}`.
//! Times are the wall clock, or, with `--start`, simulated: `--start` plus `--step` per
//! round, so minutes of data can be sent in seconds. A reading counts as sent when the
//! broker acknowledged it (MQTT) or the route answered 200 (HTTP); a 503 is retried after
//! its `Retry-After`, so the simulator slows down with the app instead of dropping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// The whole run at most, whatever the flags say.
const MAX_RUN: Duration = Duration::from_secs(24 * 3600);
/// How long to wait for the last acknowledgements.
const ACK_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Publish to this MQTT broker (`mqtt://127.0.0.1:1883`).
    #[arg(long, conflicts_with = "http", required_unless_present = "http")]
    mqtt: Option<String>,
    /// POST JSON lines to this ingest route (`http://127.0.0.1:8080/ingest`).
    #[arg(long)]
    http: Option<String>,
    /// The MQTT topic; `{device}` is replaced by the device id.
    #[arg(long, default_value = "sensors/{device}/reading")]
    topic: String,
    /// How many devices.
    #[arg(long, default_value_t = 100)]
    devices: u32,
    /// Readings per second over all devices (0: as fast as the app takes them).
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// Rounds (one reading per device each); default: until `--for` ends.
    #[arg(long)]
    rounds: Option<u64>,
    /// How long to send (`30s`, `5m`) when `--rounds` is not given.
    #[arg(long = "for", default_value = "10s")]
    duration: String,
    /// Simulated time of the first round (RFC 3339); default: the wall clock.
    #[arg(long)]
    start: Option<String>,
    /// Simulated time between rounds, with `--start`.
    #[arg(long, default_value = "1s")]
    step: String,
    /// Every Nth reading is a spike to 45 °C (0: none).
    #[arg(long, default_value_t = 0)]
    spike_every: u64,
    /// Readings per HTTP request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

/// Where readings go.
enum Sink {
    Mqtt {
        client: rumqttc::AsyncClient,
        acked: Arc<AtomicU64>,
        task: tokio::task::JoinHandle<()>,
    },
    Http {
        client: reqwest::Client,
        url: String,
        pending: Vec<String>,
    },
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.devices == 0 {
        bail!("`--devices` must be at least 1");
    }
    let duration = humantime::parse_duration(&args.duration)
        .with_context(|| format!("`--for {}` is not a duration like 30s", args.duration))?
        .min(MAX_RUN);
    let step = humantime::parse_duration(&args.step)
        .with_context(|| format!("`--step {}` is not a duration like 1s", args.step))?;
    let start_ms = match &args.start {
        Some(s) => Some(
            humantime::parse_rfc3339_weak(s)
                .with_context(|| format!("`--start {s}` is not an RFC 3339 time"))?
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        ),
        None => None,
    };
    let mut sink = match (&args.mqtt, &args.http) {
        (Some(broker), _) => connect_mqtt(broker)?,
        (None, Some(url)) => Sink::Http {
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()?,
            url: url.clone(),
            pending: Vec::new(),
        },
        (None, None) => bail!("give `--mqtt <broker>` or `--http <ingest url>`"),
    };
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut round: u64 = 0;
    loop {
        let done = match args.rounds {
            Some(rounds) => round >= rounds,
            None => started.elapsed() >= duration,
        };
        if done || started.elapsed() >= MAX_RUN {
            break;
        }
        let time_ms = start_ms.map_or_else(now_ms, |s| {
            s + i64::try_from(step.as_millis()).unwrap_or(0) * round as i64
        });
        for device in 0..args.devices {
            sent += 1;
            let spike = args.spike_every > 0 && sent.is_multiple_of(args.spike_every);
            let reading = reading(device, round, time_ms, spike);
            sink.send(&args, device, reading).await?;
            if args.rate > 0 {
                // Keep to the rate on average: sleep when ahead of schedule.
                let due = Duration::from_secs_f64(sent as f64 / f64::from(args.rate));
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(ahead).await;
                }
            }
        }
        round += 1;
    }
    let accepted = sink.finish(sent).await?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "sent {sent} readings from {} devices in {:.1} s ({:.0}/s); {accepted} acknowledged",
        args.devices,
        secs,
        sent as f64 / secs
    );
    if accepted < sent {
        bail!("{} readings were not acknowledged", sent - accepted);
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn device_id(device: u32) -> String {
    format!("dev-{device:04}")
}

/// A plausible reading: each device has its own base temperature, drifting slowly.
fn reading(device: u32, round: u64, time_ms: i64, spike: bool) -> String {
    let base = 18.0 + f64::from(device % 80) / 10.0;
    let drift = ((round as f64) / 10.0 + f64::from(device)).sin() * 2.0;
    let celsius = if spike { 45.0 } else { base + drift };
    let humidity = 40.0 + f64::from(device % 30);
    format!(
        "{{\"device\":\"{}\",\"time\":{time_ms},\"celsius\":{celsius:.2},\"humidity\":{humidity:.1}}}",
        device_id(device)
    )
}

fn connect_mqtt(broker: &str) -> anyhow::Result<Sink> {
    let addr = updraft_manifest::BrokerAddr::parse(broker).map_err(anyhow::Error::msg)?;
    if addr.tls {
        bail!("the simulator speaks plain MQTT; give an mqtt:// broker");
    }
    let id = format!("updraft-simulate-{}", std::process::id());
    let mut options = rumqttc::MqttOptions::new(id, addr.host, addr.port);
    options
        .set_inflight(1_000)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = rumqttc::AsyncClient::new(options, 10_000);
    let acked = Arc::new(AtomicU64::new(0));
    let count = acked.clone();
    let task = tokio::spawn(async move {
        let mut failures = 0u32;
        // Ends when the client is dropped (the connection reports it) or the task aborts.
        loop {
            match connection.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    failures = 0;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        eprintln!("mqtt: {e}; reconnecting");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Ok(Sink::Mqtt {
        client,
        acked,
        task,
    })
}

impl Sink {
    async fn send(
        &mut self,
        args: &SimulateArgs,
        device: u32,
        reading: String,
    ) -> anyhow::Result<()> {
        match self {
            Sink::Mqtt { client, .. } => {
                let topic = args.topic.replace("{device}", &device_id(device));
                client
                    .publish(topic, rumqttc::QoS::AtLeastOnce, false, reading)
                    .await
                    .context("cannot publish")?;
            }
            Sink::Http { pending, .. } => {
                pending.push(reading);
                if pending.len() >= args.batch.max(1) {
                    self.flush().await?;
                }
            }
        }
        Ok(())
    }

    /// Posts the pending readings, retrying a 503 after its `Retry-After`.
    async fn flush(&mut self) -> anyhow::Result<()> {
        let Sink::Http {
            client,
            url,
            pending,
        } = self
        else {
            return Ok(());
        };
        if pending.is_empty() {
            return Ok(());
        }
        let mut body = pending.join("\n");
        body.push('\n');
        for _ in 0..600 {
            let r = client
                .post(url.as_str())
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await
                .with_context(|| format!("cannot reach `{url}`"))?;
            match r.status().as_u16() {
                200 => {
                    pending.clear();
                    return Ok(());
                }
                // Busy: `Retry-After` says a second, but a stream drains in far less; try
                // again sooner, at most 600 times.
                503 => tokio::time::sleep(Duration::from_millis(100)).await,
                status => {
                    let text = r.text().await.unwrap_or_default();
                    bail!("`{url}` answered {status}: {}", text.trim());
                }
            }
        }
        bail!(
            "`{url}` stayed busy; {} readings were not sent",
            pending.len()
        )
    }

    /// Sends what is pending and waits for acknowledgements; returns how many there were.
    async fn finish(&mut self, sent: u64) -> anyhow::Result<u64> {
        match self {
            Sink::Http { .. } => {
                self.flush().await?;
                Ok(sent)
            }
            Sink::Mqtt { acked, task, .. } => {
                let end = Instant::now() + ACK_WAIT;
                while acked.load(Ordering::Relaxed) < sent && Instant::now() < end {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                task.abort();
                Ok(acked.load(Ordering::Relaxed))
            }
        }
    }
}
