//! The `updraft` command line: argument parsing and human output only. Every command's
//! work is done by the library crates (`updraft-server`, `updraft-manifest`).
//!
//! To add a command: a module in `commands/`, a variant in [`Command`], one match arm.

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the request path allocates and frees many small
/// objects across tokio's worker threads, where glibc spent ~10% of a forwarding profile
/// (`_int_malloc`, `malloc_consolidate`, `_int_free`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stops glibc from handing freed heap back to the kernel after every few frees. Rust code
/// allocates with mimalloc, but SQLite (every state write) allocates with the C library,
/// whose default trims the heap as soon as 128 KiB at its top are free: the writer thread
/// then page-faults the same memory back in for the next transaction. With 10 topic
/// subscriptions at 1,000 events/s that trimming and refaulting was most of the writer's
/// time; keeping up to 256 MiB halved publish -> handler p50 (4.1 -> 2.2 ms) and cut updraft's
/// CPU by a tenth. Set before any thread starts, as glibc requires.
fn keep_freed_c_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator parameter; it runs before any other thread
    // exists, so nothing allocates concurrently.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// updraft: a self-hosted serverless platform for WebAssembly components.
#[derive(Debug, Parser)]
#[command(
    name = "updraft",
    version,
    about,
    propagate_version = true,
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new project from a template (`http-rust` or `event-rust`).
    New(commands::new::NewArgs),
    /// Build every function that has a `[function.<id>.build]` command.
    Build(commands::build::BuildArgs),
    /// Build what is stale, then serve the app on localhost.
    Up(commands::up::UpArgs),
    /// List the functions of a running updraft, their routes and cron triggers.
    Ls(commands::ls::LsArgs),
    /// Invoke a function of a running updraft with a body.
    Invoke(commands::invoke::InvokeArgs),
    /// Print what functions logged (`-f` to follow).
    Logs(commands::logs::LogsArgs),
    /// Publish events to a topic, or replay a topic into a subscription.
    Events(commands::events::EventsArgs),
    /// Dead letters: list queues, show and redrive their dead letters.
    Dlq(commands::dlq::DlqArgs),
    /// Objects of the app's buckets: put, get, ls, rm.
    Blob(commands::blob::BlobArgs),
    /// API keys for gateway routes with `auth`: create, ls, revoke.
    Keys(commands::keys::KeysArgs),
    /// Streams: each consumer's lag per partition, dead letters, replay.
    Streams(commands::streams::StreamsArgs),
    /// Simulate devices sending readings over MQTT or to an ingest route.
    Simulate(commands::simulate::SimulateArgs),
}

fn main() -> ExitCode {
    keep_freed_c_heap();
    let cli = Cli::parse();
    output::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            return output::fail(
                &anyhow::Error::new(err).context("cannot start the async runtime"),
            );
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::New(args) => commands::new::run(args),
            Command::Build(args) => commands::build::run(args).await,
            Command::Up(args) => commands::up::run(args).await,
            Command::Ls(args) => commands::ls::run(args).await,
            Command::Invoke(args) => commands::invoke::run(args).await,
            Command::Logs(args) => commands::logs::run(args).await,
            Command::Events(args) => commands::events::run(args).await,
            Command::Dlq(args) => commands::dlq::run(args).await,
            Command::Blob(args) => commands::blob::run(args).await,
            Command::Keys(args) => commands::keys::run(args).await,
            Command::Streams(args) => commands::streams::run(args).await,
            Command::Simulate(args) => commands::simulate::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => output::fail(&err),
    }
}
