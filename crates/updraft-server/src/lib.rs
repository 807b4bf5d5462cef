//! Composes a node: the gateway's route table in front of the runtime's functions, the
//! reserved `/_updraft/` endpoints, metrics, and the graceful drain.
//!
//! The CLI calls [`load_app`], [`Variables::resolve`], [`AppPlan::new`] and
//! [`node::start`];
//! nothing here parses command lines or prints for humans.
//!
//! Triggers are not here: each kind is a folder of `updraft-triggers` and a line in its
//! registry; the node starts them all with its stop signal ([`updraft_triggers::AppTriggers`]).

mod admin;
pub mod admin_token;
pub mod api;
pub mod app;
pub mod backends;
mod body_limit;
mod edge;
pub mod metrics;
pub mod node;
pub mod recorder;
mod state;
pub mod stores;
pub mod up;
pub mod variables;

pub use app::{AppPlan, load_app};
pub use node::{LoadReport, NodeOptions, RunningNode, TlsFiles, start};
pub use stores::AppStores;
pub use updraft_triggers::{AppTriggers, RouteTarget};
pub use variables::Variables;
