//! An event function for the stream tests. Each event's data is JSON
//! `{"key": "...", "seq": N}`; a batch is recorded in one transaction into the `seen` table
//! of sql database `app` (`key`, `seq`, and the `partition` and `offset` extensions), in the
//! order delivered, so the test can check per-key order and count losses and duplicates.
//! A reading with `"poison": true` fails its whole batch, so the host must split the batch
//! to find it. Tick events (`updraft.stream.tick`) are counted per partition in `ticks`.
//! A reading with `"copy_to": "<stream>"` is also appended to that stream (through
//! `messaging.append`, which the function's `append = [...]` must allow); a refusal fails
//! the batch with the host's message.

use updraft_sdk::event::{Event, EventExt, Handler, HandlerError, fail};
use updraft_sdk::messaging;
use updraft_sdk::sql::{Database, Value};

struct Streamer;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS seen (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, seq INTEGER NOT NULL,
    partition INTEGER NOT NULL, offset INTEGER NOT NULL)";
const TICKS: &str =
    "CREATE TABLE IF NOT EXISTS ticks (partition INTEGER PRIMARY KEY, n INTEGER NOT NULL)";

fn number(e: &Event, name: &str) -> Result<i64, HandlerError> {
    e.extension(name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| fail(format!("event `{}` has no `{name}` extension", e.id)))
}

impl Handler for Streamer {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let db = Database::open("app")?;
        db.execute(SCHEMA, &[])?;
        let mut rows = Vec::new();
        for e in &events {
            if e.type_ == "updraft.stream.tick" {
                db.execute(TICKS, &[])?;
                db.execute(
                    "INSERT INTO ticks (partition, n) VALUES ($1, 1)
                     ON CONFLICT (partition) DO UPDATE SET n = n + 1",
                    &[Value::Integer(number(e, "partition")?)],
                )?;
                continue;
            }
            let reading: serde_json::Value = e.json()?;
            if reading["poison"] == serde_json::Value::Bool(true) {
                return Err(fail(format!("poison reading in event `{}`", e.id)));
            }
            if let Some(stream) = reading["copy_to"].as_str() {
                let mut copy = reading.clone();
                copy["copy_to"] = serde_json::Value::Null;
                let event = updraft_sdk::event::new("reading.copy").json(&copy)?;
                messaging::append(stream, &[event])?;
            }
            rows.push(vec![
                Value::Text(reading["key"].as_str().unwrap_or_default().to_owned()),
                Value::Integer(reading["seq"].as_i64().unwrap_or(-1)),
                Value::Integer(number(e, "partition")?),
                Value::Integer(number(e, "offset")?),
            ]);
        }
        if !rows.is_empty() {
            db.execute_many(
                "INSERT INTO seen (key, seq, partition, offset) VALUES ($1, $2, $3, $4)",
                &rows,
            )?;
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(Streamer);
