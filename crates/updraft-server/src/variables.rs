//! App variables: values from `UPDRAFT_VAR_<NAME>` in the environment, then `.env` beside
//! the manifest, then the declared default. Secret values are never logged or shown.

use std::collections::BTreeMap;

use updraft_manifest::LoadedManifest;

/// The environment variable that sets app variable `name`.
pub fn env_name(name: &str) -> String {
    format!("UPDRAFT_VAR_{}", name.to_ascii_uppercase())
}

/// Resolved app variable values.
#[derive(Clone, Default)]
pub struct Variables {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Variables {
    // Values may be secrets: only names are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Variables {
    /// The value of `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// Resolves every declared variable, reading the process environment and `.env`.
    pub fn resolve(manifest: &LoadedManifest) -> anyhow::Result<Self> {
        let dotenv = read_dotenv(manifest)?;
        Self::resolve_with(manifest, |key| {
            std::env::var(key).ok().or_else(|| dotenv.get(key).cloned())
        })
    }

    /// Resolves with an explicit lookup of `UPDRAFT_VAR_*` keys.
    pub fn resolve_with(
        manifest: &LoadedManifest,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        for (name, decl) in &manifest.manifest.variables {
            let key = env_name(name);
            match lookup(&key).or_else(|| decl.default.clone()) {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None if decl.required => anyhow::bail!(
                    "app variable `{name}` is required but has no value; set `{key}` in the environment or in `{}`",
                    manifest.dir.join(".env").display()
                ),
                None => {}
            }
        }
        Ok(Self { values })
    }
}

fn read_dotenv(manifest: &LoadedManifest) -> anyhow::Result<BTreeMap<String, String>> {
    let path = manifest.dir.join(".env");
    let mut out = BTreeMap::new();
    if !path.is_file() {
        return Ok(out);
    }
    let items = dotenvy::from_path_iter(&path)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
    for item in items {
        // The parser's own message quotes the whole line, which may hold a secret.
        let (k, v) = item.map_err(|e| match e {
            dotenvy::Error::LineParse(_, at) => anyhow::anyhow!(
                "`{}` has a line that is not `NAME=value` (at byte {at}); fix its quoting",
                path.display()
            ),
            other => anyhow::anyhow!("cannot read `{}`: {other}", path.display()),
        })?;
        out.insert(k, v);
    }
    Ok(out)
}
