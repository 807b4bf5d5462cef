//! What feeds streams from outside besides HTTP (`[[ingest.http]]` is a route the node's
//! gateway serves): `[[ingest.mqtt]]` bridges ([`mqtt`]). Each source stores an event
//! before it acknowledges it to its producer, and slows the producer down when the stream
//! is behind instead of dropping.

pub mod mqtt;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use updraft_manifest::LoadedManifest;
use updraft_runtime::StreamHandle;

/// Starts every `[[ingest.mqtt]]` of `app`; they stop when `stop` turns true.
pub fn start(
    app: &LoadedManifest,
    streams: &BTreeMap<String, Arc<StreamHandle>>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    for (index, config) in app.manifest.ingest.mqtt.iter().enumerate() {
        let stream = streams.get(&config.stream).cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "`ingest.mqtt[{index}]`: stream `{}` is not open",
                config.stream
            )
        })?;
        let bridge = mqtt::Bridge::new(app, index, config, stream)?;
        tokio::spawn(bridge.run(stop.clone()));
    }
    Ok(())
}

/// One line per source for `updraft up` (the HTTP ones are among the routes).
pub fn describe(app: &LoadedManifest) -> Vec<String> {
    app.manifest
        .ingest
        .mqtt
        .iter()
        .map(|m| {
            format!(
                "mqtt {} {}  ->  stream `{}`",
                m.broker,
                m.topics.join(" "),
                m.stream
            )
        })
        .collect()
}
