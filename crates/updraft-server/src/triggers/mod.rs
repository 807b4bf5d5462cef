//! Triggers other than HTTP: each runs as tasks beside the listener, calls event functions
//! through the runtime, and stops leasing work when the node drains.
//!
//! To add a trigger: a module here with a `spawn` taking its plan, the function, its store
//! and the node's stop signal; plan it in `node::start`.

pub mod asyncjobs;
pub mod cron;
pub mod queue;
