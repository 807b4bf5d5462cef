//! Properties of what `updraft up` reads before it starts, on stable, with the inputs of the
//! `runtime_config` and `manifest` fuzz targets (`fuzz/`): the runtime config and the
//! manifest's trigger tables parse or are refused with an error naming their table, never
//! with a panic.

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use toml::{Table, Value};

use crate::backends::RuntimeConfig;

fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    let env = |name: &str| std::env::var_os(name).is_some();
    ProptestConfig {
        // The same cases every run, so the test command never flakes on one a run happened
        // to draw; `PROPTEST_RNG_SEED` and `PROPTEST_CASES` explore further.
        cases: if env("PROPTEST_CASES") {
            default.cases
        } else {
            256
        },
        rng_seed: if env("PROPTEST_RNG_SEED") {
            default.rng_seed
        } else {
            RngSeed::Fixed(0x5eed_0009)
        },
        failure_persistence: None,
        ..default
    }
}

/// TOML values: plausible ones (which may still be wrong where they go), and anything.
fn value(plausible: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        6 => proptest::sample::select(plausible).prop_map(|s| Value::String(s.to_owned())),
        2 => ".{0,12}".prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::Integer),
        2 => (0i64..10).prop_map(Value::Integer),
        1 => any::<f64>().prop_map(Value::Float),
        1 => any::<bool>().prop_map(Value::Boolean),
    ];
    leaf.prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A table with some of `keys` (and maybe an unknown one) set to values.
fn table(
    keys: &'static [&'static str],
    plausible: &'static [&'static str],
) -> impl Strategy<Value = Table> {
    let key = prop_oneof![
        8 => proptest::sample::select(keys).prop_map(str::to_owned),
        1 => "[a-z_]{1,8}",
    ];
    proptest::collection::btree_map(key, value(plausible), 0..5)
        .prop_map(|m| m.into_iter().collect())
}

const STATE_KEYS: &[&str] = &["type", "url", "replicas", "path"];
const STATE_VALUES: &[&str] = &[
    "sqlite",
    "nats",
    "redis",
    "nats://127.0.0.1:4222",
    "tls://n1:4222",
    "http://x",
    "",
];

/// What a manifest's triggers may name, and plausible values for their keys.
const APP: &str = r#"
[app]
name = "shop"
[queue.jobs]
[topic.orders]
[function.hello]
source = "hello.wasm"
[function.worker]
source = "worker.wasm"
"#;
const KINDS: &[&str] = &["http", "queue", "topic", "cron", "webhook"];
const TRIGGER_KEYS: &[&str] = &[
    "function",
    "route",
    "methods",
    "static",
    "queue",
    "topic",
    "subscription",
    "filter",
    "batch",
    "max_concurrency",
    "schedule",
    "timezone",
];
const TRIGGER_VALUES: &[&str] = &[
    "hello",
    "worker",
    "nobody",
    "jobs",
    "orders",
    "/hello",
    "/hello/:name",
    "/...",
    "/_updraft/x",
    "hello//x",
    "web",
    "GET",
    "get",
    "BREW",
    "*/5 * * * *",
    "@hourly",
    "0 0 31 2 *",
    "every day",
    "Europe/Berlin",
    "Mars/Olympus",
    "order.",
    "eu/",
    "",
];

proptest! {
    #![proptest_config(config())]

    /// Any text: a runtime config or an error naming the runtime config, never a panic;
    /// a config that parses describes its state backend or says why not.
    #[test]
    fn any_runtime_config_text_parses_or_is_refused(text in prop_oneof![
        ".{0,48}",
        "(\\[(state|sql\\.[a-z]{1,4}|[a-z]{1,5})\\]\n|(type|url|replicas|[a-z]{1,5}) = (\"[a-z0-9:/.]{0,12}\"|[0-9]{1,3}|true)\n){0,6}",
    ]) {
        match RuntimeConfig::parse_str(&text) {
            Ok(config) => {
                if let Err(e) = config.describe_state() {
                    prop_assert!(format!("{e:#}").contains("[state]"), "{:#}", e);
                }
            }
            Err(e) => prop_assert!(format!("{e:#}").contains("runtime config"), "{:#}", e),
        }
        let _ = RuntimeConfig::default().with_store(&text);
    }

    /// A wrong `[state]` or `[sql.<label>]` table is refused naming that table.
    #[test]
    fn wrong_backend_tables_are_refused_naming_their_table(
        state in proptest::option::of(table(STATE_KEYS, STATE_VALUES)),
        sql in proptest::collection::btree_map("[a-z]{1,6}", table(STATE_KEYS, STATE_VALUES), 0..2),
    ) {
        let mut root = Table::new();
        if let Some(state) = state {
            root.insert("state".into(), Value::Table(state));
        }
        if !sql.is_empty() {
            root.insert(
                "sql".into(),
                Value::Table(sql.into_iter().map(|(k, v)| (k, Value::Table(v))).collect()),
            );
        }
        let text = toml::to_string(&root).unwrap_or_else(|e| panic!("{e}"));
        match RuntimeConfig::parse_str(&text) {
            Ok(config) => {
                if let Err(e) = config.describe_state() {
                    prop_assert!(format!("{e:#}").contains("[state]"), "{:#} for\n{}", e, text);
                }
            }
            Err(e) => {
                let e = format!("{e:#}");
                prop_assert!(e.contains("[state]") || e.contains("[sql."), "{} for\n{}", e, text);
            }
        }
    }

    /// Any text: `parse_app` (the manifest, then its triggers) gives an app or an error.
    #[test]
    fn any_manifest_text_parses_or_is_refused(text in ".{0,64}") {
        if let Err(e) = updraft_triggers::parse_app(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// A wrong `[[trigger.<kind>]]` table is refused with a key under `trigger.`.
    #[test]
    fn wrong_trigger_tables_are_refused_naming_their_key(
        triggers in proptest::collection::vec(
            (proptest::sample::select(KINDS), table(TRIGGER_KEYS, TRIGGER_VALUES)),
            1..4,
        ),
    ) {
        let mut root: Table = toml::from_str(APP).unwrap_or_else(|e| panic!("{e}"));
        let mut kinds = Table::new();
        for (kind, table) in triggers {
            let list = kinds
                .entry(kind.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = list {
                list.push(Value::Table(table));
            }
        }
        root.insert("trigger".into(), Value::Table(kinds));
        let text = toml::to_string(&root).unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = updraft_triggers::parse_app(&text) {
            prop_assert!(
                e.key().is_some_and(|k| k.starts_with("trigger.")),
                "`{}` has no key under `trigger.`, for\n{}", e, text
            );
        }
    }
}
