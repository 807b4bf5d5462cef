//! Write updraft functions in Rust.
//!
//! HTTP functions are plain `wasi:http` components built with [`wstd`]; this crate adds what
//! updraft provides on top, so a handler is a few lines:
//!
//! ```ignore
//! use updraft_sdk::{http, kv};
//! use wstd::http::{Body, Error, Request, Response};
//!
//! #[wstd::http_server]
//! async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
//!     let visits = kv::Store::open("default")?.increment("visits", 1)?;
//!     http::json(&serde_json::json!({ "visits": visits }))
//! }
//! ```
//!
//! * [`kv`]: the stores listed in the function's `kv = [...]`.
//! * [`sql`]: the databases listed in its `sql = [...]`.
//! * [`blob`]: the buckets listed in its `buckets = [...]`, objects streamed both ways.
//! * [`csv`]: CSV files into tables: typed columns, every bad row reported, all-or-nothing
//!   loads with upsert, quarantine for bad files.
//! * [`variables`]: its `[function.<id>.variables]`.
//! * [`http`]: responses and the `updraft-*` request headers.
//! * [`event`]: event functions (queue, topic and cron triggers) with
//!   [`export_event_handler!`], and events to send.
//! * [`messaging`]: publish to topics, enqueue to queues, append to streams.
//! * [`window`]: tumbling and sliding windows per key over a stream, state in kv, closed by
//!   event time with an allowed lateness or by the stream's idle tick.
//!
//! Build with `cargo build --release --target wasm32-wasip2`.

pub mod blob;
pub mod csv;
pub mod event;
pub mod http;
pub mod kv;
pub mod messaging;
pub mod sql;
pub mod variables;
pub mod window;

/// The raw bindings generated from updraft's WIT, for what the wrappers do not cover.
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "updraft:platform/imports",
        // `wasi:io` is `wasip2`'s (what `wstd` uses), so blob streams work with both.
        with: {
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
        },
        generate_all,
    });
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

/// An error from an updraft binding, with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
