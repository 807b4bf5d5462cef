//! Checks that go beyond types: names, cross-references and ranges.
//!
//! Route patterns are checked by the gateway's router, which owns their meaning.

use crate::error::ManifestError;
use crate::types::{Function, HttpTrigger, Manifest};
use crate::values::is_variable_name;

/// HTTP methods a route may list.
pub const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Longest function timeout.
const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Largest memory a wasm32 instance can address.
const MAX_MEMORY: u64 = 4 << 30;

pub(crate) fn manifest(m: &Manifest) -> Result<(), ManifestError> {
    if !is_id(&m.app.name) {
        return Err(ManifestError::invalid(
            "app.name",
            format!(
                "`{}` is not a valid app name; use lowercase letters, digits and `-`, starting with a letter",
                m.app.name
            ),
        ));
    }
    for (name, decl) in &m.variables {
        let key = format!("variables.{name}");
        if !is_variable_name(name) {
            return Err(ManifestError::invalid(
                key,
                "variable names use lowercase letters, digits and `_`, starting with a letter",
            ));
        }
        if decl.required && decl.default.is_some() {
            return Err(ManifestError::invalid(
                key,
                "a variable is either `required` or has a `default`, not both; drop one",
            ));
        }
    }
    for label in
        m.kv.keys()
            .chain(m.sql.keys())
            .chain(m.queue.keys())
            .chain(m.topic.keys())
    {
        if !is_id(label) && !is_variable_name(label) {
            return Err(ManifestError::invalid(
                label.clone(),
                "resource labels use lowercase letters, digits, `-` and `_`, starting with a letter",
            ));
        }
    }
    for (id, f) in &m.function {
        function(m, id, f)?;
    }
    if let Some(t) = &m.async_.completion_topic
        && !m.topic.contains_key(t)
    {
        return Err(ManifestError::invalid(
            "async.completion_topic",
            format!(
                "topic `{t}` is not declared; add a `[topic.{t}]` table{}",
                declared(m.topic.keys())
            ),
        ));
    }
    for (kind, name, q) in m
        .queue
        .iter()
        .map(|(n, q)| ("queue", n, q))
        .chain(m.topic.iter().map(|(n, q)| ("topic", n, q)))
    {
        if q.max_attempts == Some(0) {
            return Err(ManifestError::invalid(
                format!("{kind}.{name}.max_attempts"),
                "must be at least 1 (the first delivery counts)",
            ));
        }
    }
    for (i, t) in m.trigger.http.iter().enumerate() {
        http_trigger(m, i, t)?;
    }
    let mut subscriptions = std::collections::BTreeSet::new();
    for (i, t) in m.trigger.topic.iter().enumerate() {
        let key = |k: &str| format!("trigger.topic[{i}].{k}");
        if !m.topic.contains_key(&t.topic) {
            return Err(ManifestError::invalid(
                key("topic"),
                format!(
                    "topic `{}` is not declared; add a `[topic.{}]` table{}",
                    t.topic,
                    t.topic,
                    declared(m.topic.keys())
                ),
            ));
        }
        if !m.function.contains_key(&t.function) {
            return Err(unknown_function(m, key("function"), &t.function));
        }
        if !is_id(t.subscription_name()) {
            return Err(ManifestError::invalid(
                key("subscription"),
                "subscription names use lowercase letters, digits and `-`, starting with a letter",
            ));
        }
        if !subscriptions.insert((t.topic.clone(), t.subscription_name().to_owned())) {
            return Err(ManifestError::invalid(
                key("subscription"),
                format!(
                    "topic `{}` already has a subscription `{}`; give this trigger its own `subscription = \"...\"`",
                    t.topic,
                    t.subscription_name()
                ),
            ));
        }
        if t.batch == Some(0) || t.max_concurrency == Some(0) {
            return Err(ManifestError::invalid(
                format!("trigger.topic[{i}]"),
                "`batch` and `max_concurrency` must be at least 1",
            ));
        }
        if m.queue
            .contains_key(&format!("{}.{}", t.topic, t.subscription_name()))
        {
            return Err(ManifestError::invalid(
                key("subscription"),
                "its delivery queue name is taken by a `[queue]`",
            ));
        }
    }
    for (i, t) in m.trigger.cron.iter().enumerate() {
        let key = |k: &str| format!("trigger.cron[{i}].{k}");
        if let Err(e) = parse_cron(&t.schedule) {
            let field = bad_cron_field(&t.schedule)
                .map(|f| format!("its {f} field is wrong: "))
                .unwrap_or_default();
            return Err(ManifestError::invalid(
                key("schedule"),
                format!(
                    "`{}` is not a cron schedule ({field}{e}); write 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or an alias like \"@hourly\"",
                    t.schedule
                ),
            ));
        }
        if let Some(tz) = &t.timezone
            && tz.parse::<chrono_tz::Tz>().is_err()
        {
            return Err(ManifestError::invalid(
                key("timezone"),
                format!(
                    "`{tz}` is not an IANA time zone; write one like \"Europe/Berlin\" or \"UTC\""
                ),
            ));
        }
        if !m.function.contains_key(&t.function) {
            return Err(unknown_function(m, key("function"), &t.function));
        }
    }
    for (i, t) in m.trigger.queue.iter().enumerate() {
        let key = |k: &str| format!("trigger.queue[{i}].{k}");
        if !m.queue.contains_key(&t.queue) {
            return Err(ManifestError::invalid(
                key("queue"),
                format!(
                    "queue `{}` is not declared; add a `[queue.{}]` table{}",
                    t.queue,
                    t.queue,
                    declared(m.queue.keys())
                ),
            ));
        }
        if !m.function.contains_key(&t.function) {
            return Err(unknown_function(m, key("function"), &t.function));
        }
        if t.batch == Some(0) || t.max_concurrency == Some(0) {
            return Err(ManifestError::invalid(
                format!("trigger.queue[{i}]"),
                "`batch` and `max_concurrency` must be at least 1",
            ));
        }
    }
    Ok(())
}

fn function(m: &Manifest, id: &str, f: &Function) -> Result<(), ManifestError> {
    let key = |k: &str| format!("function.{id}.{k}");
    if !is_id(id) {
        return Err(ManifestError::invalid(
            format!("function.{id}"),
            "function ids use lowercase letters, digits and `-`, starting with a letter",
        ));
    }
    if f.source.as_os_str().is_empty() {
        return Err(ManifestError::invalid(
            key("source"),
            "give the path of the function's `.wasm` component",
        ));
    }
    if let Some(b) = &f.build
        && b.command.trim().is_empty()
    {
        return Err(ManifestError::invalid(
            key("build.command"),
            "the build command is empty; give the command that produces `source`, or drop `[build]`",
        ));
    }
    if f.max_concurrency == Some(0) {
        return Err(ManifestError::invalid(
            key("max_concurrency"),
            "must be at least 1",
        ));
    }
    if let Some(t) = f.timeout
        && t.0 > MAX_TIMEOUT
    {
        return Err(ManifestError::invalid(
            key("timeout"),
            "a function may run for at most 24h; give a shorter timeout",
        ));
    }
    if let Some(mem) = f.memory
        && mem.0 > MAX_MEMORY
    {
        return Err(ManifestError::invalid(
            key("memory"),
            format!(
                "{mem} is over the 4 GiB a 32-bit WebAssembly memory can address; give at most \"4GiB\""
            ),
        ));
    }
    if let Some(mem) = f.memory
        && mem.0 < 1 << 20
    {
        return Err(ManifestError::invalid(
            key("memory"),
            format!("{mem} is too small for a component; give at least \"1MiB\""),
        ));
    }
    for (i, label) in f.kv.iter().enumerate() {
        if !m.kv.contains_key(label) {
            return Err(ManifestError::invalid(
                key(&format!("kv[{i}]")),
                format!(
                    "kv store `{label}` is not declared; add a `[kv.{label}]` table{}",
                    declared(m.kv.keys())
                ),
            ));
        }
    }
    for (i, label) in f.sql.iter().enumerate() {
        if !m.sql.contains_key(label) {
            return Err(ManifestError::invalid(
                key(&format!("sql[{i}]")),
                format!(
                    "sql database `{label}` is not declared; add a `[sql.{label}]` table{}",
                    declared(m.sql.keys())
                ),
            ));
        }
    }
    for (i, name) in f.enqueue.iter().enumerate() {
        if !m.queue.contains_key(name) {
            return Err(ManifestError::invalid(
                key(&format!("enqueue[{i}]")),
                format!(
                    "queue `{name}` is not declared; add a `[queue.{name}]` table{}",
                    declared(m.queue.keys())
                ),
            ));
        }
    }
    for (i, name) in f.publish.iter().enumerate() {
        if !m.topic.contains_key(name) {
            return Err(ManifestError::invalid(
                key(&format!("publish[{i}]")),
                format!(
                    "topic `{name}` is not declared; add a `[topic.{name}]` table{}",
                    declared(m.topic.keys())
                ),
            ));
        }
    }
    for (name, template) in &f.variables {
        if !is_variable_name(name) {
            return Err(ManifestError::invalid(
                key(&format!("variables.{name}")),
                "variable names use lowercase letters, digits and `_`, starting with a letter",
            ));
        }
        for used in template.variables() {
            if !m.variables.contains_key(used) {
                return Err(ManifestError::invalid(
                    key(&format!("variables.{name}")),
                    format!(
                        "`{{{{ {used} }}}}` names an app variable that is not declared; add `{used} = {{ default = \"...\" }}` under `[variables]`"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn http_trigger(m: &Manifest, i: usize, t: &HttpTrigger) -> Result<(), ManifestError> {
    let key = |k: &str| format!("trigger.http[{i}].{k}");
    match (&t.function, &t.static_dir) {
        (Some(_), Some(_)) => {
            return Err(ManifestError::invalid(
                key("static"),
                "a route is served by a `function` or by `static` files, not both; split it into two routes",
            ));
        }
        (None, None) => {
            return Err(ManifestError::invalid(
                format!("trigger.http[{i}]"),
                "the route has neither `function` nor `static`; add `function = \"<id>\"`",
            ));
        }
        (Some(f), None) if !m.function.contains_key(f) => {
            return Err(unknown_function(m, key("function"), f));
        }
        _ => {}
    }
    if let Some(methods) = &t.methods {
        if methods.is_empty() {
            return Err(ManifestError::invalid(
                key("methods"),
                "an empty list matches nothing; list methods like [\"GET\"] or drop the key to allow all",
            ));
        }
        for method in methods {
            if !METHODS.contains(&method.to_ascii_uppercase().as_str()) {
                return Err(ManifestError::invalid(
                    key("methods"),
                    format!(
                        "`{method}` is not an HTTP method; use one of {}",
                        METHODS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn parse_cron(s: &str) -> Result<croner::Cron, croner::errors::CronError> {
    <croner::Cron as std::str::FromStr>::from_str(s)
}

/// Names the field that makes `schedule` invalid: the one whose replacement by `*` fixes it.
fn bad_cron_field(schedule: &str) -> Option<&'static str> {
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let names: &[&str] = match fields.len() {
        5 => &["minute", "hour", "day-of-month", "month", "day-of-week"],
        6 => &[
            "second",
            "minute",
            "hour",
            "day-of-month",
            "month",
            "day-of-week",
        ],
        _ => return None,
    };
    (0..fields.len()).find_map(|i| {
        let mut fixed = fields.clone();
        fixed[i] = "*";
        parse_cron(&fixed.join(" ")).is_ok().then_some(names[i])
    })
}

/// A trigger names a function the manifest does not declare.
fn unknown_function(m: &Manifest, key: String, name: &str) -> ManifestError {
    ManifestError::invalid(
        key,
        format!(
            "function `{name}` is not declared; add a `[function.{name}]` table or fix the name{}",
            declared(m.function.keys())
        ),
    )
}

/// `[a-z][a-z0-9-]*`
pub fn is_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// ` (declared: `a`, `b`)`, or nothing when none are.
fn declared<'a>(known: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<String> = known.map(|k| format!("`{k}`")).collect();
    if list.is_empty() {
        String::new()
    } else {
        format!(" (declared: {})", list.join(", "))
    }
}
