//! Prometheus metrics for invocations, and the observer that feeds them.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use updraft_runtime::InvocationRecord;

const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), DURATION_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            spawn_upkeep(handle.clone());
            Some(handle)
        })
        .as_ref()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds histogram samples into their buckets every [`UPKEEP_EVERY`]. The recorder keeps
/// every sample it is given until then (or until a scrape), so without this a node that
/// nobody scrapes grows by two samples per invocation, forever: ~1 GiB an hour at 18,000
/// requests a second. A plain thread, so it runs whatever the runtime is doing.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("updraft-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(
            "cannot start the metrics upkeep thread ({err}); histogram samples accumulate until `/_updraft/metrics` is scraped"
        );
    }
}

fn describe() {
    metrics::describe_counter!(
        "updraft_invocations_total",
        "Function invocations by function, trigger and outcome"
    );
    metrics::describe_histogram!(
        "updraft_invocation_duration_seconds",
        metrics::Unit::Seconds,
        "Whole invocation time, from instantiation to the end of the response body"
    );
    metrics::describe_histogram!(
        "updraft_instantiate_seconds",
        metrics::Unit::Seconds,
        "Store creation plus instantiation from the pre-instantiated component"
    );
    metrics::describe_counter!(
        "updraft_cold_starts_total",
        "First invocations of a function since its component was loaded"
    );
    metrics::describe_gauge!(
        "updraft_engine_pooling",
        "1 when instances come from the pooling allocator, 0 under on-demand allocation"
    );
    metrics::describe_gauge!(
        "updraft_engine_dirty_page_reset",
        "1 when only the pages an instance dirtied are reset (PAGEMAP_SCAN), 0 when memory is reset with memset; `updraft up` prints why"
    );
    metrics::describe_gauge!(
        "updraft_engine_max_instances",
        "Instances that may exist at once on this node"
    );
    metrics::describe_gauge!(
        "updraft_instances",
        "Component instances allocated now (pooling allocator only)"
    );
}

/// Sets the engine's gauges; called when metrics are scraped.
pub fn engine(report: &updraft_runtime::EngineReport, live_instances: Option<u64>) {
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    metrics::gauge!("updraft_engine_pooling").set(flag(report.pooling()));
    metrics::gauge!("updraft_engine_dirty_page_reset").set(flag(report.dirty_page_reset()));
    metrics::gauge!("updraft_engine_max_instances").set(f64::from(report.max_instances));
    if let Some(n) = live_instances {
        metrics::gauge!("updraft_instances").set(n as f64);
    }
}

/// Counts a finished invocation.
pub fn record(r: &InvocationRecord) {
    let function = r.function.clone();
    metrics::counter!(
        "updraft_invocations_total",
        "function" => function.clone(),
        "trigger" => r.trigger,
        "outcome" => r.outcome.as_str()
    )
    .increment(1);
    if r.outcome == updraft_runtime::Outcome::Rejected {
        return;
    }
    metrics::histogram!(
        "updraft_invocation_duration_seconds",
        "function" => function.clone(),
        "trigger" => r.trigger
    )
    .record(r.duration_us as f64 / 1e6);
    metrics::histogram!("updraft_instantiate_seconds", "function" => function.clone())
        .record(r.instantiate_us as f64 / 1e6);
    if r.cold {
        metrics::counter!("updraft_cold_starts_total", "function" => function).increment(1);
    }
}
