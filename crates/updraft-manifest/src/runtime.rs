//! `runtime.toml`: *where* an app's state lives (the manifest says *what* it is).
//!
//! ```toml
//! [state]                      # kv, queues, topics and cron claims
//! type = "nats"                # "sqlite" (default: .updraft/state.db) or "nats"
//! url = "nats://127.0.0.1:4222"
//! replicas = 3                 # copies of every stream and bucket (default 1)
//! ```
//!
//! `updraft up --store nats://HOST:PORT` is a shortcut for `[state]` and wins over the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file `updraft up` reads beside `updraft.toml`, if it exists.
pub const RUNTIME_FILE: &str = "runtime.toml";

/// Where platform state lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StateBackend {
    /// `.updraft/state.db` beside the manifest: one process, zero setup.
    #[default]
    Sqlite,
    /// NATS JetStream at `url`: shared by every node of the app.
    Nats {
        /// `nats://host:port`.
        url: String,
        /// Copies of every stream and bucket: 1 on a single server, 3 (a quorum survives
        /// one server's loss) on a cluster.
        replicas: usize,
    },
}

impl StateBackend {
    /// Parses `--store`: `sqlite`, or a `nats://` URL.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value == "sqlite" {
            Ok(Self::Sqlite)
        } else if value.starts_with("nats://") || value.starts_with("tls://") {
            Ok(Self::Nats {
                url: value.to_owned(),
                replicas: 1,
            })
        } else {
            Err(format!(
                "unknown store `{value}`; use `sqlite` or a NATS URL such as `nats://127.0.0.1:4222`"
            ))
        }
    }

    /// How it is shown to the user.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite => "sqlite (.updraft/state.db)".to_owned(),
            Self::Nats { url, replicas } => {
                format!("nats jetstream at {url} ({replicas} replica(s))")
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeFile {
    state: Option<StateSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateSection {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    replicas: Option<usize>,
}

/// The runtime config of the app in `dir`: `file` if given, else `runtime.toml` beside the
/// manifest if it exists, else the defaults.
pub fn load_runtime_config(dir: &Path, file: Option<&Path>) -> Result<StateBackend, String> {
    let path: PathBuf = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let beside = dir.join(RUNTIME_FILE);
            if !beside.exists() {
                return Ok(StateBackend::Sqlite);
            }
            beside
        }
    };
    let shown = path.display();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the runtime config `{shown}`: {e}"))?;
    let parsed: RuntimeFile =
        toml::from_str(&text).map_err(|e| format!("runtime config `{shown}`: {e}"))?;
    let Some(state) = parsed.state else {
        return Ok(StateBackend::Sqlite);
    };
    match (state.kind.as_str(), state.url) {
        ("sqlite", None) if state.replicas.is_none() => Ok(StateBackend::Sqlite),
        ("nats", Some(url)) => match StateBackend::parse(&url) {
            Ok(StateBackend::Nats { url, .. }) => match state.replicas.unwrap_or(1) {
                n @ 1..=5 => Ok(StateBackend::Nats { url, replicas: n }),
                n => Err(format!(
                    "runtime config `{shown}`: `[state] replicas = {n}`: JetStream keeps 1 to 5 copies; use 3 on a cluster"
                )),
            },
            Ok(StateBackend::Sqlite) | Err(_) => Err(format!(
                "runtime config `{shown}`: `[state] url` must be a NATS URL such as `nats://127.0.0.1:4222`"
            )),
        },
        ("nats", None) => Err(format!(
            "runtime config `{shown}`: `[state] type = \"nats\"` needs `url = \"nats://HOST:PORT\"`"
        )),
        ("sqlite", _) => Err(format!(
            "runtime config `{shown}`: `[state] type = \"sqlite\"` takes no `url` or `replicas`; remove them"
        )),
        (other, _) => Err(format!(
            "runtime config `{shown}`: unknown `[state] type = \"{other}\"`; use \"sqlite\" or \"nats\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<StateBackend, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join(RUNTIME_FILE), text).map_err(|e| e.to_string())?;
        load_runtime_config(dir.path(), None)
    }

    #[test]
    fn state_backends_and_their_errors() {
        assert_eq!(load(""), Ok(StateBackend::Sqlite));
        assert_eq!(
            load("[state]\ntype = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n"),
            Ok(StateBackend::Nats {
                url: "nats://127.0.0.1:4222".into(),
                replicas: 1,
            })
        );
        assert_eq!(
            load("[state]\ntype = \"nats\"\nurl = \"nats://n1:4222\"\nreplicas = 3\n"),
            Ok(StateBackend::Nats {
                url: "nats://n1:4222".into(),
                replicas: 3,
            })
        );
        let many =
            load("[state]\ntype = \"nats\"\nurl = \"nats://n1:4222\"\nreplicas = 7\n").unwrap_err();
        assert!(many.contains("1 to 5 copies"), "{many}");
        let missing = load("[state]\ntype = \"nats\"\n").unwrap_err();
        assert!(missing.contains("needs `url"), "{missing}");
        let unknown = load("[state]\ntype = \"redis\"\n").unwrap_err();
        assert!(unknown.contains("\"redis\""), "{unknown}");
        let key = load("[state]\ntype = \"sqlite\"\npath = \"x\"\n").unwrap_err();
        assert!(key.contains("path"), "{key}");
        assert!(StateBackend::parse("redis://x").is_err());
    }
}
