//! Properties of the manifest parser, on stable, with the inputs of the `manifest` fuzz
//! target (`fuzz/`): any text is a manifest or an error with a message, never a panic; a
//! wrong value anywhere under a table is an error naming its key.

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use toml::{Table, Value};

use crate::Manifest;

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

/// A manifest with every kind of table, which parses.
pub(crate) const BASE: &str = r#"
[app]
name = "shop"
description = "a shop"
[variables]
greeting = { default = "hello" }
api_key = { required = true, secret = true }
[kv.cache]
[sql.orders]
migrations = "migrations"
max_rows = 100
max_bytes = "1MiB"
[queue.jobs]
max_attempts = 3
lease = "30s"
backoff = "1s"
max_backoff = "5m"
[topic.orders]
[async]
completion_topic = "orders"
callback_hosts = ["https://hooks.example.com"]
[function.hello]
source = "hello.wasm"
kv = ["cache"]
sql = ["orders"]
enqueue = ["jobs"]
publish = ["orders"]
allowed_outbound_hosts = ["http://127.0.0.1:*"]
timeout = "2s"
memory = "64MiB"
max_concurrency = 10
reuse = 4
[function.hello.build]
command = "cargo build"
[function.hello.variables]
message = "{{ greeting }}, world"
[[trigger.http]]
route = "/hello"
function = "hello"
"#;

/// Where a wrong value goes: the path of a key under a table.
const PATHS: &[&[&str]] = &[
    &["app", "name"],
    &["app", "description"],
    &["variables", "greeting"],
    &["variables", "greeting", "default"],
    &["variables", "api_key", "required"],
    &["variables", "NEW"],
    &["kv", "cache"],
    &["kv", "NEW"],
    &["sql", "orders", "migrations"],
    &["sql", "orders", "max_rows"],
    &["sql", "orders", "max_bytes"],
    &["sql", "orders", "path"],
    &["sql", "NEW"],
    &["queue", "jobs", "max_attempts"],
    &["queue", "jobs", "lease"],
    &["queue", "jobs", "backoff"],
    &["queue", "jobs", "max_backoff"],
    &["topic", "orders", "NEW"],
    &["async", "completion_topic"],
    &["async", "callback_hosts"],
    &["async", "NEW"],
    &["function", "hello", "source"],
    &["function", "hello", "kv"],
    &["function", "hello", "sql"],
    &["function", "hello", "enqueue"],
    &["function", "hello", "publish"],
    &["function", "hello", "allowed_outbound_hosts"],
    &["function", "hello", "timeout"],
    &["function", "hello", "memory"],
    &["function", "hello", "max_concurrency"],
    &["function", "hello", "reuse"],
    &["function", "hello", "async"],
    &["function", "hello", "build"],
    &["function", "hello", "build", "command"],
    &["function", "hello", "variables", "message"],
    &["function", "hello", "variables", "NEW"],
    &["function", "hello", "NEW"],
    &["function", "NEW"],
    &["function", "NEW", "source"],
];

/// TOML values: plausible ones (which may still be wrong where they go), and anything.
fn value() -> impl Strategy<Value = Value> {
    let plausible = proptest::sample::select(vec![
        "hello",
        "",
        "2s",
        "soon",
        "64MiB",
        "8GiB",
        "lots",
        "cache",
        "cahce",
        "orders",
        "jobs",
        "/hello",
        "http://127.0.0.1:*",
        "https://*.example.com",
        "ftp://x",
        "{{ greeting }}",
        "{{ missing }}",
        "{{",
        "hello.wasm",
        "Hello",
        "a b",
    ]);
    let leaf = prop_oneof![
        4 => plausible.prop_map(|s| Value::String(s.to_owned())),
        2 => ".{0,12}".prop_map(Value::String),
        2 => any::<i64>().prop_map(Value::Integer),
        1 => (0i64..1000).prop_map(Value::Integer),
        1 => any::<f64>().prop_map(Value::Float),
        1 => any::<bool>().prop_map(Value::Boolean),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Table(m.into_iter().collect())),
        ]
    })
}

/// `table` with `value` at `path` (tables on the way are made; a `NEW` segment is `name`).
fn put(table: &mut Table, path: &[&str], name: &str, value: Value) {
    let key = |k: &str| {
        if k == "NEW" {
            name.to_owned()
        } else {
            k.to_owned()
        }
    };
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = table;
    for p in parents {
        let entry = at
            .entry(key(p))
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(t) = entry else {
            return;
        };
        at = t;
    }
    at.insert(key(last), value);
}

proptest! {
    #![proptest_config(config())]

    /// Any text: a manifest or an error with a message.
    #[test]
    fn any_text_parses_or_is_refused(text in prop_oneof![
        ".{0,64}",
        "(\\[[a-z.]{1,12}\\]\n|[a-z_]{1,8} = (\"[a-z0-9/:*.{} ]{0,8}\"|[0-9]{1,3}|true|\\[\\])\n){0,8}",
    ]) {
        if let Err(e) = Manifest::parse(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// A wrong value under a table is refused with the key it is about, inside that table.
    #[test]
    fn wrong_values_are_refused_naming_their_key(
        changes in proptest::collection::vec(
            (proptest::sample::select(PATHS), "[a-z][a-z0-9_-]{0,6}|[A-Z .]{1,4}", value()),
            1..3,
        ),
    ) {
        let mut table: Table = toml::from_str(BASE).unwrap_or_else(|e| panic!("{e}"));
        for (path, name, value) in &changes {
            put(&mut table, path, name, value.clone());
        }
        let text = toml::to_string(&table).unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = Manifest::parse(&text) {
            let key = e.key();
            prop_assert!(key.is_some(), "no key in `{}` for\n{}", e, text);
            let top = key.unwrap_or_default().split(['.', '[']).next().unwrap_or_default();
            prop_assert!(
                changes.iter().any(|(path, _, _)| path[0] == top),
                "`{}` is about `{}`, not a table that changed, for\n{}", e, top, text
            );
        }
    }

    /// An unknown top-level key is refused by name.
    #[test]
    fn unknown_sections_are_named(name in "[a-z_]{1,10}", value in value()) {
        let mut table: Table = toml::from_str(BASE).unwrap_or_else(|e| panic!("{e}"));
        prop_assume!(!table.contains_key(&name) && name != "trigger");
        table.insert(name.clone(), value);
        let text = toml::to_string(&table).unwrap_or_else(|e| panic!("{e}"));
        let e = Manifest::parse(&text).err().map(|e| e.to_string()).unwrap_or_default();
        prop_assert!(e.contains(&format!("`{name}`")), "{}", e);
    }
}

#[test]
fn the_base_manifest_parses() {
    Manifest::parse(BASE).unwrap_or_else(|e| panic!("{e}"));
}
