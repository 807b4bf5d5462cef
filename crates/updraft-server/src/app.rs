//! From a validated manifest to what a node runs: function specs with their variables
//! filled in, and the route table.

use std::path::PathBuf;
use std::sync::Arc;

use http::Method;
use updraft_gateway::{Pattern, Route, Router};
use updraft_manifest::{LoadedManifest, ManifestError};
use updraft_runtime::FunctionSpec;

use crate::stores::AppStores;
use crate::variables::Variables;

/// What serves a route.
#[derive(Debug, Clone)]
pub enum RouteTarget {
    /// A function, by id.
    Function(String),
    /// A folder of static files.
    Static(PathBuf),
}

/// An app ready to start.
#[derive(Debug, Clone)]
pub struct AppPlan {
    /// The manifest it came from.
    pub manifest: LoadedManifest,
    /// Every function, in id order.
    pub functions: Vec<FunctionSpec>,
    /// The route table.
    pub router: Router<RouteTarget>,
}

impl AppPlan {
    /// Resolves variables, hands each function its stores, and builds the route table.
    pub fn new(
        manifest: LoadedManifest,
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
                    allowed_outbound_hosts: f.allowed_outbound_hosts.clone(),
                    variables: vars,
                    resources: Arc::new(stores.resources_for(f)),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let router = build_router(&manifest).map_err(|e| e.in_file(&manifest.path))?;
        Ok(Self {
            manifest,
            functions,
            router,
        })
    }
}

fn build_router(manifest: &LoadedManifest) -> Result<Router<RouteTarget>, ManifestError> {
    let mut router = Router::default();
    for (i, trigger) in manifest.manifest.trigger.http.iter().enumerate() {
        let key = format!("trigger.http[{i}].route");
        let pattern = Pattern::parse(&trigger.route)
            .map_err(|e| ManifestError::invalid(&key, e.to_string()))?;
        let (target, default_methods) = match (&trigger.function, &trigger.static_dir) {
            (Some(f), _) => (RouteTarget::Function(f.clone()), None),
            (None, Some(dir)) => (
                RouteTarget::Static(manifest.resolve(dir)),
                Some(vec![Method::GET, Method::HEAD]),
            ),
            (None, None) => {
                return Err(ManifestError::invalid(
                    format!("trigger.http[{i}]"),
                    "the route has neither `function` nor `static`; add `function = \"<id>\"`",
                ));
            }
        };
        let methods = match &trigger.methods {
            Some(list) => Some(
                list.iter()
                    .map(|m| {
                        Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                            ManifestError::invalid(
                                format!("trigger.http[{i}].methods"),
                                format!("`{m}` is not an HTTP method"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => default_methods,
        };
        router
            .add(Route {
                pattern,
                methods,
                target,
                index: i,
            })
            .map_err(|e| ManifestError::invalid(&key, e.to_string()))?;
    }
    Ok(router)
}
