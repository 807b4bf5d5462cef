//! `[stream.<name>]` and `[[ingest.http]]`: partitioned event streams and the routes that
//! feed them (DESIGN §9 "Streams").
//!
//! A stream keeps events in order per partition; an event's partition is the hash of its
//! key, so every event of one device lands in one partition and is seen in order.

use std::time::Duration;

use serde::Deserialize;

use crate::error::ManifestError;
use crate::types::Manifest;
use crate::validate::declared;
use crate::values::{ByteSize, HumanDuration};

/// Partitions when a stream does not say.
pub const DEFAULT_PARTITIONS: u32 = 4;
/// Most partitions a stream may have.
pub const MAX_PARTITIONS: u32 = 256;
/// How long a stream keeps events (DESIGN §9: 7 days).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How many bytes of events a partition keeps (DESIGN §9: 1 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// How long a partition is idle before its consumers get a tick event.
pub const DEFAULT_TICK: Duration = Duration::from_secs(10);

/// `[stream.<name>]`: a partitioned, ordered, replayable log of events.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDecl {
    /// How many partitions (default 4, at most 256); events of one key share one.
    #[serde(default)]
    pub partitions: Option<u32>,
    /// What an event's partition is the hash of: a CloudEvents attribute or extension
    /// (`"deviceid"`, `"subject"`), or a JSON field of its data (`"data.device.id"`).
    /// Without it, the event's `subject`, else its `id`.
    #[serde(default)]
    pub key: Option<String>,
    /// How long events are kept (default `"7d"`).
    #[serde(default)]
    pub retention: Option<HumanDuration>,
    /// Most bytes kept per partition (default `"1GiB"`); the oldest go first.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// Idle time after which a partition's consumers get an `updraft.stream.tick` event
    /// (default `"10s"`), so windows close on quiet keys.
    #[serde(default)]
    pub tick: Option<HumanDuration>,
}

/// Where an event's partition key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A context attribute or extension, by name.
    Attribute(String),
    /// A field of the JSON data, by path (`["device", "id"]`).
    Data(Vec<String>),
}

impl StreamDecl {
    /// Partitions in force.
    pub fn partition_count(&self) -> u32 {
        self.partitions.unwrap_or(DEFAULT_PARTITIONS)
    }
    /// Retention in force.
    pub fn retention_duration(&self) -> Duration {
        self.retention.map_or(DEFAULT_RETENTION, |d| d.0)
    }
    /// Bytes per partition in force.
    pub fn max_bytes_per_partition(&self) -> u64 {
        self.max_bytes.map_or(DEFAULT_MAX_BYTES, |b| b.0)
    }
    /// Tick interval in force.
    pub fn tick_interval(&self) -> Duration {
        self.tick.map_or(DEFAULT_TICK, |d| d.0)
    }
    /// Where the key comes from; `None` means subject, else id.
    pub fn key_source(&self) -> Option<KeySource> {
        let key = self.key.as_deref()?;
        Some(match key.strip_prefix("data.") {
            Some(path) => KeySource::Data(path.split('.').map(str::to_owned).collect()),
            None => KeySource::Attribute(key.to_owned()),
        })
    }
}

/// `[ingest]`: ways events get into streams from outside.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingest {
    /// `[[ingest.http]]`: user routes taking batches of events.
    #[serde(default)]
    pub http: Vec<HttpIngest>,
    /// `[[ingest.mqtt]]`: MQTT brokers whose messages are bridged into streams.
    #[serde(default)]
    pub mqtt: Vec<MqttIngest>,
}

/// `[[ingest.mqtt]]`: subscribes to an MQTT broker (QoS 1, a persistent session) and
/// stores each message in a stream before acknowledging it to the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttIngest {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS, the system's root certificates).
    pub broker: String,
    /// Topic filters, with `+` for one level and a final `#` for the rest.
    pub topics: Vec<String>,
    /// The `[stream.<name>]` the messages go to.
    pub stream: String,
    /// The topic level (from 1) holding the device id; it becomes the event's `deviceid`.
    #[serde(default)]
    pub device: Option<usize>,
    /// The MQTT client id, which names the broker's session (default
    /// `updraft-<app>-<stream>-<n>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// PEM certificates to trust for an `mqtts://` broker besides the system's roots (a
    /// private CA, or the broker's own self-signed certificate), relative to the manifest.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// An environment variable holding the user name.
    #[serde(default)]
    pub username_env: Option<String>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The `type` of the events (default `"updraft.mqtt"`).
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    /// `"json"` (default: a payload that is not JSON is dead-lettered) or `"raw"`.
    #[serde(default)]
    pub format: Option<PayloadFormat>,
}

/// What an MQTT payload must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// JSON; anything else is dead-lettered with the reason.
    #[default]
    Json,
    /// Any bytes.
    Raw,
}

/// A broker address from `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Over TLS.
    pub tls: bool,
    /// The host.
    pub host: String,
    /// The port (default 1883, or 8883 over TLS).
    pub port: u16,
}

impl MqttIngest {
    /// The broker's address, or why `broker` is not one.
    pub fn broker_addr(&self) -> Result<BrokerAddr, String> {
        BrokerAddr::parse(&self.broker)
    }
}

impl BrokerAddr {
    /// `mqtt://host[:port]` or `mqtts://host[:port]`, or why `url` is not one.
    pub fn parse(url: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{url}` is not a broker address; write it like \"mqtt://localhost:1883\" or \"mqtts://broker.example.com:8883\""
            )
        };
        let (tls, rest) = match url.split_once("://") {
            Some(("mqtt", rest)) => (false, rest),
            Some(("mqtts", rest)) => (true, rest),
            _ => return Err(bad()),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(bad());
        }
        Ok(Self {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        })
    }
}

/// Whether `filter` is a valid MQTT topic filter.
fn topic_filter_error(filter: &str) -> Option<String> {
    let levels: Vec<&str> = filter.split('/').collect();
    if filter.is_empty() {
        return Some("a topic filter is empty; give one like \"sensors/+/reading\"".to_owned());
    }
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains('+') || level.contains('#');
        if wild && *level != "+" && *level != "#" {
            return Some(format!(
                "`{filter}`: `+` and `#` stand for a whole level (`sensors/+/reading`)"
            ));
        }
        if *level == "#" && i + 1 != levels.len() {
            return Some(format!("`{filter}`: `#` may only be the last level"));
        }
    }
    None
}

/// `[[ingest.http]]`: a user route that takes JSON lines or a CloudEvents batch and
/// answers once every event is stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngest {
    /// The path it takes `POST`s on (`"/ingest"`).
    pub route: String,
    /// The `[stream.<name>]` its events go to.
    pub stream: String,
    /// `[gateway.auth.<label>]`s; any one lets a request in. Public when empty.
    #[serde(default)]
    pub auth: Vec<String>,
    /// The `type` given to a JSON line that is not a CloudEvent (default
    /// `"updraft.ingest"`).
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
}

pub(crate) fn validate(m: &Manifest) -> Result<(), ManifestError> {
    for (name, s) in &m.stream {
        let key = |k: &str| format!("stream.{name}.{k}");
        if !crate::is_id(name) {
            return Err(ManifestError::invalid(
                format!("stream.{name}"),
                "stream names use lowercase letters, digits and `-`, starting with a letter",
            ));
        }
        let partitions = s.partition_count();
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(ManifestError::invalid(
                key("partitions"),
                format!("{partitions} partitions: give between 1 and {MAX_PARTITIONS}"),
            ));
        }
        if let Some(KeySource::Data(path)) = s.key_source()
            && path.iter().any(String::is_empty)
        {
            return Err(ManifestError::invalid(
                key("key"),
                "a data key names a JSON field path like \"data.device.id\"",
            ));
        }
        if let Some(KeySource::Attribute(a)) = s.key_source()
            && (a.is_empty()
                || !a
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        {
            return Err(ManifestError::invalid(
                key("key"),
                format!(
                    "`{a}` is not a CloudEvents attribute name (lowercase letters and digits); name one like \"deviceid\" or a data field like \"data.device\""
                ),
            ));
        }
    }
    for (i, ingest) in m.ingest.http.iter().enumerate() {
        let key = |k: &str| format!("ingest.http[{i}].{k}");
        if !m.stream.contains_key(&ingest.stream) {
            return Err(ManifestError::invalid(
                key("stream"),
                format!(
                    "stream `{}` is not declared; add a `[stream.{}]` table{}",
                    ingest.stream,
                    ingest.stream,
                    declared(m.stream.keys())
                ),
            ));
        }
        if !ingest.route.starts_with('/') || ingest.route.starts_with("/_updraft") {
            return Err(ManifestError::invalid(
                key("route"),
                format!(
                    "`{}` is not a user route; give a path like \"/ingest\" (paths under `/_updraft/` are updraft's own)",
                    ingest.route
                ),
            ));
        }
        for label in &ingest.auth {
            if !m.gateway.auth.contains_key(label) {
                return Err(ManifestError::invalid(
                    key("auth"),
                    format!(
                        "auth `{label}` is not declared; add a `[gateway.auth.{label}]` table{}",
                        declared(m.gateway.auth.keys())
                    ),
                ));
            }
        }
    }
    for (i, mqtt) in m.ingest.mqtt.iter().enumerate() {
        let key = |k: &str| format!("ingest.mqtt[{i}].{k}");
        if !m.stream.contains_key(&mqtt.stream) {
            return Err(ManifestError::invalid(
                key("stream"),
                format!(
                    "stream `{}` is not declared; add a `[stream.{}]` table{}",
                    mqtt.stream,
                    mqtt.stream,
                    declared(m.stream.keys())
                ),
            ));
        }
        mqtt.broker_addr()
            .map_err(|e| ManifestError::invalid(key("broker"), e))?;
        if mqtt.topics.is_empty() {
            return Err(ManifestError::invalid(
                key("topics"),
                "no topics to subscribe to; give filters like [\"sensors/+/reading\"]",
            ));
        }
        if let Some(e) = mqtt.topics.iter().find_map(|t| topic_filter_error(t)) {
            return Err(ManifestError::invalid(key("topics"), e));
        }
        if mqtt.ca.is_some() && !mqtt.broker_addr().is_ok_and(|a| a.tls) {
            return Err(ManifestError::invalid(
                key("ca"),
                "`ca` is for a TLS broker; write the broker as \"mqtts://host:port\"",
            ));
        }
        if mqtt.device == Some(0) {
            return Err(ManifestError::invalid(
                key("device"),
                "topic levels count from 1: in \"sensors/+/reading\" the device is level 2",
            ));
        }
    }
    Ok(())
}
