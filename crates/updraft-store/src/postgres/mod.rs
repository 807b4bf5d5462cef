//! `[sql.<label>] type = "postgres"`: a user database on a PostgreSQL server, so the same
//! functions and manifest that use a SQLite file on a laptop use a shared server in
//! production (DESIGN §9 "sql").
//!
//! One pool of connections per database (`deadpool-postgres`). Each call takes a
//! connection for itself; a call dropped before it finishes (the runtime drops a host call
//! at its invocation's deadline) takes its connection out of the pool and sends the server
//! a cancel request, so a runaway statement stops and no connection goes back mid-statement
//! or inside a transaction. `statement_timeout` on every connection is the backstop.
//! Statements are prepared (the extended protocol: one statement per call), values and
//! parameters converted as [`convert`] says, results capped like SQLite's.

mod convert;
mod sql;
mod tls;

pub use sql::{POOL_WAIT, PostgresOptions, PostgresSql};
