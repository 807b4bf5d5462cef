//! Composes a node: the gateway's route table in front of the runtime's functions, the
//! reserved `/_updraft/` endpoints, metrics, and the graceful drain.
//!
//! The CLI calls [`load_app`] and [`up::start`] (or [`Variables::resolve`],
//! [`AppPlan::new`] and [`node::start`] one by one); nothing here parses command lines or
//! prints for humans.
//!
//! Where to add things:
//! * a trigger kind: not here; a folder of `updraft-triggers` and a line in its registry;
//!   the node starts them all with its stop signal ([`updraft_triggers::AppTriggers`]);
//! * a state, sql or bucket backend: a type implementing [`backends::StateBackend`] or
//!   [`backends::LabelBackend`] and a line in [`backends::STATE_BACKENDS`] /
//!   [`backends::SQL_BACKENDS`] / [`backends::BUCKET_BACKENDS`];
//! * an admin endpoint: a handler in its resource's module under [`api`], a `.route` line
//!   in its router and its name in [`api::ApiDoc`].

mod admin;
pub mod admin_token;
pub mod api;
pub mod app;
pub mod backends;
mod body_limit;
mod dashboard;
mod edge;
mod ingest;
pub mod metrics;
pub mod node;
#[cfg(test)]
mod properties;
mod quotas;
pub mod recorder;
mod state;
pub mod stores;
pub mod up;
pub mod variables;

pub use app::{AppPlan, load_app};
pub use node::{LoadReport, NodeOptions, RunningNode, TlsFiles, start};
pub use stores::AppStores;
pub use updraft_triggers::{AppTriggers, RouteSpec, RouteTarget};
pub use variables::Variables;
