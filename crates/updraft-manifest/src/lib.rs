//! `updraft.toml`: the app manifest.
//!
//! The manifest says *what* an app is: its variables, its functions (where each component
//! is, how to build it, what it may reach, its limits) and the triggers that run them. It
//! never says *where* state lives; that is the runtime config's job.
//!
//! [`Manifest::load`] reads and checks a manifest in one step, so every other crate works
//! with a manifest that is known to be consistent: every value parses, every allow-list
//! names a declared resource, every variable template names a declared variable.
//! Trigger tables are kept as written ([`Triggers`]); the trigger registry in
//! `updraft-triggers` parses and checks them.
//!
//! To add a section (a resource): add its type in [`types`] with
//! `#[serde(deny_unknown_fields)]`, add its checks to [`validate`], and document it in
//! `docs/manifest.md`. A trigger kind needs nothing here: it is a folder in
//! `updraft-triggers` and one line in its registry.

pub mod allow;
mod error;
pub mod gateway;
#[cfg(test)]
mod properties;
pub mod stream;
pub mod types;
mod validate;
pub mod values;

use std::path::{Path, PathBuf};

pub use allow::{ALLOW_LISTS, AllowList};
pub use error::ManifestError;
pub use gateway::Gateway;
pub use stream::{
    BrokerAddr, HttpIngest, Ingest, KeySource, MqttIngest, PayloadFormat, StreamDecl,
};
pub use types::*;
pub use values::{AllowedHost, ByteSize, HumanDuration, Template};

/// The file name `updraft up` and `updraft build` look for in an app folder.
pub const MANIFEST_FILE: &str = "updraft.toml";

/// A parsed and validated manifest, with the folder it came from.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    /// The manifest itself.
    pub manifest: Manifest,
    /// The manifest file, as given.
    pub path: PathBuf,
    /// The folder relative paths in the manifest are resolved against.
    pub dir: PathBuf,
}

impl Manifest {
    /// Reads `updraft.toml` from `dir` (or `dir` itself when it names a file) and validates it.
    pub fn load(dir_or_file: &Path) -> Result<LoadedManifest, ManifestError> {
        let path = if dir_or_file.is_dir() {
            dir_or_file.join(MANIFEST_FILE)
        } else {
            dir_or_file.to_path_buf()
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        let manifest = Self::parse(&text).map_err(|err| err.in_file(&path))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        Ok(LoadedManifest {
            manifest,
            path,
            dir,
        })
    }

    /// Parses and validates manifest text. Errors carry the key they are about.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let deserializer =
            toml::de::Deserializer::parse(text).map_err(|err| ManifestError::Syntax {
                path: None,
                key: String::new(),
                message: err.to_string(),
            })?;
        let manifest: Manifest = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = err.path().to_string();
            ManifestError::Syntax {
                path: None,
                key: if key == "." { String::new() } else { key },
                message: err.into_inner().to_string(),
            }
        })?;
        validate::manifest(&manifest)?;
        Ok(manifest)
    }
}

impl LoadedManifest {
    /// Resolves a path from the manifest against the manifest's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }

    /// The folder updraft keeps its own files in for this app (`.updraft/`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(".updraft")
    }
}

pub use validate::{METHODS, declared, is_id, unknown_function};

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[app]
name = "shop"
[variables]
greeting = { default = "hello" }
[kv.cache]
[sql.orders]
migrations = "migrations"
[function.hello]
source = "hello.wasm"
kv = ["cache"]
sql = ["orders"]
timeout = "2s"
memory = "64MiB"
allowed_outbound_hosts = ["http://127.0.0.1:*"]
[function.hello.variables]
message = "{{ greeting }}, world"
[[trigger.http]]
route = "/hello"
methods = ["get"]
function = "hello"
[[trigger.http]]
route = "/..."
static = "web"
"#;

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        let f = &m.function["hello"];
        assert_eq!(f.http_timeout(), std::time::Duration::from_secs(2));
        assert_eq!(f.memory_bytes(), 64 << 20);
        assert_eq!(m.trigger["http"].len(), 2);
    }

    fn err(text: &str) -> String {
        Manifest::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_name_the_key() {
        let e = err(&GOOD.replace("timeout = \"2s\"", "timeout = \"2s\"\nbogus = 1"));
        assert!(e.contains("function.hello"), "{e}");
        assert!(e.contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn bad_values_say_how_to_write_them() {
        let e = err(&GOOD.replace("\"2s\"", "\"soon\""));
        assert!(
            e.contains("function.hello.timeout") && e.contains("\"30s\""),
            "{e}"
        );
        let e = err(&GOOD.replace("\"64MiB\"", "\"lots\""));
        assert!(
            e.contains("function.hello.memory") && e.contains("128MiB"),
            "{e}"
        );
        let e = err(&GOOD.replace("{{ greeting }}", "{{ missing }}"));
        assert!(e.contains("missing") && e.contains("[variables]"), "{e}");
        let e = err(&GOOD.replace("kv = [\"cache\"]", "kv = [\"cahce\"]"));
        assert!(
            e.contains("function.hello.kv[0]") && e.contains("[kv.cahce]"),
            "{e}"
        );
        let e = err(&GOOD.replace("sql = [\"orders\"]", "sql = [\"order\"]"));
        assert!(
            e.contains("function.hello.sql[0]") && e.contains("(declared: `orders`)"),
            "{e}"
        );
        let e = err(&GOOD.replace("\"64MiB\"", "\"8GiB\""));
        assert!(e.contains("at most \"4GiB\""), "{e}");
        let e = err(&GOOD.replace("\"2s\"", "\"400d\""));
        assert!(e.contains("at most 24h"), "{e}");
        let e = err(&GOOD.replace("timeout = \"2s\"", "timeout = \"2s\"\nreuse = 0"));
        assert!(
            e.contains("function.hello.reuse") && e.contains("at least 1"),
            "{e}"
        );
    }

    const PANEL: &str = r#"
[[dashboard.panel]]
title = "Orders per day"
sql = "orders"
query = "SELECT day, COUNT(*) AS n FROM orders GROUP BY day"
chart = "line"
x = "day"
y = "n"
refresh = "30s"
"#;

    #[test]
    fn dashboard_panels_parse_and_bad_ones_name_the_key_and_the_fix() {
        let m =
            Manifest::parse(&format!("{GOOD}[dashboard]\nroute = \"/reports\"\n{PANEL}")).unwrap();
        let p = &m.dashboard.panel[0];
        assert_eq!(
            (p.chart, p.y.as_ref().map(OneOrMany::to_vec)),
            (ChartKind::Line, Some(vec!["n".to_owned()]))
        );
        for (change, key, says) in [
            (
                "sql = \"orders\"",
                "dashboard.panel[0].sql",
                "add a `[sql.sales]` table (declared: `orders`)",
            ),
            (
                "x = \"day\"",
                "dashboard.panel[0].x",
                "a `line` chart needs `x`",
            ),
            (
                "y = \"n\"",
                "dashboard.panel[0].y",
                "a `line` chart needs `y`",
            ),
            (
                "refresh = \"30s\"",
                "dashboard.panel[0].refresh",
                "at most once a second",
            ),
            (
                "chart = \"line\"",
                "dashboard.panel[0].chart",
                "`line`, `bar`, `area`, `pie`",
            ),
        ] {
            let replacement = match key.rsplit('.').next() {
                Some("sql") => "sql = \"sales\"",
                Some("refresh") => "refresh = \"10ms\"",
                Some("chart") => "chart = \"scatter\"",
                _ => "",
            };
            let e = err(&format!("{GOOD}{}", PANEL.replace(change, replacement)));
            assert!(e.contains(key) && e.contains(says), "{change}: {e}");
        }
        let e = err(&format!("{GOOD}[dashboard]\nroute = \"/_updraft/x\"\n"));
        assert!(
            e.contains("dashboard.route") && e.contains("\"/reports\""),
            "{e}"
        );
    }
}
