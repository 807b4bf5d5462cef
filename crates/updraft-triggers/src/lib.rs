//! What runs functions: the [`Trigger`] trait, the registry of trigger kinds ([`KINDS`]),
//! each kind in its own folder, and the one queue worker loop ([`worker`]) that every kind
//! consuming a queue shares.
//!
//! A manifest keeps its `[[trigger.<kind>]]` tables as written; [`AppTriggers::parse`]
//! finds each kind in the registry, deserialises its tables into the kind's typed config
//! with keyed errors (`trigger.cron[0].schedule: ...`), and checks them against the app.
//! Then, in order: [`Trigger::declare`] (routes for the gateway, topic subscriptions for the
//! stores), [`Trigger::start`] with the node's stop signal, and [`Trigger::describe`] /
//! [`Trigger::info`] for `updraft up`, `updraft ls` and the admin API.
//!
//! To add a trigger kind: a folder here with its config type and a type implementing
//! [`Trigger`], and one line in [`KINDS`]. A kind that consumes a queue implements
//! [`worker::Consumer`] (or reuses [`worker::EventConsumer`]) and calls [`worker::spawn`];
//! leases, retries with backoff, dead letters, wake-ups and the drain come with it.

pub mod async_jobs;
pub mod cron;
pub mod file;
pub mod http;
pub mod ingest;
pub mod queue;
pub mod stream;
pub mod topic;
pub mod worker;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use updraft_gateway::Router;
use updraft_manifest::{LoadedManifest, Manifest, ManifestError};
use updraft_runtime::{EventFunction, Function, QueueHandle, StreamHandle};
use updraft_store::blob::BlobStore;
use updraft_store::{KvStore, ScheduleStore, Subscription};

pub use http::{RouteSpec, RouteTarget};

/// Where a trigger table is in the manifest: `trigger.<kind>[<index>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// The kind, as in `[[trigger.<kind>]]`.
    pub kind: &'static str,
    /// Its position among the tables of that kind.
    pub index: usize,
}

impl At {
    /// `trigger.<kind>[<index>]`
    pub fn table(&self) -> String {
        format!("trigger.{}[{}]", self.kind, self.index)
    }

    /// `trigger.<kind>[<index>].<field>`
    pub fn key(&self, field: &str) -> String {
        format!("{}.{field}", self.table())
    }

    /// An error about `field` of this table.
    pub fn invalid(&self, field: &str, message: impl Into<String>) -> ManifestError {
        ManifestError::invalid(self.key(field), message)
    }
}

/// One kind of trigger. Implement it in a folder of this crate and list the type in
/// [`KINDS`].
pub trait Trigger: Send + Sync + Sized + 'static {
    /// The kind, as in `[[trigger.<KIND>]]`.
    const KIND: &'static str;
    /// One table as written; use `#[serde(deny_unknown_fields)]`.
    type Config: DeserializeOwned;

    /// Checks `config` against the app and makes the trigger. Everything that can be parsed
    /// or checked before start (schedules, patterns, names) is done here, once.
    fn new(config: Self::Config, app: &LoadedManifest, at: At) -> Result<Self, ManifestError>;

    /// The function it runs, if any (a static route runs none).
    fn function(&self) -> Option<&str>;

    /// What it adds to the app before the stores open: routes, topic subscriptions.
    fn declare(&self, _at: At, _app: &mut Declarations) -> Result<(), ManifestError> {
        Ok(())
    }

    /// Starts it; it stops when `node.stop` turns true.
    fn start(&self, at: At, node: &mut StartContext<'_>) -> anyhow::Result<()>;

    /// One line for `updraft up`, or `None` when `up` shows it elsewhere (routes).
    fn describe(&self) -> Option<String>;

    /// What `updraft ls` and the admin API show about it now.
    fn info(
        &self,
        node: &InfoContext<'_>,
    ) -> impl Future<Output = anyhow::Result<TriggerInfo>> + Send;
}

/// Makes one kind's trigger from one of its tables.
type ParseFn = fn(&LoadedManifest, At, &toml::Table) -> Result<Arc<dyn DynTrigger>, ManifestError>;

/// A registered kind: its name and how its tables become triggers.
pub struct Kind {
    /// `[[trigger.<name>]]`
    pub name: &'static str,
    parse: ParseFn,
}

const fn kind<T: Trigger>() -> Kind {
    Kind {
        name: T::KIND,
        parse: parse_table::<T>,
    }
}

/// Every trigger kind, in the order `up` lists them. To add one, add a line.
pub const KINDS: &[Kind] = &[
    kind::<http::Http>(),
    kind::<queue::Queue>(),
    kind::<topic::Topic>(),
    kind::<cron::Cron>(),
    kind::<file::File>(),
    kind::<stream::Stream>(),
];

fn parse_table<T: Trigger>(
    app: &LoadedManifest,
    at: At,
    table: &toml::Table,
) -> Result<Arc<dyn DynTrigger>, ManifestError> {
    let config: T::Config = serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
        .map_err(|err| {
            let path = err.path().to_string();
            ManifestError::Syntax {
                path: None,
                key: if path == "." || path.is_empty() {
                    at.table()
                } else {
                    at.key(&path)
                },
                message: err.into_inner().to_string(),
            }
        })?;
    Ok(Arc::new(T::new(config, app, at)?))
}

/// What triggers add to an app before its stores open and its functions load.
#[derive(Debug, Default, Clone)]
pub struct Declarations {
    /// The gateway's routes.
    pub router: Router<RouteSpec>,
    /// Topic subscriptions: a queue per subscription, filled when the topic is published to.
    pub subscriptions: Vec<TopicSubscription>,
}

/// A subscription of a topic, as the stores need it.
#[derive(Debug, Clone)]
pub struct TopicSubscription {
    /// The topic.
    pub topic: String,
    /// Its delivery queue and filter.
    pub subscription: Subscription,
}

/// What a trigger gets from the node it starts on.
pub struct StartContext<'a> {
    /// The app.
    pub app: &'a LoadedManifest,
    /// Every loaded function, by id.
    pub functions: &'a BTreeMap<String, Function>,
    /// Every queue the node serves (declared, and topic subscriptions'); a trigger adds the
    /// queues of its own, so `updraft dlq` reaches them.
    pub queues: &'a mut BTreeMap<String, Arc<QueueHandle>>,
    /// Makes a queue of updraft's own in the platform state, shared by every node.
    pub platform_queue: &'a dyn Fn(&str) -> Arc<QueueHandle>,
    /// Makes a kv namespace of updraft's own (a file trigger's index).
    pub internal_kv: &'a dyn Fn(&str) -> Arc<dyn KvStore>,
    /// Every `[stream.<name>]`, open.
    pub streams: &'a BTreeMap<String, Arc<StreamHandle>>,
    /// Every `[bucket.<name>]`, open.
    pub buckets: &'a BTreeMap<String, Arc<dyn BlobStore>>,
    /// What functions wrote through their buckets (a file trigger skips its own function's).
    pub writers: Arc<updraft_store::writers::Writers>,
    /// Claims of cron occurrences.
    pub schedules: Arc<dyn ScheduleStore>,
    /// Who this process is, for claims (`addr:pid`).
    pub claimant: String,
    /// Turns true when the node drains.
    pub stop: watch::Receiver<bool>,
}

impl StartContext<'_> {
    /// The event function `name`, or an error saying why the trigger at `at` cannot run it.
    pub fn event_function(&self, at: At, name: &str) -> anyhow::Result<EventFunction> {
        match self.functions.get(name) {
            Some(Function::Event(f)) => Ok(f.clone()),
            _ => anyhow::bail!(
                "`{}` in `{}` names function `{name}`, which is not an event function; a {} trigger needs a component exporting `updraft:platform/event-handler`",
                at.table(),
                self.app.path.display(),
                at.kind
            ),
        }
    }
}

/// What a trigger may read when asked about itself.
pub struct InfoContext<'a> {
    /// Claims of cron occurrences (their last run).
    pub schedules: &'a dyn ScheduleStore,
}

/// One trigger of a function, as `updraft ls` and the admin API show it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerInfo {
    /// `http`, `queue`, `topic`, `cron`, `file` or `stream`.
    pub kind: String,
    /// One line about it, as `updraft ls` prints it.
    pub summary: String,
    /// The kind's own facts (cron: `schedule`, `timezone`, `last_run`, `next_run`).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Trigger`] without its associated items, so the registry can hold any kind.
pub trait DynTrigger: Send + Sync {
    /// See [`Trigger::function`].
    fn function(&self) -> Option<&str>;
    /// See [`Trigger::declare`].
    fn declare(&self, at: At, app: &mut Declarations) -> Result<(), ManifestError>;
    /// See [`Trigger::start`].
    fn start(&self, at: At, node: &mut StartContext<'_>) -> anyhow::Result<()>;
    /// See [`Trigger::describe`].
    fn describe(&self) -> Option<String>;
    /// See [`Trigger::info`].
    fn info<'a>(&'a self, node: &'a InfoContext<'a>) -> BoxFuture<'a, anyhow::Result<TriggerInfo>>;
}

impl<T: Trigger> DynTrigger for T {
    fn function(&self) -> Option<&str> {
        Trigger::function(self)
    }
    fn declare(&self, at: At, app: &mut Declarations) -> Result<(), ManifestError> {
        Trigger::declare(self, at, app)
    }
    fn start(&self, at: At, node: &mut StartContext<'_>) -> anyhow::Result<()> {
        Trigger::start(self, at, node)
    }
    fn describe(&self) -> Option<String> {
        Trigger::describe(self)
    }
    fn info<'a>(&'a self, node: &'a InfoContext<'a>) -> BoxFuture<'a, anyhow::Result<TriggerInfo>> {
        Box::pin(Trigger::info(self, node))
    }
}

/// Every trigger of an app, parsed and checked, with what they declare.
#[derive(Clone, Default)]
pub struct AppTriggers {
    triggers: Vec<(At, Arc<dyn DynTrigger>)>,
    /// Routes and topic subscriptions.
    pub declarations: Declarations,
}

impl std::fmt::Debug for AppTriggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.triggers.iter().map(|(at, _)| at.table()))
            .finish()
    }
}

impl AppTriggers {
    /// Parses every `[[trigger.<kind>]]` table of `app` with its kind's config type and
    /// checks it; errors name the file and the key.
    pub fn parse(app: &LoadedManifest) -> Result<Self, ManifestError> {
        Self::parse_manifest(app).map_err(|e| e.in_file(&app.path))
    }

    fn parse_manifest(app: &LoadedManifest) -> Result<Self, ManifestError> {
        let known = || {
            KINDS
                .iter()
                .map(|k| format!("`{}`", k.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(unknown) = app
            .manifest
            .trigger
            .keys()
            .find(|name| !KINDS.iter().any(|k| k.name == name.as_str()))
        {
            return Err(ManifestError::invalid(
                format!("trigger.{unknown}"),
                format!("`{unknown}` is not a trigger kind; use one of {}", known()),
            ));
        }
        let mut all = Self::default();
        for kind in KINDS {
            let tables = app.manifest.trigger.get(kind.name).into_iter().flatten();
            for (index, table) in tables.enumerate() {
                let at = At {
                    kind: kind.name,
                    index,
                };
                let trigger = (kind.parse)(app, at, table)?;
                trigger.declare(at, &mut all.declarations)?;
                all.triggers.push((at, trigger));
            }
        }
        http::declare_gateway_routes(app, &mut all.declarations)?;
        http::declare_dashboard_route(app, &mut all.declarations)?;
        http::declare_ingest_routes(app, &mut all.declarations)?;
        Ok(all)
    }

    /// Starts every trigger on the node described by `node`.
    pub fn start(&self, node: &mut StartContext<'_>) -> anyhow::Result<()> {
        for (at, trigger) in &self.triggers {
            trigger.start(*at, node)?;
        }
        Ok(())
    }

    /// One line per trigger that `up` lists apart from the routes.
    pub fn describe(&self) -> Vec<String> {
        self.triggers
            .iter()
            .filter_map(|(_, t)| {
                let line = t.describe()?;
                Some(match t.function() {
                    Some(f) => format!("{line}  ->  function `{f}`"),
                    None => line,
                })
            })
            .collect()
    }

    /// What `ls` and the admin API show about the triggers of `function`.
    pub async fn info_for(
        &self,
        function: &str,
        node: &InfoContext<'_>,
    ) -> anyhow::Result<Vec<TriggerInfo>> {
        let mut infos = Vec::new();
        for (_, trigger) in self
            .triggers
            .iter()
            .filter(|(_, t)| t.function() == Some(function))
        {
            infos.push(trigger.info(node).await?);
        }
        Ok(infos)
    }
}

/// Parses a manifest's text the way `updraft up` does: the manifest, then its triggers.
pub fn parse_app(text: &str) -> Result<(Manifest, AppTriggers), ManifestError> {
    let manifest = Manifest::parse(text)?;
    let app = LoadedManifest {
        manifest,
        path: "updraft.toml".into(),
        dir: ".".into(),
    };
    let triggers = AppTriggers::parse_manifest(&app)?;
    Ok((app.manifest, triggers))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
[app]
name = "shop"
[queue.jobs]
[topic.orders]
[bucket.uploads]
[stream.readings]
[function.hello]
source = "hello.wasm"
[function.worker]
source = "worker.wasm"
"#;

    fn err(text: &str) -> String {
        parse_app(&format!("{APP}{text}")).unwrap_err().to_string()
    }

    /// The manifest accepts exactly the trigger tables the registry knows.
    #[test]
    fn the_manifest_accepts_exactly_the_registered_kinds() {
        let tables = [
            ("http", "route = \"/hello\"\nfunction = \"hello\""),
            ("queue", "queue = \"jobs\"\nfunction = \"worker\""),
            ("topic", "topic = \"orders\"\nfunction = \"worker\""),
            ("cron", "schedule = \"@hourly\"\nfunction = \"worker\""),
            ("file", "bucket = \"uploads\"\nfunction = \"worker\""),
            ("stream", "stream = \"readings\"\nfunction = \"worker\""),
        ];
        let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        assert_eq!(
            names,
            tables.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            "every registered kind has a sample table here, and nothing else does"
        );
        for (kind, body) in tables {
            let (_, triggers) = parse_app(&format!("{APP}[[trigger.{kind}]]\n{body}\n"))
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(triggers.triggers.len(), 1, "{kind}");
        }
        let e = err("[[trigger.webhook]]\nfunction = \"worker\"\n");
        assert!(e.contains("trigger.webhook"), "{e}");
        assert!(
            e.contains(
                "`webhook` is not a trigger kind; use one of `http`, `queue`, `topic`, `cron`"
            ),
            "{e}"
        );
    }

    #[test]
    fn trigger_errors_are_keyed_by_table_and_field() {
        let e = err("[[trigger.http]]\nroute = \"/a\"\nfunction = \"helo\"\n");
        assert!(e.contains("trigger.http[0].function"), "{e}");
        assert!(e.contains("`helo` is not declared"), "{e}");
        assert!(e.contains("[function.helo]"), "{e}");
        let e =
            err("[[trigger.http]]\nroute = \"/a\"\nmethods = [\"FETCH\"]\nfunction = \"hello\"\n");
        assert!(e.contains("trigger.http[0].methods"), "{e}");
        let e = err("[[trigger.queue]]\nqueue = \"jobs\"\nfunction = \"worker\"\nbogus = 1\n");
        assert!(e.contains("trigger.queue[0]"), "{e}");
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e =
            err("[[trigger.queue]]\nqueue = \"jobs\"\nfunction = \"worker\"\nbatch = \"many\"\n");
        assert!(e.contains("trigger.queue[0].batch"), "{e}");
        let e = err("[[trigger.cron]]\nschedule = \"61 * * * *\"\nfunction = \"worker\"\n");
        assert!(
            e.contains("trigger.cron[0].schedule") && e.contains("`61 * * * *`"),
            "{e}"
        );
        assert!(e.contains("minute field"), "{e}");
        let e = err(
            "[[trigger.cron]]\nschedule = \"@hourly\"\ntimezone = \"Mars/Olympus\"\nfunction = \"worker\"\n",
        );
        assert!(
            e.contains("trigger.cron[0].timezone") && e.contains("Europe/Berlin"),
            "{e}"
        );
        let e = err("[[trigger.topic]]\ntopic = \"order\"\nfunction = \"worker\"\n");
        assert!(
            e.contains("trigger.topic[0].topic") && e.contains("(declared: `orders`)"),
            "{e}"
        );
        let twice = "[[trigger.topic]]\ntopic = \"orders\"\nfunction = \"worker\"\n";
        let e = err(&format!("{twice}{twice}"));
        assert!(
            e.contains("trigger.topic[1].subscription") && e.contains("already has"),
            "{e}"
        );
        let e = err(
            "[[trigger.http]]\nroute = \"/a\"\n[[trigger.http]]\nroute = \"/a\"\nfunction = \"hello\"\n",
        );
        assert!(
            e.contains("trigger.http[0]") && e.contains("neither"),
            "{e}"
        );
    }

    #[test]
    fn describes_event_triggers_for_up() {
        let (_, triggers) = parse_app(&format!(
            "{APP}[[trigger.http]]\nroute = \"/a\"\nfunction = \"hello\"\n\
             [[trigger.queue]]\nqueue = \"jobs\"\nfunction = \"worker\"\n\
             [[trigger.topic]]\ntopic = \"orders\"\nfilter = {{ type = \"order.\" }}\nfunction = \"worker\"\n\
             [[trigger.cron]]\nschedule = \"*/5 * * * *\"\nfunction = \"worker\"\n"
        ))
        .unwrap();
        assert_eq!(
            triggers.describe(),
            [
                "queue `jobs`  ->  function `worker`",
                "topic `orders` subscription `worker` (type order.)  ->  function `worker`",
                "cron `*/5 * * * *` (UTC)  ->  function `worker`",
            ]
        );
        assert_eq!(triggers.declarations.router.routes().len(), 1);
        assert_eq!(triggers.declarations.subscriptions.len(), 1);
    }
}
