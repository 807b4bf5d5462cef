//! `[[trigger.http]]`: a route of the gateway, served by a function or by static files.
//!
//! It declares its route in the app's route table; the node's listener serves it.
//! `[[gateway.route]]`, its long form with a host, header matches, policies and weighted
//! targets, goes on the same table ([`declare_gateway_routes`]), so one precedence rule and
//! one collision check cover both.

use std::sync::Arc;

use std::path::{Path, PathBuf};

use http::{HeaderName, Method};
use serde::Deserialize;
use updraft_gateway::{HostPattern, Pattern, Route};
use updraft_manifest::gateway::{GatewayRoute, TargetDecl};
use updraft_manifest::{LoadedManifest, MANIFEST_FILE, METHODS, ManifestError, unknown_function};

use crate::{At, Declarations, InfoContext, StartContext, Trigger, TriggerInfo};

/// One `[[trigger.http]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `/literal/:param/...`
    pub route: String,
    /// Methods this route answers; all when absent.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// The function that answers.
    #[serde(default)]
    pub function: Option<String>,
    /// A folder of static files (an SPA); unknown paths fall back to `index.html`.
    #[serde(default, rename = "static")]
    pub static_dir: Option<PathBuf>,
}

/// What serves a route.
#[derive(Debug, Clone)]
pub enum RouteTarget {
    /// A function, by id.
    Function(String),
    /// A folder of static files.
    Static(PathBuf),
    /// An upstream HTTP service: a URL or a `[gateway.upstream.<label>]`.
    Upstream(String),
    /// The app's `[dashboard]` page (`[dashboard] route`).
    Dashboard,
    /// An `[[ingest.http]]` route: its events go into `stream`; a JSON line that is not a
    /// CloudEvent gets type `ty`.
    Ingest {
        /// The `[stream.<name>]`.
        stream: String,
        /// The type of wrapped JSON lines.
        ty: String,
    },
}

/// A route's targets with their weights, and the `[[gateway.route]]` it came from.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// At least one; a single target has weight 1.
    pub targets: Vec<(RouteTarget, u32)>,
    /// The long form's table (policies, name, sticky); `None` for `[[trigger.http]]`.
    pub gateway: Option<Arc<GatewayRoute>>,
}

impl RouteSpec {
    /// A route served by one target without policies.
    pub fn single(target: RouteTarget) -> Self {
        Self {
            targets: vec![(target, 1)],
            gateway: None,
        }
    }

    /// The function of a single-function route.
    pub fn function(&self) -> Option<&str> {
        match self.targets.as_slice() {
            [(RouteTarget::Function(f), _)] => Some(f),
            _ => None,
        }
    }
}

/// `[[gateway.route]]`: each on the app's route table, after the manifest has checked its
/// names; a target folder is resolved against the app and checked like `static`.
pub(crate) fn declare_gateway_routes(
    app: &LoadedManifest,
    declarations: &mut Declarations,
) -> Result<(), ManifestError> {
    for (i, route) in app.manifest.gateway.route.iter().enumerate() {
        let key = |k: &str| format!("gateway.route[{i}].{k}");
        let pattern = Pattern::parse(&route.route)
            .map_err(|e| ManifestError::invalid(key("route"), e.to_string()))?;
        let targets = route
            .weighted_targets()
            .into_iter()
            .map(|(t, weight)| {
                let target = match t {
                    TargetDecl::Function(f) => RouteTarget::Function(f),
                    TargetDecl::Upstream(u) => RouteTarget::Upstream(u),
                    TargetDecl::Static(dir) => {
                        let dir = app.resolve(&dir);
                        check_static_dir(app, &dir, &key("static"))?;
                        RouteTarget::Static(dir)
                    }
                };
                Ok((target, weight))
            })
            .collect::<Result<Vec<_>, ManifestError>>()?;
        let all_static = targets
            .iter()
            .all(|(t, _)| matches!(t, RouteTarget::Static(_)));
        let methods = match &route.methods {
            Some(list) => Some(methods(list, &key("methods"))?),
            None if all_static => Some(vec![Method::GET, Method::HEAD]),
            None => None,
        };
        let host = route
            .host
            .as_deref()
            .map(HostPattern::parse)
            .transpose()
            .map_err(|e| ManifestError::invalid(key("host"), e.to_string()))?;
        let headers = route
            .headers
            .iter()
            .map(|(name, value)| {
                let name =
                    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                        ManifestError::invalid(
                            key("headers"),
                            format!("`{name}` is not a header name"),
                        )
                    })?;
                Ok((name, value.clone()))
            })
            .collect::<Result<Vec<_>, ManifestError>>()?;
        let spec = RouteSpec {
            targets,
            gateway: Some(Arc::new(route.clone())),
        };
        declarations
            .router
            .add(
                Route::new(pattern, methods, spec, i)
                    .with_host(host)
                    .with_headers(headers),
            )
            .map_err(|e| ManifestError::invalid(key("route"), e.to_string()))?;
    }
    Ok(())
}

/// `[dashboard] route`: the app's dashboard on a user route (GET and HEAD), on the same
/// table as the HTTP triggers, so a collision is named like theirs.
pub(crate) fn declare_dashboard_route(
    app: &LoadedManifest,
    declarations: &mut Declarations,
) -> Result<(), ManifestError> {
    let Some(route) = &app.manifest.dashboard.route else {
        return Ok(());
    };
    let pattern = Pattern::parse(route)
        .map_err(|e| ManifestError::invalid("dashboard.route", e.to_string()))?;
    declarations
        .router
        .add(Route::new(
            pattern,
            Some(vec![Method::GET, Method::HEAD]),
            RouteSpec::single(RouteTarget::Dashboard),
            usize::MAX,
        ))
        .map_err(|e| ManifestError::invalid("dashboard.route", e.to_string()))
}

/// `[[ingest.http]]`: a `POST` route per entry, on the same table as every other route, with
/// the named `[gateway.auth.<label>]`s in front.
pub(crate) fn declare_ingest_routes(
    app: &LoadedManifest,
    declarations: &mut Declarations,
) -> Result<(), ManifestError> {
    for (i, ingest) in app.manifest.ingest.http.iter().enumerate() {
        let key = format!("ingest.http[{i}].route");
        let pattern = Pattern::parse(&ingest.route)
            .map_err(|e| ManifestError::invalid(key.clone(), e.to_string()))?;
        let target = RouteTarget::Ingest {
            stream: ingest.stream.clone(),
            ty: ingest
                .ty
                .clone()
                .unwrap_or_else(|| "updraft.ingest".to_owned()),
        };
        // Auth is the gateway's: a route of the long form that names it.
        let gateway = (!ingest.auth.is_empty()).then(|| {
            Arc::new(GatewayRoute {
                name: Some(format!("ingest:{}", ingest.route)),
                route: ingest.route.clone(),
                methods: Some(vec!["POST".to_owned()]),
                auth: ingest.auth.clone(),
                ..GatewayRoute::default()
            })
        });
        let spec = RouteSpec {
            targets: vec![(target, 1)],
            gateway,
        };
        declarations
            .router
            .add(Route::new(pattern, Some(vec![Method::POST]), spec, i))
            .map_err(|e| ManifestError::invalid(key, e.to_string()))?;
    }
    Ok(())
}

/// A checked HTTP route.
pub struct Http {
    pattern: Pattern,
    methods: Option<Vec<Method>>,
    target: RouteTarget,
}

impl Trigger for Http {
    const KIND: &'static str = "http";
    type Config = HttpConfig;

    fn new(config: HttpConfig, app: &LoadedManifest, at: At) -> Result<Self, ManifestError> {
        let (target, default_methods) = match (&config.function, &config.static_dir) {
            (Some(_), Some(_)) => {
                return Err(at.invalid(
                    "static",
                    "a route is served by a `function` or by `static` files, not both; split it into two routes",
                ));
            }
            (None, None) => {
                return Err(ManifestError::invalid(
                    at.table(),
                    "the route has neither `function` nor `static`; add `function = \"<id>\"`",
                ));
            }
            (Some(f), None) if !app.manifest.function.contains_key(f) => {
                return Err(unknown_function(&app.manifest, at.key("function"), f));
            }
            (Some(f), None) => (RouteTarget::Function(f.clone()), None),
            (None, Some(dir)) => {
                let dir = app.resolve(dir);
                check_static_dir(app, &dir, &at.key("static"))?;
                (
                    RouteTarget::Static(dir),
                    Some(vec![Method::GET, Method::HEAD]),
                )
            }
        };
        let methods = match &config.methods {
            Some(list) => Some(methods(list, &at.key("methods"))?),
            None => default_methods,
        };
        let pattern = Pattern::parse(&config.route)
            .map_err(|e| ManifestError::invalid(at.key("route"), e.to_string()))?;
        Ok(Self {
            pattern,
            methods,
            target,
        })
    }

    fn function(&self) -> Option<&str> {
        match &self.target {
            RouteTarget::Function(f) => Some(f),
            RouteTarget::Static(_)
            | RouteTarget::Upstream(_)
            | RouteTarget::Dashboard
            | RouteTarget::Ingest { .. } => None,
        }
    }

    fn declare(&self, at: At, app: &mut Declarations) -> Result<(), ManifestError> {
        app.router
            .add(Route::new(
                self.pattern.clone(),
                self.methods.clone(),
                RouteSpec::single(self.target.clone()),
                at.index,
            ))
            .map_err(|e| ManifestError::invalid(at.key("route"), e.to_string()))
    }

    fn start(&self, _at: At, _node: &mut StartContext<'_>) -> anyhow::Result<()> {
        // The node's listener serves the route table.
        Ok(())
    }

    fn describe(&self) -> Option<String> {
        None // `up` prints the routes with the address they are served on
    }

    async fn info(&self, _node: &InfoContext<'_>) -> anyhow::Result<TriggerInfo> {
        let methods = self.methods.as_ref().map_or_else(
            || vec!["*".to_owned()],
            |m| m.iter().map(|m| m.as_str().to_owned()).collect(),
        );
        Ok(TriggerInfo {
            kind: Self::KIND.to_owned(),
            summary: format!("{} {}", methods.join(","), self.pattern.as_str()),
            details: serde_json::json!({ "route": self.pattern.as_str(), "methods": methods }),
        })
    }
}

/// A static folder must not hold the app itself: its manifest, its `.env` and its state
/// (`.updraft/`: the database, the admin token) would be a request away.
fn check_static_dir(app: &LoadedManifest, dir: &Path, key: &str) -> Result<(), ManifestError> {
    let (Ok(served), Ok(app_dir)) = (std::fs::canonicalize(dir), std::fs::canonicalize(&app.dir))
    else {
        return Ok(()); // a missing folder is reported when the route is served
    };
    if app_dir.starts_with(&served)
        || served.join(MANIFEST_FILE).exists()
        || served.join(".updraft").exists()
    {
        return Err(ManifestError::invalid(
            key,
            format!(
                "static folder `{}` holds the app itself (`{MANIFEST_FILE}`, `.env`, the state in `.updraft/`); serve a folder of public files only, such as \"web/dist\"",
                dir.display()
            ),
        ));
    }
    Ok(())
}

fn methods(list: &[String], key: &str) -> Result<Vec<Method>, ManifestError> {
    if list.is_empty() {
        return Err(ManifestError::invalid(
            key,
            "an empty list matches nothing; list methods like [\"GET\"] or drop the key to allow all",
        ));
    }
    list.iter()
        .map(|m| {
            let upper = m.to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return Err(ManifestError::invalid(
                    key,
                    format!(
                        "`{m}` is not an HTTP method; use one of {}",
                        METHODS.join(", ")
                    ),
                ));
            }
            Method::from_bytes(upper.as_bytes())
                .map_err(|_| ManifestError::invalid(key, format!("`{m}` is not an HTTP method")))
        })
        .collect()
}
