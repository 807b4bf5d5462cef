//! Compile once: components are precompiled to native code and cached on disk, keyed by
//! their bytes and the engine's compatibility hash, so loading an unchanged component never
//! runs Cranelift again.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Compiled now (and written to the cache), taking `ms` milliseconds.
    Compiled {
        /// Compile time.
        ms: u64,
    },
    /// Deserialised from the cache, taking `ms` milliseconds.
    Cached {
        /// Load time.
        ms: u64,
    },
}

/// The on-disk cache of precompiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Version and layer words of a component binary (`0d 00 01 00`).
const COMPONENT_LAYER: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

impl ComponentCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Reads the component file at `path` for `function`.
    pub fn read(function: &str, path: &Path) -> Result<Vec<u8>, LoadError> {
        std::fs::read(path).map_err(|source| LoadError::Missing {
            function: function.to_owned(),
            path: path.to_path_buf(),
            source,
        })
    }

    /// Loads the component read from `path` ([`ComponentCache::read`]), from the cache
    /// when it is there.
    pub fn load(
        &self,
        engine: &Engine,
        function: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome), LoadError> {
        let started = Instant::now();
        check_is_component(function, path, bytes)?;
        let entry = self.dir.join(format!("{}.cwasm", cache_key(engine, bytes)));
        if entry.is_file() {
            // SAFETY: the file was written by `precompile_component` of an engine with the
            // same compatibility hash (it is in the file name) into updraft's own cache
            // folder; wasmtime also re-checks the header before using it.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => {
                    let ms = millis(started);
                    return Ok((component, CacheOutcome::Cached { ms }));
                }
                Err(err) => {
                    tracing::warn!(
                        "ignoring unusable cache entry `{}`: {err:#}",
                        entry.display()
                    );
                }
            }
        }
        let invalid = |err: wasmtime::Error| LoadError::Invalid {
            function: function.to_owned(),
            path: path.to_path_buf(),
            message: format!("{err:#}"),
        };
        let compiled = engine.precompile_component(bytes).map_err(invalid)?;
        if let Err(err) = write_atomically(&self.dir, &entry, &compiled) {
            tracing::warn!(
                "cannot write the compile cache `{}` ({err}); the next start compiles again",
                entry.display()
            );
        }
        // SAFETY: `compiled` was produced just now by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled) }.map_err(invalid)?;
        Ok((
            component,
            CacheOutcome::Compiled {
                ms: millis(started),
            },
        ))
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn check_is_component(function: &str, path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(LoadError::NotWasm {
            function: function.to_owned(),
            path: path.to_path_buf(),
        });
    }
    if bytes[4..8] != COMPONENT_LAYER {
        return Err(LoadError::NotComponent {
            function: function.to_owned(),
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// sha256 of the component, plus the engine's compatibility hash (wasmtime version,
/// compiler settings, target).
fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}", engine_hash.finish())
}

fn write_atomically(dir: &Path, entry: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, entry)
}
