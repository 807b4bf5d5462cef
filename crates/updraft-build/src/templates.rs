//! `updraft new`: project templates, embedded in the binary with the guest SDK and the WIT it
//! builds against, so a new project builds on a fresh machine with no checkout of updraft.
//!
//! To add a template: a folder under `templates/` and an entry in [`TEMPLATES`].

use std::path::Path;

use anyhow::Context;

/// A file to write: its path in the new project and its contents (`%%name%%` is replaced).
type File = (&'static str, &'static str);

macro_rules! embed {
    ($($dest:literal => $src:literal),* $(,)?) => {
        &[$(($dest, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $src)))),*]
    };
}

/// The SDK and WIT every Rust template vendors.
const SDK: &[File] = embed![
    "updraft-sdk/Cargo.toml" => "crates/updraft-sdk/Cargo.toml",
    "updraft-sdk/src/lib.rs" => "crates/updraft-sdk/src/lib.rs",
    "updraft-sdk/src/blob.rs" => "crates/updraft-sdk/src/blob.rs",
    "updraft-sdk/src/csv.rs" => "crates/updraft-sdk/src/csv.rs",
    "updraft-sdk/src/event.rs" => "crates/updraft-sdk/src/event.rs",
    "updraft-sdk/src/http.rs" => "crates/updraft-sdk/src/http.rs",
    "updraft-sdk/src/kv.rs" => "crates/updraft-sdk/src/kv.rs",
    "updraft-sdk/src/messaging.rs" => "crates/updraft-sdk/src/messaging.rs",
    "updraft-sdk/src/sql.rs" => "crates/updraft-sdk/src/sql.rs",
    "updraft-sdk/src/variables.rs" => "crates/updraft-sdk/src/variables.rs",
    "updraft-sdk/src/window.rs" => "crates/updraft-sdk/src/window.rs",
    "updraft-sdk/wit/updraft.wit" => "wit/updraft.wit",
    "updraft-sdk/wit/deps/config/store.wit" => "wit/deps/config/store.wit",
    "updraft-sdk/wit/deps/config/world.wit" => "wit/deps/config/world.wit",
    "updraft-sdk/wit/deps/keyvalue/store.wit" => "wit/deps/keyvalue/store.wit",
    "updraft-sdk/wit/deps/keyvalue/atomic.wit" => "wit/deps/keyvalue/atomic.wit",
    "updraft-sdk/wit/deps/keyvalue/batch.wit" => "wit/deps/keyvalue/batch.wit",
    "updraft-sdk/wit/deps/keyvalue/watch.wit" => "wit/deps/keyvalue/watch.wit",
    "updraft-sdk/wit/deps/keyvalue/world.wit" => "wit/deps/keyvalue/world.wit",
    "updraft-sdk/wit/deps/blobstore/blobstore.wit" => "wit/deps/blobstore/blobstore.wit",
    "updraft-sdk/wit/deps/blobstore/container.wit" => "wit/deps/blobstore/container.wit",
    "updraft-sdk/wit/deps/blobstore/types.wit" => "wit/deps/blobstore/types.wit",
    "updraft-sdk/wit/deps/blobstore/world.wit" => "wit/deps/blobstore/world.wit",
    "updraft-sdk/wit/deps/io/io.wit" => "wit/deps/io/io.wit",
];

const HTTP_RUST: &[File] = embed![
    "Cargo.toml" => "templates/http-rust/Cargo.toml.tmpl",
    "updraft.toml" => "templates/http-rust/updraft.toml.tmpl",
    "src/main.rs" => "templates/http-rust/src/main.rs",
    "rust-toolchain.toml" => "templates/http-rust/rust-toolchain.toml",
    ".gitignore" => "templates/http-rust/gitignore.tmpl",
];

const EVENT_RUST: &[File] = embed![
    "Cargo.toml" => "templates/event-rust/Cargo.toml.tmpl",
    "updraft.toml" => "templates/event-rust/updraft.toml.tmpl",
    "src/main.rs" => "templates/event-rust/src/main.rs",
    "rust-toolchain.toml" => "templates/event-rust/rust-toolchain.toml",
    ".gitignore" => "templates/event-rust/gitignore.tmpl",
];

/// The templates: name, what it makes, its files.
pub const TEMPLATES: &[(&str, &str, &[&[File]])] = &[
    (
        "http-rust",
        "an HTTP function in Rust (wstd + updraft-sdk) with a kv counter",
        &[HTTP_RUST, SDK],
    ),
    (
        "event-rust",
        "an event function in Rust (updraft-sdk) run by a topic, a queue and a cron schedule",
        &[EVENT_RUST, SDK],
    ),
];

/// Writes template `template` as a new project `name` in `parent/name`; returns its folder.
pub fn create(template: &str, name: &str, parent: &Path) -> anyhow::Result<std::path::PathBuf> {
    let Some((_, _, parts)) = TEMPLATES.iter().find(|(t, _, _)| *t == template) else {
        let known: Vec<String> = TEMPLATES
            .iter()
            .map(|(t, about, _)| format!("`{t}` ({about})"))
            .collect();
        anyhow::bail!(
            "there is no template `{template}`; choose one of: {}",
            known.join(", ")
        );
    };
    if !updraft_manifest::is_id(name) {
        anyhow::bail!(
            "`{name}` is not a valid project name; use lowercase letters, digits and `-`, starting with a letter"
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        anyhow::bail!(
            "`{}` already exists; choose another name or remove it",
            dir.display()
        );
    }
    for (path, contents) in parts.iter().flat_map(|p| p.iter()) {
        let dest = dir.join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::fs::write(&dest, contents.replace("%%name%%", name))
            .with_context(|| format!("cannot write `{}`", dest.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::SDK;

    fn files_under(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            if path.is_dir() {
                files_under(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    /// A module added to the SDK, or a WIT file, that templates do not vendor would make
    /// every new project fail to build; this catches it here.
    #[test]
    fn templates_vendor_every_sdk_source_and_wit_file() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut wanted = Vec::new();
        files_under(&repo, &repo.join("crates/updraft-sdk/src"), &mut wanted);
        files_under(&repo, &repo.join("wit"), &mut wanted);
        let vendored: Vec<String> = SDK
            .iter()
            .map(|(dest, _)| {
                let dest = dest.trim_start_matches("updraft-sdk/");
                if dest.starts_with("wit/") {
                    dest.to_owned()
                } else {
                    format!("crates/updraft-sdk/{dest}")
                }
            })
            .collect();
        let missing: Vec<_> = wanted.iter().filter(|f| !vendored.contains(f)).collect();
        assert!(
            missing.is_empty(),
            "add these to `SDK` in templates.rs: {missing:?}"
        );
    }
}
