//! Composes a node: the gateway's route table in front of the runtime's functions, the
//! reserved `/_updraft/` endpoints, metrics, and the graceful drain.
//!
//! The CLI calls [`Variables::resolve`], [`AppPlan::new`], [`builder`] and [`node::start`];
//! nothing here parses command lines or prints for humans.
//!
//! To add a trigger kind: plan it in [`app`] from its manifest table, start it in
//! [`node::start`] next to the HTTP listener, and stop it in the drain.

mod admin;
pub mod admin_token;
pub mod api;
pub mod app;
mod body_limit;
pub mod builder;
pub mod cloudevents;
pub mod metrics;
pub mod node;
pub mod recorder;
pub mod stores;
pub mod templates;
pub mod triggers;
pub mod variables;

pub use app::{AppPlan, RouteTarget};
pub use node::{LoadReport, NodeOptions, RunningNode, start};
pub use stores::AppStores;
pub use variables::Variables;
