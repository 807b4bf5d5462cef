//! `[[ingest.mqtt]]`: a bridge from an MQTT broker into a stream.
//!
//! It subscribes with QoS 1 on a persistent session (`clean_session = false`, a stable
//! client id), so the broker keeps what arrives while the bridge is away. Messages are
//! acknowledged (PUBACK) only after they are stored in the stream: a crash before that
//! makes the broker send them again. One task reads the connection and hands messages to
//! a bounded channel; another stores what has arrived as one append and then acknowledges
//! it. When storing falls behind, the channel fills, the reader stops reading, and the
//! broker's in-flight window holds the producers back: nothing is dropped.
//!
//! A payload that is not JSON (with `format = "json"`) or lacks the stream's key is
//! dead-lettered in the stream (consumer `ingest.mqtt[<n>]`, with the topic and why),
//! acknowledged, and the bridge goes on.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, MqttOptions, Packet, Publish, QoS,
    SubscribeFilter, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use updraft_manifest::{BrokerAddr, MqttIngest, PayloadFormat};
use updraft_runtime::{AppendError, StreamHandle, now_us};
use updraft_store::{Event, StreamRecord};

/// Messages read and not yet stored, at most.
const MAX_PENDING: usize = 1_024;
/// Messages stored in one append, at most.
const MAX_APPEND: usize = 1_024;
/// Requests (acks, subscribes) the client queues for the connection; above what can be
/// pending, so an ack never waits on a reader that waits on the store.
const CLIENT_CAPACITY: usize = 4 * MAX_PENDING;
/// Messages the broker may have in flight to us (MQTT's receive maximum, for brokers that
/// honour the client's).
const INFLIGHT: u16 = 1_000;
/// Largest message accepted (as a stream event's limit).
const MAX_PACKET: usize = 1 << 20;
/// How soon acknowledgements that did not fit the client's queue are tried again when no
/// message arrives.
const ACK_RETRY: Duration = Duration::from_millis(10);
/// Longest wait between reconnects.
const MAX_RECONNECT: Duration = Duration::from_secs(30);

/// One running `[[ingest.mqtt]]`.
pub struct Bridge {
    name: String,
    addr: BrokerAddr,
    options: MqttOptions,
    topics: Vec<String>,
    device: Option<usize>,
    ty: String,
    format: PayloadFormat,
    stream: Arc<StreamHandle>,
}

impl Bridge {
    /// The bridge of `ingest.mqtt[index]` of `app`.
    pub fn new(
        app: &updraft_manifest::LoadedManifest,
        index: usize,
        config: &MqttIngest,
        stream: Arc<StreamHandle>,
    ) -> anyhow::Result<Self> {
        let name = format!("ingest.mqtt[{index}]");
        let addr = config
            .broker_addr()
            .map_err(|e| anyhow::anyhow!("`{name}.broker`: {e}"))?;
        let client_id = config.client_id.clone().unwrap_or_else(|| {
            format!(
                "updraft-{}-{}-{index}",
                app.manifest.app.name, config.stream
            )
        });
        let mut options = MqttOptions::new(client_id, addr.host.clone(), addr.port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_inflight(INFLIGHT)
            .set_max_packet_size(MAX_PACKET + 64 * 1024, MAX_PACKET + 64 * 1024);
        if let Some(user_var) = &config.username_env {
            let user = env(&name, "username_env", user_var)?;
            let password = match &config.password_env {
                Some(var) => env(&name, "password_env", var)?,
                None => String::new(),
            };
            options.set_credentials(user, password);
        }
        if addr.tls {
            let ca = config.ca.as_ref().map(|p| app.resolve(p));
            let tls = tls_config(ca.as_deref()).map_err(|e| anyhow::anyhow!("`{name}.ca`: {e}"))?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        }
        Ok(Self {
            name,
            addr,
            options,
            topics: config.topics.clone(),
            device: config.device,
            ty: config
                .ty
                .clone()
                .unwrap_or_else(|| "updraft.mqtt".to_owned()),
            format: config.format.unwrap_or_default(),
            stream,
        })
    }

    /// Reads the broker and stores what arrives until `stop` turns true, reconnecting
    /// with backoff.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let (client, mut connection) = AsyncClient::new(self.options.clone(), CLIENT_CAPACITY);
        let (tx, rx) = mpsc::channel::<Publish>(MAX_PENDING);
        let bridge = Arc::new(self);
        let storer = tokio::spawn(bridge.clone().store_loop(rx, client.clone()));
        let mut failures: u32 = 0;
        loop {
            let polled = tokio::select! {
                polled = connection.poll() => polled,
                _ = stop.changed() => break,
            };
            match polled {
                Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                    failures = 0;
                    tracing::info!(
                        bridge = %bridge.name, session_present = ack.session_present,
                        "connected to {}:{}", bridge.addr.host, bridge.addr.port
                    );
                    let filters = bridge
                        .topics
                        .iter()
                        .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                    if let Err(e) = client.subscribe_many(filters).await {
                        tracing::error!(bridge = %bridge.name, "cannot subscribe: {e}");
                    }
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    // Waits while the store is behind: the broker holds the rest.
                    if tx.send(p).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = Duration::from_millis(200)
                        .saturating_mul(1 << failures.min(8))
                        .min(MAX_RECONNECT);
                    log_connection_error(&bridge, &e, failures, wait);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
        }
        drop(tx);
        let _ = storer.await;
    }

    /// Stores what the reader hands over, a batch at a time, then acknowledges it.
    ///
    /// Acknowledgements never wait: only the reader's polling sends them, and the reader
    /// may itself be waiting for this loop to take what it read, so an ack that does not fit
    /// the client's queue is kept and tried again after the next batch (or shortly, when
    /// nothing more arrives) instead of blocking.
    async fn store_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Publish>, client: AsyncClient) {
        let mut batch = Vec::with_capacity(MAX_APPEND);
        let mut unsent: Vec<Publish> = Vec::new();
        loop {
            let first = if unsent.is_empty() {
                rx.recv().await
            } else {
                match tokio::time::timeout(ACK_RETRY, rx.recv()).await {
                    Ok(first) => first,
                    Err(_) => {
                        unsent.retain(|p| client.try_ack(p).is_err());
                        continue;
                    }
                }
            };
            let Some(first) = first else {
                break;
            };
            batch.push(first);
            while batch.len() < MAX_APPEND {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            self.store(&batch).await;
            unsent.retain(|p| client.try_ack(p).is_err());
            for p in batch.drain(..) {
                if client.try_ack(&p).is_err() {
                    unsent.push(p);
                }
            }
        }
        if !unsent.is_empty() {
            // The connection is gone: the broker sends these again on the session.
            tracing::warn!(
                bridge = %self.name,
                "{} stored messages were not acknowledged; the broker will send them again",
                unsent.len()
            );
        }
    }

    /// Stores `batch` (retrying until it is stored), dead-lettering what cannot be an
    /// event of the stream.
    async fn store(&self, batch: &[Publish]) {
        let mut events = Vec::with_capacity(batch.len());
        for p in batch {
            match self.event(p) {
                Ok(e) => events.push(e),
                Err(why) => self.dead_letter(p, &why).await,
            }
        }
        if events.is_empty() {
            return;
        }
        let count = events.len() as u64;
        // Bounded by the store coming back; a bridge that cannot store holds its messages
        // unacknowledged, and the broker keeps them.
        let mut wait = Duration::from_millis(20);
        loop {
            match self.stream.append(events.clone()).await {
                Ok(_) => break,
                Err(AppendError::NoKey(why)) => {
                    // Checked per event in `event`; a batch refused here is split so the
                    // event without a key is dead-lettered alone.
                    tracing::error!(bridge = %self.name, "{why}");
                    for (p, e) in batch.iter().zip(events.clone()) {
                        if let Err(AppendError::NoKey(why)) = self.stream.append(vec![e]).await {
                            self.dead_letter(p, &why).await;
                        }
                    }
                    break;
                }
                Err(AppendError::Busy(_)) => {}
                Err(AppendError::Store(e)) => {
                    tracing::error!(bridge = %self.name, "cannot store messages, retrying: {e}");
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        metrics::counter!("updraft_stream_ingested_total", "stream" => self.stream.name.clone())
            .increment(count);
    }

    /// The event a message becomes, or why it cannot be one.
    fn event(&self, p: &Publish) -> Result<Event, String> {
        if self.format == PayloadFormat::Json
            && serde_json::from_slice::<serde_json::Value>(&p.payload).is_err()
        {
            return Err(format!(
                "the payload on `{}` is not JSON; send JSON, or set `format = \"raw\"` on `{}`",
                p.topic, self.name
            ));
        }
        let mut extensions = Vec::new();
        if let Some(level) = self.device {
            let device = p
                .topic
                .split('/')
                .nth(level - 1)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| {
                    format!(
                        "topic `{}` has no level {level} to take the device id from (`device` of `{}`)",
                        p.topic, self.name
                    )
                })?;
            extensions.push(("deviceid".to_owned(), device.to_owned()));
        }
        let event = Event {
            id: uuid::Uuid::now_v7().to_string(),
            source: format!("/mqtt/{}", p.topic),
            ty: self.ty.clone(),
            subject: Some(p.topic.clone()),
            time: Some(humantime::format_rfc3339_micros(SystemTime::now()).to_string()),
            datacontenttype: (self.format == PayloadFormat::Json)
                .then(|| "application/json".to_owned()),
            data: p.payload.to_vec(),
            extensions,
        };
        self.stream.key_of(&event)?;
        Ok(event)
    }

    async fn dead_letter(&self, p: &Publish, why: &str) {
        tracing::warn!(bridge = %self.name, topic = %p.topic, "dead-lettered: {why}");
        metrics::counter!("updraft_ingest_dead_lettered_total", "stream" => self.stream.name.clone())
            .increment(1);
        // Never stored, so it has no partition or offset of its own.
        let record = StreamRecord {
            partition: 0,
            offset: 0,
            appended_us: now_us(),
            event: Event {
                id: uuid::Uuid::now_v7().to_string(),
                source: format!("/mqtt/{}", p.topic),
                ty: self.ty.clone(),
                subject: Some(p.topic.clone()),
                data: p.payload.to_vec(),
                ..Event::default()
            },
        };
        if let Err(e) = self
            .stream
            .store
            .dead_letter(&self.name, &record, why, now_us())
            .await
        {
            tracing::error!(bridge = %self.name, "cannot dead-letter a message: {e}");
        }
    }
}

fn log_connection_error(bridge: &Bridge, e: &ConnectionError, failures: u32, wait: Duration) {
    // The first failure in a row is an error; the retries after it are quieter.
    if failures <= 1 {
        tracing::error!(
            bridge = %bridge.name,
            "lost the broker {}:{}: {e}; reconnecting",
            bridge.addr.host, bridge.addr.port
        );
    } else {
        tracing::debug!(bridge = %bridge.name, "broker still unreachable: {e}; next try in {wait:?}");
    }
}

fn env(bridge: &str, key: &str, var: &str) -> anyhow::Result<String> {
    std::env::var(var).map_err(|_| {
        anyhow::anyhow!(
            "`{bridge}.{key}` names `{var}`, which is not set; export it before `updraft up`"
        )
    })
}

/// TLS with the ring provider, the system's root certificates and those of `ca`.
fn tls_config(ca: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    updraft_store::tls::client_config(ca).map_err(anyhow::Error::msg)
}
