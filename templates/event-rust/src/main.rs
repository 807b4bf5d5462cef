//! An updraft event function: its topic, queue and cron triggers (see updraft.toml) call it
//! with batches of CloudEvents-shaped events. Returning an error retries the batch with
//! backoff; after `max_attempts` it goes to the dead letters (`updraft dlq ls`).
//!
//! `updraft up` builds it (`cargo build --release --target wasm32-wasip2`) and runs it.

use updraft_sdk::event::{self, Event, EventExt, Handler, HandlerError};
use updraft_sdk::{kv, messaging};

/// The queue this function sends jobs to and is triggered by (declared in updraft.toml).
const JOBS: &str = "%%name%%-jobs";

struct Worker;

impl Handler for Worker {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        // The `default` kv store (declared in updraft.toml and listed in `kv = [...]`).
        let store = kv::Store::open("default")?;
        for e in &events {
            if e.type_ == "updraft.cron" {
                // Once a minute: queue a job, which the `[[trigger.queue]]` runs next.
                let job =
                    event::new("job.tick").json(&serde_json::json!({ "scheduled": e.time }))?;
                messaging::enqueue(JOBS, &job)?;
                println!(
                    "cron at {}: queued a `job.tick`",
                    e.time.as_deref().unwrap_or("?")
                );
                continue;
            }
            // Anything else is work: record it. Replace this with your own.
            let handled = store.increment("handled", 1)?;
            store.set(&format!("last/{}", e.type_), e.text())?;
            println!(
                "handled {} `{}` from {} (attempt {}, {handled} so far): {}",
                e.type_,
                e.id,
                e.source,
                e.attempt(),
                e.text()
            );
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(Worker);
