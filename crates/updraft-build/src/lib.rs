//! What `updraft` does to an app's local folder before anything runs: [`builder`] tells
//! which components are stale and runs their build commands (`updraft build`, and `up`
//! before it starts); [`templates`] writes new projects (`updraft new`) with the guest SDK
//! and the WIT embedded in the binary. Nothing here starts a node.
//!
//! To add a template: a folder under `templates/` and an entry in
//! [`templates::TEMPLATES`].

pub mod builder;
pub mod templates;
