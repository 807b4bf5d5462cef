//! The engine: one per node, configured once with explicit pooling limits.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::cache::ComponentCache;
use crate::error::LoadError;
use crate::event::{EventFunction, EventHandlerExportPre};
use crate::http::HttpFunction;
use crate::report::{EngineReport, MemoryReset, Swap, memory_reset};
use crate::state::InvocationState;
use crate::{FunctionSpec, Observer};

/// How often the epoch ticks: the granularity of timeouts and of yielding to other tasks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Node-wide engine settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Instances that may exist at once on this node (DESIGN §9: 1,000).
    pub max_instances: u32,
    /// The largest memory any function may have, in bytes.
    pub max_memory: u64,
    /// Bytes of each linear memory and table kept resident between instances.
    pub keep_resident: usize,
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            max_memory: updraft_manifest::DEFAULT_MEMORY,
            keep_resident: 16 << 20,
            cache_dir: PathBuf::from(".updraft/cache"),
        }
    }
}

/// A loaded function, by what it exports.
#[derive(Clone)]
pub enum Function {
    /// Exports `wasi:http/incoming-handler`.
    Http(HttpFunction),
    /// Exports `updraft:platform/event-handler`.
    Event(EventFunction),
}

impl Function {
    /// `http` or `event`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Function::Http(_) => "http",
            Function::Event(_) => "event",
        }
    }

    /// The spec it was loaded from.
    pub fn spec(&self) -> &FunctionSpec {
        match self {
            Function::Http(f) => f.spec(),
            Function::Event(f) => f.spec(),
        }
    }

    /// The timeout in force.
    pub fn timeout(&self) -> std::time::Duration {
        match self {
            Function::Http(f) => f.timeout(),
            Function::Event(f) => f.timeout(),
        }
    }
}

/// The wasmtime engine, linker and component cache shared by every function of a node.
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<InvocationState>>,
    cache: ComponentCache,
    node_permits: Arc<Semaphore>,
    settings: EngineSettings,
    report: EngineReport,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine. Falls back to on-demand allocation (with a warning) when the
    /// pooling allocator cannot reserve its address space, e.g. under `ulimit -v`.
    pub fn new(settings: EngineSettings) -> anyhow::Result<Self> {
        let reset = memory_reset(
            Swap::of_host(),
            PoolingAllocationConfig::is_pagemap_scan_available(),
        );
        let (engine, memory_reset) = match Engine::new(&config(&settings, Some(&reset))) {
            Ok(engine) => (engine, reset),
            Err(err) => {
                tracing::warn!(
                    "pooling allocator unavailable ({err:#}); falling back to on-demand allocation, which instantiates more slowly. Lift any virtual-memory limit (`ulimit -v`) to restore it"
                );
                (
                    Engine::new(&config(&settings, None))?,
                    MemoryReset::OnDemand,
                )
            }
        };
        let report = EngineReport {
            memory_reset,
            max_instances: settings.max_instances,
            max_memory: settings.max_memory,
            keep_resident: settings.keep_resident,
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        crate::host::http_budget::link(&mut linker)?;
        crate::host::sandbox::link(&mut linker)?;
        crate::host::link_all(&mut linker)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(&engine, ticker_stop.clone());
        let cache = ComponentCache::new(settings.cache_dir.clone());
        Ok(Self {
            node_permits: Arc::new(Semaphore::new(settings.max_instances as usize)),
            engine,
            linker: Arc::new(linker),
            cache,
            settings,
            report,
            ticker_stop,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.report.pooling()
    }

    /// The allocator, limits and memory reset in force.
    pub fn report(&self) -> &EngineReport {
        &self.report
    }

    /// Component instances allocated right now (pooling allocator only).
    pub fn live_instances(&self) -> Option<u64> {
        self.engine
            .pooling_allocator_metrics()
            .map(|m| m.component_instances())
    }

    /// The settings the engine was built with.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Invocations running now on this node.
    pub fn in_flight(&self) -> usize {
        self.settings.max_instances as usize - self.node_permits.available_permits()
    }

    /// Waits until no invocation is running, or `grace` has passed. Returns whether it drained.
    pub async fn drain(&self, grace: Duration) -> bool {
        let all = self.settings.max_instances;
        tokio::time::timeout(grace, self.node_permits.acquire_many(all))
            .await
            .is_ok_and(|permit| permit.is_ok())
    }

    /// Loads an HTTP function: compile (or take from the cache) and pre-instantiate.
    pub fn load(
        &self,
        spec: FunctionSpec,
        observer: Observer,
    ) -> Result<(Function, crate::CacheOutcome), LoadError> {
        if spec.memory > self.settings.max_memory {
            return Err(LoadError::Engine {
                function: spec.id.clone(),
                message: format!(
                    "memory limit of {} bytes is above the node's maximum of {} bytes",
                    spec.memory, self.settings.max_memory
                ),
            });
        }
        let bytes = ComponentCache::read(&spec.id, &spec.source)?;
        let (component, outcome) = self
            .cache
            .load(&self.engine, &spec.id, &spec.source, &bytes)?;
        let invalid = |message: String| LoadError::Invalid {
            function: spec.id.clone(),
            path: spec.source.clone(),
            message,
        };
        let pre = self.linker.instantiate_pre(&component).map_err(|err| {
            invalid(format!(
                "{err:#}; updraft provides WASI 0.2 (cli, clocks, random, io, http), wasi:config, wasi:keyvalue and updraft:platform (see wit/updraft.wit)"
            ))
        })?;
        if spec.reuse > 1
            && let Some(toolchain) = crate::reuse::breaks_under_reuse(&bytes)
        {
            return Err(invalid(format!(
                "it was built by `{toolchain}`, whose guests break when an instance serves a second request, so `reuse = {}` cannot apply; drop `reuse` (a fresh instance per request)",
                spec.reuse
            )));
        }
        // What it exports decides its kind.
        let function = if let Ok(proxy) = ProxyPre::new(pre.clone()) {
            Function::Http(HttpFunction::new(
                spec,
                proxy,
                self.node_permits.clone(),
                observer,
            ))
        } else if let Ok(handler) = EventHandlerExportPre::new(pre) {
            if spec.reuse > 1 {
                return Err(invalid(format!(
                    "`reuse = {}` is for HTTP functions, and this one is not; drop `reuse` (event functions get a fresh instance per invocation)",
                    spec.reuse
                )));
            }
            Function::Event(EventFunction::new(
                spec,
                handler,
                self.node_permits.clone(),
                observer,
            ))
        } else {
            return Err(invalid(
                "it exports neither `wasi:http/incoming-handler` (an HTTP function: build it with `wstd`'s `#[http_server]` or any `wasi:http` toolchain) nor `updraft:platform/event-handler` (an event function: export the `event-function` world of wit/updraft.wit)".to_owned(),
            ));
        };
        Ok((function, outcome))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The engine's config: with the pooling allocator when `reset` is given (how it resets
/// memory), else on-demand allocation.
fn config(settings: &EngineSettings, reset: Option<&MemoryReset>) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // updraft links WASI 0.2 only, whose host calls never need the component model's
    // concurrent tasks; with them on, every export call and host call goes through
    // wasmtime 48's task bookkeeping (`start_call_concurrent`, `host_task_create`), which
    // was a visible share of a request's CPU. Guests that use the async ABI are refused
    // at load with wasmtime's own message.
    config.concurrency_support(false);
    if let Some(reset) = reset {
        let n = settings.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasip2 component has a handful of core instances, one memory and a few
        // tables; these totals leave room for that at full concurrency.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(usize::try_from(settings.max_memory).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(settings.keep_resident)
            .table_keep_resident(settings.keep_resident)
            // Scanning for dirty pages instead of a memset of the resident prefix made
            // hello 1.55x faster (the memset was ~18% of updraft's CPU on the HTTP path).
            .pagemap_scan(if *reset == MemoryReset::DirtyPages {
                Enabled::Auto
            } else {
                Enabled::No
            });
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Ticks the engine's epoch until `stop` is set. A plain thread: it must keep ticking even
/// when every tokio worker is busy running guest code.
fn spawn_epoch_ticker(engine: &Engine, stop: Arc<AtomicBool>) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("updraft-epoch".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                next += EPOCH_TICK;
                if let Some(sleep) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(sleep);
                }
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        });
    if let Err(err) = spawned {
        tracing::error!("cannot start the epoch thread ({err}); function timeouts will not fire");
    }
}
