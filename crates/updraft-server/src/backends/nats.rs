//! `[state] type = "nats"`: platform state on NATS JetStream, shared by every node of the
//! app (KV buckets for kv and cron claims, streams for queues, topics and each
//! `[stream.<name>]`'s partitions).

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Deserialize;
use updraft_store::StreamStore;
use updraft_store::nats::{NatsOptions, NatsState as Connection, NatsStreamConfig};

use super::{PlatformState, StateBackend, StateContext};

/// `[state] type = "nats"`.
pub struct NatsState;

/// The rest of `[state]` for NATS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:port` (or `tls://…`).
    #[serde(default)]
    url: Option<String>,
    /// Copies of every stream and bucket: 1 on a single server, 3 on a cluster.
    #[serde(default)]
    replicas: Option<usize>,
}

impl NatsConfig {
    fn checked(&self) -> anyhow::Result<(&str, usize)> {
        let Some(url) = &self.url else {
            anyhow::bail!("`[state] type = \"nats\"` needs `url = \"nats://HOST:PORT\"`");
        };
        if !(url.starts_with("nats://") || url.starts_with("tls://")) {
            anyhow::bail!(
                "`[state] url` must be a NATS URL such as `nats://127.0.0.1:4222`, not `{url}`"
            );
        }
        match self.replicas.unwrap_or(1) {
            n @ 1..=5 => Ok((url, n)),
            n => anyhow::bail!(
                "`[state] replicas = {n}`: JetStream keeps 1 to 5 copies; use 3 on a cluster"
            ),
        }
    }
}

impl StateBackend for NatsState {
    const TYPE: &'static str = "nats";
    type Config = NatsConfig;

    fn describe(config: &NatsConfig) -> anyhow::Result<String> {
        let (url, replicas) = config.checked()?;
        Ok(format!("nats jetstream at {url} ({replicas} replica(s))"))
    }

    async fn open(config: NatsConfig, node: &StateContext<'_>) -> anyhow::Result<PlatformState> {
        let (url, replicas) = config.checked()?;
        let app = &node.app.manifest.app.name;
        let nats = Connection::connect_with(url, app, NatsOptions { replicas })
            .await
            .with_context(|| {
                format!("cannot open the platform state on nats; is a JetStream-enabled `nats-server -js` listening at `{url}`?")
            })?;
        let mut kv = BTreeMap::new();
        for label in node.app.manifest.kv.keys() {
            let store = nats
                .kv_store(label)
                .await
                .with_context(|| format!("cannot open kv `{label}` on nats at `{url}`"))?;
            kv.insert(label.clone(), store);
        }
        let schedules = nats
            .schedule_store()
            .await
            .with_context(|| format!("cannot open the cron claims on nats at `{url}`"))?;
        let mut streams = BTreeMap::new();
        for (name, decl) in &node.app.manifest.stream {
            let stream = nats
                .stream(
                    name,
                    NatsStreamConfig {
                        partitions: decl.partition_count(),
                        retention: decl.retention_duration(),
                        max_bytes: decl.max_bytes_per_partition(),
                    },
                )
                .with_context(|| format!("cannot open stream `{name}` on nats at `{url}`"))?;
            let stream: std::sync::Arc<dyn StreamStore> = std::sync::Arc::new(stream);
            streams.insert(name.clone(), stream);
        }
        Ok(PlatformState {
            kv,
            streams,
            queues: nats.queue_store(),
            topics: nats.topic_store(),
            schedules,
        })
    }
}
