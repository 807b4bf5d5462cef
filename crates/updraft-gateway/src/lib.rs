//! The gateway: the one front door in front of every function.
//!
//! It owns the route table ([`router`]), the headers updraft sets for functions and strips
//! from clients ([`headers`]), what a request must be before a function sees it
//! ([`request`]), static SPA assets ([`static_files`]) and the JSON error
//! answers every route shares ([`body`]). The server crate feeds it routes from
//! `[[trigger.http]]` and serves requests through it.
//!
//! To add a gateway feature (auth, rate limits, a traffic split), add a module here with a
//! tower layer or a function over `http::Request`, and wire it in the server's request path.

pub mod body;
pub mod headers;
#[cfg(test)]
mod properties;
pub mod request;
pub mod router;
pub mod static_files;

pub use body::{Body, BoxError, error_response, full};
pub use router::{Lookup, Match, Pattern, Route, RouteError, Router};
pub use static_files::StaticSite;
