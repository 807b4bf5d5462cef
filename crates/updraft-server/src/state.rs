//! What a node holds while it serves, and what each app it hosts holds. Only types and
//! lookups live here, so the request path (`edge`), the reserved endpoints (`admin`) and
//! the admin API (`api`) all depend on this module and never on each other's callers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hyper::body::Incoming;
use updraft_gateway::policy::RouteService;
use updraft_gateway::policy::client_ip::TrustedProxies;
use updraft_gateway::policy::split::Split;
use updraft_gateway::policy::upstream::Upstream;
use updraft_gateway::{Router, StaticSite};
use updraft_runtime::{Function, HttpFunction, QueueHandle, Runtime, TopicHandle};
use updraft_store::{AsyncStore, RecordStore, ScheduleStore};
use updraft_triggers::AppTriggers;

use crate::api::RouteInfo;

/// What answers a route.
#[derive(Clone)]
pub(crate) enum Handler {
    Function(HttpFunction),
    Static(Arc<StaticSite>),
    /// An upstream HTTP service.
    Upstream(Arc<Upstream>),
    /// The app's `[dashboard]` page.
    Dashboard,
    /// An `[[ingest.http]]` route into a stream.
    Ingest(Arc<crate::ingest::HttpIngest>),
}

impl AppState {
    /// Names of the routes that take API keys (what a key may be scoped to).
    pub(crate) fn keyed_routes(&self) -> Vec<&str> {
        self.router
            .routes()
            .iter()
            .filter(|r| r.target.keyed)
            .map(|r| r.target.name.as_str())
            .collect()
    }
}

/// A route as the node serves it: its targets, how one is chosen, and the policies in
/// front of them.
pub(crate) struct Served {
    /// What the API and `up` say about it.
    pub(crate) info: RouteInfo,
    /// Its name in metrics (`name`, else the pattern).
    pub(crate) name: String,
    /// A `[[gateway.route]]` (counted per target in `/_updraft/metrics`).
    pub(crate) gateway: bool,
    /// At least one, with `labels` (`function:<id>`, …) in the same order.
    pub(crate) targets: Vec<Handler>,
    pub(crate) labels: Vec<String>,
    /// Several targets: which one serves a request.
    pub(crate) split: Option<Split>,
    /// The policies around the targets; `None` when the route has none.
    pub(crate) stack: Option<RouteService<Incoming>>,
    /// Whether a CORS policy answers its preflights.
    pub(crate) cors: bool,
    /// Whether it takes API keys (`auth`).
    pub(crate) keyed: bool,
    /// `body_schema` / `query_schema`: what a request must match before a target sees it.
    pub(crate) schema: Option<Arc<updraft_gateway::policy::validate::RequestSchema>>,
    /// `max_body`: the route's body limit in bytes, instead of the node's.
    pub(crate) max_body: Option<u64>,
}

/// A node: the engine, readiness, the reserved endpoints, and the apps it hosts.
pub(crate) struct NodeState {
    pub(crate) runtime: Runtime,
    pub(crate) ready: AtomicBool,
    pub(crate) admin_token: Option<String>,
    /// `--admin-host` names, lowercase.
    pub(crate) admin_hosts: Vec<String>,
    /// The `/_updraft/` router.
    pub(crate) admin: axum::Router,
    /// The apps, by name.
    pub(crate) apps: BTreeMap<String, Arc<AppState>>,
}

impl NodeState {
    /// The app user routes go to. A node hosts one app today; a node hosting several will
    /// choose here (by host or path prefix), and nowhere else.
    pub(crate) fn app_for_routes(&self) -> Option<&Arc<AppState>> {
        self.only_app()
    }

    /// The app when the node hosts exactly one (the unscoped admin paths under `up`).
    pub(crate) fn only_app(&self) -> Option<&Arc<AppState>> {
        match self.apps.len() {
            1 => self.apps.values().next(),
            _ => None,
        }
    }
}

/// One app on a node: its routes, functions, stores and triggers.
pub(crate) struct AppState {
    pub(crate) name: String,
    pub(crate) router: Router<Arc<Served>>,
    /// `[gateway] trusted_proxies`.
    pub(crate) trusted_proxies: TrustedProxies,
    /// `[gateway] access_log`: a JSON line per request on stdout.
    pub(crate) access_log: bool,
    /// API keys for routes with `auth` (in the node's state), as the gateway checks them.
    pub(crate) keys: Arc<crate::api::KvKeys>,
    pub(crate) max_body: u64,
    pub(crate) local_addr: SocketAddr,
    /// Served over TLS.
    pub(crate) https: bool,
    pub(crate) functions: BTreeMap<String, Function>,
    pub(crate) queues: BTreeMap<String, Arc<QueueHandle>>,
    pub(crate) topics: BTreeMap<String, Arc<TopicHandle>>,
    pub(crate) streams: BTreeMap<String, Arc<updraft_runtime::StreamHandle>>,
    pub(crate) buckets: BTreeMap<String, Arc<dyn updraft_store::BlobStore>>,
    pub(crate) async_jobs: Arc<dyn AsyncStore>,
    pub(crate) async_queue: Arc<QueueHandle>,
    pub(crate) callback_hosts: Vec<updraft_manifest::AllowedHost>,
    /// The functions that take `Prefer: respond-async`, with their caps.
    pub(crate) async_policies: BTreeMap<String, updraft_manifest::AsyncPolicy>,
    pub(crate) records: Arc<dyn RecordStore>,
    /// Every trigger, for what `ls` and the API show about it.
    pub(crate) triggers: AppTriggers,
    pub(crate) schedules: Arc<dyn ScheduleStore>,
    /// Each `[sql.<label>]`, for the dashboard's panels.
    pub(crate) sql: BTreeMap<String, Arc<dyn updraft_store::SqlStore>>,
    /// `[dashboard]`: the app's own page.
    pub(crate) dashboard: updraft_manifest::Dashboard,
}
