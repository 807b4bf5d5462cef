//! Turns `updraft.async.completed` events into notifications (kv `notifications/<id>`): the
//! outcome of each background thumbnail job, with its metadata when it succeeded. A real app
//! would send an email or a push message here.

use updraft_sdk::event::{Event, EventExt, Handler, HandlerError};
use updraft_sdk::kv;

struct Notify;

impl Handler for Notify {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let store = kv::Store::open("images")?;
        for e in &events {
            let outcome: serde_json::Value = e.json()?;
            let id = outcome["invocation_id"].as_str().unwrap_or_default();
            let status = outcome["status"].as_str().unwrap_or("unknown");
            let metadata: Option<serde_json::Value> = store.get_json(&format!("metadata/{id}"))?;
            let message = match (&metadata, status) {
                (Some(m), "succeeded") => format!(
                    "your {}x{} image is ready: {}",
                    m["width"],
                    m["height"],
                    m["thumbnail"]["url"].as_str().unwrap_or_default()
                ),
                _ => format!("image job {id} {status}"),
            };
            println!("notify: {message}");
            store.set_json(
                &format!("notifications/{id}"),
                &serde_json::json!({
                    "invocation_id": id,
                    "status": status,
                    "message": message,
                    "finished": outcome["finished"],
                    "metadata": metadata,
                }),
            )?;
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(Notify);
