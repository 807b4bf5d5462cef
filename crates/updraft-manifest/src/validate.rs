//! Checks that go beyond types: names, cross-references and ranges.
//!
//! Trigger tables are checked by the trigger registry (`updraft-triggers`), which owns
//! their keys; [`unknown_function`] and [`declared`] are here for its messages.

use crate::allow::ALLOW_LISTS;
use crate::error::ManifestError;
use crate::types::{ChartKind, Function, Manifest, OneOrMany};
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
    for (table, label) in ALLOW_LISTS
        .iter()
        .flat_map(|list| m.declared(list).into_iter().map(|l| (list.table, l)))
    {
        if !is_id(label) && !is_variable_name(label) {
            return Err(ManifestError::invalid(
                format!("{table}.{label}"),
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
    dashboard(m)?;
    crate::gateway::validate(m)?;
    crate::stream::validate(m)?;
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
    Ok(())
}

/// Shortest panel refresh: a page that redraws faster would load the database for nothing.
const MIN_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

fn dashboard(m: &Manifest) -> Result<(), ManifestError> {
    if let Some(route) = &m.dashboard.route
        && (!route.starts_with('/') || route.starts_with("/_updraft"))
    {
        return Err(ManifestError::invalid(
            "dashboard.route",
            format!(
                "`{route}` is not a user route; give a path like \"/reports\" (paths under `/_updraft/` are updraft's own)"
            ),
        ));
    }
    for (i, p) in m.dashboard.panel.iter().enumerate() {
        let key = |k: &str| format!("dashboard.panel[{i}].{k}");
        if !m.sql.contains_key(&p.sql) {
            return Err(ManifestError::invalid(
                key("sql"),
                format!(
                    "sql database `{}` is not declared; add a `[sql.{}]` table{}",
                    p.sql,
                    p.sql,
                    declared(m.sql.keys())
                ),
            ));
        }
        if p.query.trim().is_empty() {
            return Err(ManifestError::invalid(
                key("query"),
                "the query is empty; give a `SELECT` whose columns the chart draws",
            ));
        }
        if p.chart != ChartKind::Table {
            let chart = p.chart.as_str();
            if p.x.is_none() {
                return Err(ManifestError::invalid(
                    key("x"),
                    format!("a `{chart}` chart needs `x`, the column along its axis"),
                ));
            }
            let ys = p.y.as_ref().map(OneOrMany::to_vec).unwrap_or_default();
            if ys.is_empty() {
                return Err(ManifestError::invalid(
                    key("y"),
                    format!("a `{chart}` chart needs `y`, the column (or columns) with its values"),
                ));
            }
            if p.group.is_some() && ys.len() > 1 {
                return Err(ManifestError::invalid(
                    key("group"),
                    "`group` splits one `y` column into series; give one `y` or drop `group`",
                ));
            }
            if p.chart == ChartKind::Pie && (ys.len() > 1 || p.group.is_some()) {
                return Err(ManifestError::invalid(
                    key("y"),
                    "a pie draws one series: give one `y` column and no `group`",
                ));
            }
        }
        if p.refresh.as_ref().is_some_and(|r| r.0 < MIN_REFRESH) {
            return Err(ManifestError::invalid(
                key("refresh"),
                "refresh at most once a second (`\"1s\"` or more)",
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
    if let Some(crate::types::AsyncSetting::With(limits)) = &f.async_
        && limits.max_queued == Some(0)
    {
        return Err(ManifestError::invalid(
            key("async.max_queued"),
            "must be at least 1; to refuse async invocations, drop `async`",
        ));
    }
    if f.reuse == Some(0) {
        return Err(ManifestError::invalid(
            key("reuse"),
            "must be at least 1 (1 is a fresh instance per request, the default)",
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
    for list in ALLOW_LISTS {
        let declared_names = m.declared(list);
        for (i, name) in f.allowed(list).iter().enumerate() {
            if !declared_names.contains(&name.as_str()) {
                return Err(ManifestError::invalid(
                    key(&format!("{}[{i}]", list.key)),
                    format!(
                        "{} `{name}` is not declared; add a `[{}.{name}]` table{}",
                        list.noun,
                        list.table,
                        declared(declared_names.iter())
                    ),
                ));
            }
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

/// A trigger names a function the manifest does not declare.
pub fn unknown_function(m: &Manifest, key: String, name: &str) -> ManifestError {
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
pub fn declared<K: std::fmt::Display>(known: impl Iterator<Item = K>) -> String {
    let list: Vec<String> = known.map(|k| format!("`{k}`")).collect();
    if list.is_empty() {
        String::new()
    } else {
        format!(" (declared: {})", list.join(", "))
    }
}
