//! The event function of `benches/files/run`. For each invocation it prints one line,
//! `seen <wall clock in µs> <subject> <subject> ...`, and returns `ok`. A file event's
//! subject is the object's name, which the benchmark chose and timed when it wrote the
//! file (the event id is a hash the benchmark cannot know in advance). updraft captures the
//! line as a log line of the invocation; the benchmark reads the lines back from the admin
//! API. It does nothing else, so the figures measure the file trigger and not the handler.

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
        // wasi:clocks/wall-clock, the host's CLOCK_REALTIME: the same clock the writer reads.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let mut line = format!("seen {now}");
        for e in &events {
            line.push(' ');
            line.push_str(e.subject.as_deref().unwrap_or("-"));
        }
        println!("{line}");
        Ok(())
    }
}

export!(Sink);

fn main() {}
