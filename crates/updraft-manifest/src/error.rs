use std::path::{Path, PathBuf};

/// Everything that can be wrong with a manifest. Each message names the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest `{}`: {source}; run updraft in a folder that has an `updraft.toml`, or pass the folder", path.display())]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("invalid manifest{}{}: {message}", in_path(path), at_key(key))]
    Syntax {
        /// The manifest file, once known.
        path: Option<PathBuf>,
        /// The dotted key the error is about, when known.
        key: String,
        /// The parser's message.
        message: String,
    },
    /// A value that parses but does not make sense (an unknown function, a bad route...).
    #[error("invalid manifest{}{}: {message}", in_path(path), at_key(key))]
    Invalid {
        /// The manifest file, once known.
        path: Option<PathBuf>,
        /// The dotted key the error is about.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ManifestError {
    /// A semantic error about `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// Attaches the manifest file the error was found in.
    pub fn in_file(self, file: &Path) -> Self {
        match self {
            Self::Syntax { key, message, .. } => Self::Syntax {
                path: Some(file.to_path_buf()),
                key,
                message,
            },
            Self::Invalid { key, message, .. } => Self::Invalid {
                path: Some(file.to_path_buf()),
                key,
                message,
            },
            other => other,
        }
    }

    /// The dotted key this error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Syntax { key, .. } | Self::Invalid { key, .. } if !key.is_empty() => Some(key),
            _ => None,
        }
    }
}

fn in_path(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" `{}`", p.display()))
        .unwrap_or_default()
}

fn at_key(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" at `{key}`")
    }
}
