//! Engine-limit anchors for `benches/events/run` (issue #11, item 7).
//!
//! What updraft's queues would do with nothing of updraft around them, run in the same
//! benchmark so that updraft's figures can be read as a fraction of each engine's:
//!
//! * `anchors sqlite --dir D`: a WAL database with `synchronous=FULL` holding updraft's
//!   queue table, written by one writer thread that commits up to 512 queued writes per
//!   transaction (updraft's `Db` writer); the same insert, lease (`UPDATE … WHERE seq IN
//!   (SELECT … ORDER BY available_us, seq LIMIT ?) RETURNING …`) and ack (`DELETE … WHERE
//!   id = ? AND lease_token = ?`) statements.
//! * `anchors nats --url U`: a work-queue JetStream stream (file storage) with one durable
//!   pull consumer (explicit ack), published to with pipelined publish acks and settled
//!   with double acks (`+ACK` sent as a request, answered by the server), as updraft does.
//!
//! Each runs three phases: (a) enqueue/publish `--messages` messages, (b) drain them (lease
//! or fetch up to 100, ack those), (c) a paced run at `--rate` for `--duration` seconds with
//! a consumer running, timing enqueue -> leased (SQLite) or publish -> received (NATS).
//! SQLite also drains a second backlog with each ack group and the next lease in one commit
//! (`drain_fused_rate`), nearer to how updraft's writer shares commits between handlers.
//! The result is one JSON object on one line on stdout; progress goes to stderr. Every loop
//! stops at `--limit` seconds from the start, whatever it has done by then.

mod nats;
mod sqlite;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Engine-limit anchors for benches/events")]
struct Cli {
    #[command(subcommand)]
    engine: Engine,
}

#[derive(Subcommand)]
enum Engine {
    /// Plain rusqlite queue loop on a WAL file with synchronous=FULL.
    Sqlite {
        /// Directory for the database (created; the file is left there).
        #[arg(long)]
        dir: std::path::PathBuf,
        /// How the paced run's consumer learns of new messages: `channel` (woken by the
        /// producer's commits, like updraft's local notify) or `poll` (sleeps 1 ms).
        #[arg(long, default_value = "channel", value_parser = ["channel", "poll"])]
        wake: String,
        #[command(flatten)]
        common: Common,
    },
    /// Plain async-nats work-queue loop against a running nats-server.
    Nats {
        /// The server, e.g. nats://127.0.0.1:4222.
        #[arg(long)]
        url: String,
        /// Most unacknowledged deliveries in the paced run (updraft's trigger default
        /// concurrency is 100).
        #[arg(long, default_value_t = 100)]
        inflight: usize,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Clone)]
pub struct Common {
    /// Messages enqueued, then drained.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Messages per second in the paced run.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of the paced run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes of each message's payload (SQLite: the data column, beside short CloudEvent
    /// attribute columns; NATS: the whole message body, where updraft keeps the attributes).
    #[arg(long, default_value_t = 150)]
    pub payload: usize,
    /// Seconds the whole run may take; every phase stops by then.
    #[arg(long, default_value_t = 600.0)]
    pub limit: f64,
}

impl Common {
    fn check(&self) -> Result<(), String> {
        if !(1..=1_000_000).contains(&self.messages)
            || !(1.0..=100_000.0).contains(&self.rate)
            || !(0.1..=600.0).contains(&self.duration)
            || !(16..=1_000_000).contains(&self.payload)
            || !(1.0..=3600.0).contains(&self.limit)
        {
            return Err(
                "--messages 1..1000000, --rate 1..100000, --duration 0.1..600, \
                        --payload 16..1000000, --limit 1..3600"
                    .into(),
            );
        }
        Ok(())
    }

    /// Messages the paced run sends.
    pub fn paced_count(&self) -> u64 {
        (self.rate * self.duration).round().max(1.0) as u64
    }
}

/// Wall-clock microseconds since 1970.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Nearest-rank percentile (as the Python script computes it); NaN for no values.
pub fn pct(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = (p / 100.0 * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// A JSON number, or null for NaN/infinite.
pub fn num(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

pub fn log(msg: impl std::fmt::Display) {
    eprintln!("[anchors] {msg}");
}

/// The time left before `deadline` (zero once it passed).
pub fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.engine {
        Engine::Sqlite { dir, wake, common } => common
            .check()
            .and_then(|()| sqlite::run(&dir, wake == "poll", &common)),
        Engine::Nats {
            url,
            inflight,
            common,
        } => common.check().and_then(|()| {
            if !(1..=100_000).contains(&inflight) {
                return Err("--inflight 1..100000".into());
            }
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start tokio: {e}"))
                .and_then(|rt| rt.block_on(nats::run(&url, inflight, &common)))
        }),
    };
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            log(format!("error: {e}"));
            std::process::exit(1);
        }
    }
}
