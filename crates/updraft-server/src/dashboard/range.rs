//! The time-range picker of the table explorer and the app's panels.
//!
//! A query says where time goes in it with `$from` and `$to` (bound as RFC 3339 text by
//! [`TimeRange::bind`], so `WHERE at >= $from AND at < $to`); the picker chooses them, and
//! a line or area chart over dates then spans the whole range. Queries without them are
//! not affected. The overview's window links are drawn by the same [`links`].

use std::fmt::Write;
use std::time::Duration;

use super::escape;
use crate::api::TimeRange;

/// The ranges offered, by name, with their length; `all` (the default) leaves no row out.
const RANGES: [(&str, Option<u64>); 6] = [
    ("1h", Some(3_600)),
    ("24h", Some(86_400)),
    ("7d", Some(7 * 86_400)),
    ("30d", Some(30 * 86_400)),
    ("1y", Some(365 * 86_400)),
    ("all", None),
];

/// A picked range: its name and the times it stands for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Picked {
    pub(super) name: &'static str,
    pub(super) range: TimeRange,
}

impl Picked {
    /// The range named `name` (none: `all`), or which names there are.
    pub(super) fn named(name: Option<&str>) -> Result<Self, String> {
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or("all");
        let (name, span) = RANGES
            .iter()
            .find(|(n, _)| *n == name)
            .copied()
            .ok_or_else(|| {
                format!(
                    "range `{}` is not one the dashboard offers; pick one of {}",
                    name.chars().take(20).collect::<String>(),
                    names().join(", ")
                )
            })?;
        let range = span.map_or_else(TimeRange::all, |s| TimeRange::last(Duration::from_secs(s)));
        Ok(Self { name, range })
    }

    /// What a chart of `sql`'s rows spans: the range, when the query uses it and the range
    /// is not all time.
    pub(super) fn span_of(&self, sql: &str) -> Option<(f64, f64)> {
        (self.name != "all" && TimeRange::used_by(sql)).then(|| self.range.seconds())
    }
}

fn names() -> Vec<&'static str> {
    RANGES.iter().map(|(n, _)| *n).collect()
}

/// The picker as `<option>`s of a form's `range` select.
pub(super) fn options(current: &str) -> String {
    let mut out = String::new();
    for name in names() {
        let selected = if name == current { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{name}</option>");
    }
    out
}

/// The picker as links to `href?{param}=<name>` (`href` may hold a query already).
pub(super) fn picker(href: &str, current: &str) -> String {
    links("Range", href, "range", &names(), current)
}

/// A row of links, one per choice, `current` marked: `label: a b c`.
pub(super) fn links(
    label: &str,
    href: &str,
    param: &str,
    choices: &[&str],
    current: &str,
) -> String {
    let join = if href.contains('?') { "&" } else { "?" };
    let mut out = format!(r#"<p class="windows">{label}: "#);
    for choice in choices {
        let mark = if *choice == current {
            r#" aria-current="true""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<a href="{}{join}{param}={choice}"{mark}>{choice}</a>"#,
            escape(href)
        );
    }
    out + "</p>"
}
