//! The wasmtime side of updraft: one engine per node, components compiled once and cached
//! on disk, and a fresh, limited, capability-scoped instance for every invocation.
//!
//! * [`Runtime`] owns the engine (pooling allocator, epoch interruption) and the
//!   [`ComponentCache`]; [`Runtime::load_http`] turns a [`FunctionSpec`] into an
//!   [`HttpFunction`].
//! * [`HttpFunction::handle`] serves one `wasi:http` request: concurrency permit, fresh
//!   `Store`, instantiate from the pre-instantiated component, call `handle`, enforce the
//!   timeout and memory cap, capture stdout/stderr.
//! * [`EngineReport`] ([`Runtime::report`]) says what the engine runs with: the allocator,
//!   its limits and how instance memory is reset ([`MemoryReset`]), and why.
//! * [`InvocationObserver`] is how the rest of the node hears about invocations (metrics,
//!   logs, records) without the runtime knowing about any of them.
//!
//! To add a host interface (a binding): put its WIT in `wit/`, implement it on
//! [`host::BindingCtx`] in a module of [`host`], and add its `link` to `host::BINDINGS`
//! (one line); its allow-list is one entry of `updraft_manifest::ALLOW_LISTS`, and what
//! each instance gets arrives as [`host::Grants`] in [`Resources`].

mod cache;
mod core;
mod engine;
mod error;
mod event;
pub mod host;
mod http;
mod limits;
mod logs;
mod outbound;
mod report;
mod reuse;
mod state;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use cache::{CacheOutcome, ComponentCache};
pub use engine::{EngineSettings, Function, Runtime};
pub use error::{InvokeError, LoadError};
pub use event::{EventError, EventFunction};
pub use host::messaging::now_us;
pub use host::{QueueHandle, Resources, TopicHandle};
pub use http::{HttpFunction, HttpInvocation, ResponseBody};
pub use logs::LogStream;
pub use report::{EngineReport, MemoryReset};
pub use stream::{AppendError, StreamHandle};
/// The error type of request bodies handed to [`HttpFunction::handle`].
pub use wasmtime_wasi_http::Error as HttpError;

/// Everything the runtime needs to know about one function.
#[derive(Clone)]
pub struct FunctionSpec {
    /// The function id from the manifest.
    pub id: String,
    /// The component file.
    pub source: PathBuf,
    /// Wall-clock limit for one invocation; `None` for the default of the function's kind
    /// (30 s for HTTP, 5 min for events).
    pub timeout: Option<Duration>,
    /// Memory cap for one instance, in bytes.
    pub memory: u64,
    /// Instances that may run at once.
    pub max_concurrency: u32,
    /// Requests one instance of an HTTP function may serve (1: a fresh one per request).
    pub reuse: u32,
    /// Where outbound HTTP may go.
    pub allowed_outbound_hosts: Vec<updraft_manifest::AllowedHost>,
    /// Resolved variables, seen through `wasi:config` and the environment.
    pub variables: Vec<(String, String)>,
    /// The kv stores and sql databases it may open.
    pub resources: Arc<Resources>,
}

impl std::fmt::Debug for FunctionSpec {
    // Variable values may be secrets: only their names are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionSpec")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("timeout", &self.timeout)
            .field("memory", &self.memory)
            .field("max_concurrency", &self.max_concurrency)
            .field("reuse", &self.reuse)
            .field("allowed_outbound_hosts", &self.allowed_outbound_hosts)
            .field(
                "variables",
                &self.variables.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("resources", &self.resources)
            .finish()
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The function answered (any status it chose).
    Ok,
    /// It trapped, returned an error, or never answered.
    Error,
    /// It ran past its timeout.
    Timeout,
    /// It hit its memory cap.
    MemoryLimit,
    /// No instance was free (503).
    Rejected,
}

impl Outcome {
    /// The label used in metrics and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Rejected => "rejected",
        }
    }
}

/// What is known about an invocation once it has finished.
#[derive(Debug, Clone)]
pub struct InvocationRecord {
    /// Its id.
    pub id: String,
    /// The function.
    pub function: String,
    /// `http`, later `cron`, `queue`…
    pub trigger: &'static str,
    /// When it started.
    pub started: std::time::SystemTime,
    /// First invocation since the component was loaded.
    pub cold: bool,
    /// `Store::new` plus instantiation, in microseconds.
    pub instantiate_us: u64,
    /// Whole invocation, in microseconds.
    pub duration_us: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, when it failed.
    pub error: Option<String>,
    /// What it was asked: for HTTP the method, path and query (as the function received
    /// them), for events the first event's type, id and source and how many came with it.
    pub request: Option<String>,
}

/// Hears about invocations. The server implements it for metrics, logs and records.
pub trait InvocationObserver: Send + Sync + 'static {
    /// A complete line the function wrote to stdout or stderr.
    fn log_line(&self, function: &str, invocation_id: &str, stream: LogStream, line: &str);
    /// The invocation has finished (after its response body was fully produced).
    fn finished(&self, record: &InvocationRecord);
}

/// An observer that only writes to `tracing`.
#[derive(Debug, Default)]
pub struct TracingObserver;

impl InvocationObserver for TracingObserver {
    fn log_line(&self, function: &str, invocation_id: &str, stream: LogStream, line: &str) {
        tracing::info!(target: "updraft::guest", function = %function, invocation = %invocation_id, stream = stream.as_str(), "{line}");
    }

    fn finished(&self, record: &InvocationRecord) {
        tracing::debug!(
            function = record.function,
            invocation = record.id,
            outcome = record.outcome.as_str(),
            duration_us = record.duration_us,
            "invocation finished"
        );
    }
}

/// A shared observer.
pub type Observer = Arc<dyn InvocationObserver>;
