//! The event function of `benches/events/run`. For each invocation it prints one line,
//! `seen <wall clock in µs> <event id> <event id> ...`, and returns `ok`. The line is
//! captured by updraft as a log line of the invocation; the benchmark reads the lines back
//! from the admin API and pairs each event id with the time its enqueue/publish was sent.
//! It does nothing else, so the figures measure the queue/topic path and not the handler.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "updraft:platform/event-function",
    generate_all,
});

use exports::updraft::platform::event_handler::Guest;
use updraft::platform::types::{Event, HandlerError};

struct Sink;

impl Guest for Sink {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        // wasi:clocks/wall-clock, the host's CLOCK_REALTIME: the same clock the client reads.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let mut line = format!("seen {now}");
        for e in &events {
            line.push(' ');
            line.push_str(&e.id);
        }
        println!("{line}");
        Ok(())
    }
}

export!(Sink);

fn main() {}
