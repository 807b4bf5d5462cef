//! The gateway: the one front door in front of every function.
//!
//! It owns the route table ([`router`]), the headers updraft sets for functions and strips
//! from clients ([`headers`]), what a request must be before a function sees it
//! ([`request`]), static SPA assets ([`static_files`]) and the JSON error
//! answers every route shares ([`body`]). The server crate feeds it routes from
//! `[[trigger.http]]` and serves requests through it.
//!
//! `[[gateway.route]]` adds policies in front of a route's targets ([`policy`]): CORS, auth
//! (API keys, JWT), rate limits, a timeout and path rewriting, as tower layers stacked in
//! one place ([`policy::stack`]), and targets chosen by weight ([`policy::split`]),
//! including upstream HTTP services ([`policy::upstream`]).
//!
//! Every user request also gets a request id and W3C trace context, and may be written to
//! the access log ([`trace`]).
//!
//! To add a per-route step (auth, validation): write its layer in a module of [`policy`]
//! and add one line to [`policy::stack`]. Host and header routing live in the router alone.

pub mod body;
pub mod headers;
pub mod policy;
#[cfg(test)]
mod properties;
pub mod request;
pub mod router;
pub mod static_files;
pub mod trace;

pub use body::{Body, BoxError, error_response, full};
pub use router::{HostPattern, Lookup, Match, Pattern, RequestView, Route, RouteError, Router};
pub use static_files::StaticSite;
