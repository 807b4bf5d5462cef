//! From a validated manifest to what a node runs: function specs with their variables
//! filled in, the app's triggers and its route table.

use std::path::Path;
use std::sync::Arc;

use updraft_gateway::Router;
use updraft_manifest::{LoadedManifest, Manifest, ManifestError};
use updraft_runtime::FunctionSpec;
use updraft_triggers::{AppTriggers, RouteSpec};

use crate::stores::AppStores;
use crate::variables::Variables;

/// Reads the manifest in `dir_or_file` and parses its triggers through the registry; errors
/// name the file and the key.
pub fn load_app(dir_or_file: &Path) -> Result<(LoadedManifest, AppTriggers), ManifestError> {
    let manifest = Manifest::load(dir_or_file)?;
    let triggers = AppTriggers::parse(&manifest)?;
    Ok((manifest, triggers))
}

/// An app ready to start.
#[derive(Debug, Clone)]
pub struct AppPlan {
    /// The manifest it came from.
    pub manifest: LoadedManifest,
    /// Every function, in id order.
    pub functions: Vec<FunctionSpec>,
    /// Every trigger, parsed and checked.
    pub triggers: AppTriggers,
    /// The route table.
    pub router: Router<RouteSpec>,
}

impl AppPlan {
    /// Resolves variables and hands each function its stores.
    pub fn new(
        manifest: LoadedManifest,
        triggers: AppTriggers,
        variables: &Variables,
        stores: &AppStores,
    ) -> anyhow::Result<Self> {
        let functions = manifest
            .manifest
            .function
            .iter()
            .map(|(id, f)| {
                let mut vars = Vec::new();
                for (name, template) in &f.variables {
                    let value = template.render(|v| variables.get(v)).map_err(|e| {
                        anyhow::anyhow!(
                            "function `{id}` variable `{name}`: {e}; give it a value with `{}` or a `default`",
                            crate::variables::env_name(template.variables().next().unwrap_or(name))
                        )
                    })?;
                    vars.push((name.clone(), value));
                }
                Ok(FunctionSpec {
                    id: id.clone(),
                    source: manifest.resolve(&f.source),
                    timeout: f.timeout.map(|t| t.0),
                    memory: f.memory_bytes(),
                    max_concurrency: f.concurrency(),
                    reuse: f.reuse(),
                    allowed_outbound_hosts: f.allowed_outbound_hosts.clone(),
                    variables: vars,
                    resources: Arc::new(stores.resources_for(id, f)),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            manifest,
            functions,
            router: triggers.declarations.router.clone(),
            triggers,
        })
    }
}
