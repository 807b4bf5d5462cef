//! `updraft build`: runs each function's build command, and tells which components are stale.
//!
//! A component is stale when its `source` file is missing, or when a file its build watches
//! (the `watch` globs, or by default every file under the build's `workdir` except build
//! output and hidden folders) is newer than it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use globset::{Glob, GlobSetBuilder};
use updraft_manifest::LoadedManifest;

/// One function's build.
#[derive(Debug, Clone)]
pub struct BuildStep {
    /// The function id.
    pub function: String,
    /// The shell command.
    pub command: String,
    /// Where it runs.
    pub workdir: PathBuf,
    /// The component it should produce.
    pub source: PathBuf,
    /// Why it must run (`None` when the component is up to date).
    pub stale: Option<String>,
    watch: Vec<String>,
}

/// Folders never scanned for changes.
const SKIP_DIRS: &[&str] = &["target", "node_modules", "dist", "__pycache__"];

/// Every function that has a `[build]`, with whether it is stale.
pub fn build_steps(manifest: &LoadedManifest) -> anyhow::Result<Vec<BuildStep>> {
    let mut steps = Vec::new();
    for (id, f) in &manifest.manifest.function {
        let Some(build) = &f.build else { continue };
        let workdir = manifest.resolve(build.workdir.as_deref().unwrap_or(Path::new(".")));
        let mut step = BuildStep {
            function: id.clone(),
            command: build.command.clone(),
            workdir,
            source: manifest.resolve(&f.source),
            stale: None,
            watch: build.watch.clone(),
        };
        step.stale = staleness(&step)
            .with_context(|| format!("checking whether function `{id}` needs a build"))?;
        steps.push(step);
    }
    Ok(steps)
}

fn staleness(step: &BuildStep) -> anyhow::Result<Option<String>> {
    let built = match std::fs::metadata(&step.source).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(_) => return Ok(Some(format!("`{}` does not exist", step.source.display()))),
    };
    let newer = if step.watch.is_empty() {
        newest_default(&step.workdir, built)
    } else {
        newest_watched(&step.workdir, &step.watch, built)?
    };
    Ok(newer.map(|p| format!("`{}` changed", p.display())))
}

fn newest_default(dir: &Path, built: SystemTime) -> Option<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0
                || !(name.starts_with('.')
                    || (e.file_type().is_dir() && SKIP_DIRS.contains(&name.as_ref())))
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .find(|e| is_newer(e.path(), built))
        .map(|e| e.path().to_path_buf())
}

fn newest_watched(
    dir: &Path,
    globs: &[String],
    built: SystemTime,
) -> anyhow::Result<Option<PathBuf>> {
    let mut set = GlobSetBuilder::new();
    for g in globs {
        set.add(
            Glob::new(g).with_context(|| format!("`{g}` in `build.watch` is not a valid glob"))?,
        );
    }
    let set = set.build()?;
    Ok(walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || e.file_name() != "target")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            e.path()
                .strip_prefix(dir)
                .is_ok_and(|rel| set.is_match(rel))
        })
        .find(|e| is_newer(e.path(), built))
        .map(|e| e.path().to_path_buf()))
}

fn is_newer(path: &Path, than: SystemTime) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t > than)
}

/// Runs one build, capturing its output. Fails with the output's tail when the command fails
/// or does not produce the component.
pub fn run(step: &BuildStep) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = Command::new("sh")
        .arg("-c")
        .arg(&step.command)
        .current_dir(&step.workdir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "function `{}`: cannot run build command `{}` in `{}`",
                step.function,
                step.command,
                step.workdir.display()
            )
        })?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        if let Some(target) = missing_target(&text) {
            anyhow::bail!(
                "function `{}`: the Rust target `{target}` is not installed for the toolchain that runs `{}`; run `rustup target add {target}` in `{}` and build again (rustc stopped at E0463: can't find crate for `std`)",
                step.function,
                step.command,
                step.workdir.display()
            );
        }
        anyhow::bail!(
            "function `{}`: build command `{}` failed ({}); its output ends with:\n{}",
            step.function,
            step.command,
            output.status,
            tail(&text, 40)
        );
    }
    if !step.source.is_file() {
        anyhow::bail!(
            "function `{}`: build command `{}` succeeded but `{}` does not exist; fix `source` to point at what the build produces",
            step.function,
            step.command,
            step.source.display()
        );
    }
    Ok(started.elapsed())
}

/// The compilation target rustc says is not installed (E0463 on `std` or `core`).
fn missing_target(output: &str) -> Option<&str> {
    if !output.contains("E0463") {
        return None;
    }
    output.lines().find_map(|line| {
        line.split_once("the `")
            .and_then(|(_, rest)| rest.split_once("` target may not be installed"))
            .map(|(target, _)| target)
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_target_is_found_in_rustc_output() {
        let output = "   Compiling itoa v1.0.15\nerror[E0463]: can't find crate for `std`\n  |\n  = note: the `wasm32-wasip2` target may not be installed\n  = help: consider downloading the target with `rustup target add wasm32-wasip2`\n";
        assert_eq!(super::missing_target(output), Some("wasm32-wasip2"));
        assert_eq!(
            super::missing_target("error[E0425]: cannot find value"),
            None
        );
    }
}
