//! An event function for the queue tests. Each event's data says what to do:
//! `fail` (always), `fail-until-N` (until delivery N), `sleep-MS`, anything else succeeds.
//! Successes are recorded in the `default` kv store: `seen/<event id>` = data, and a
//! `count` of handled events. File events (`updraft.file.*`) also count per object:
//! `file/<change>/<name>`; an object whose name contains `fail-always` fails them, and a
//! created object named `*.in` makes the worker write `<name>.out` beside it in the same
//! bucket (its own write, which its file trigger must not fire for). Cron events (whose data the test cannot choose) follow kv
//! keys instead: `cron-fail-until` = N fails them until delivery N, `cron-sleep-ms` = MS
//! makes each run take that long.

wit_bindgen::generate!({
    path: "../../wit",
    world: "updraft:platform/event-function",
    generate_all,
});

use exports::updraft::platform::event_handler::Guest;
use updraft::platform::types::{Event, HandlerError};
use wasi::keyvalue::{atomics, store};

struct Worker;

/// Writes `<name>.out` into the bucket the file event `e` came from.
fn write_beside(e: &Event, name: &str) -> Result<(), String> {
    use wasi::blobstore::{blobstore, types::OutgoingValue};
    let bucket = e
        .extensions
        .iter()
        .find(|(k, _)| k == "bucket")
        .map(|(_, v)| v.clone())
        .ok_or("a file event without its `bucket` extension")?;
    let container = blobstore::get_container(&bucket)?;
    let value = OutgoingValue::new_outgoing_value();
    {
        let stream = value
            .outgoing_value_write_body()
            .map_err(|()| "no body stream".to_owned())?;
        stream
            .blocking_write_and_flush(b"done")
            .map_err(|e| format!("{e:?}"))?;
    }
    container.write_data(&format!("{name}.out"), &value)?;
    OutgoingValue::finish(value)
}

fn attempt(e: &Event) -> u32 {
    e.extensions
        .iter()
        .find(|(k, _)| k == "attempt")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1)
}

impl Guest for Worker {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let bucket = store::open("default").map_err(|e| HandlerError {
            message: format!("cannot open kv: {e:?}"),
            failed: None,
        })?;
        let number = |key: &str| -> Option<u64> {
            let v = bucket.get(key).ok().flatten()?;
            String::from_utf8(v).ok()?.parse().ok()
        };
        let mut failed = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let data = String::from_utf8_lossy(&e.data).into_owned();
            println!("handling {} attempt {} data {data}", e.id, attempt(e));
            let cron = e.type_ == "updraft.cron";
            if cron && let Some(ms) = number("cron-sleep-ms") {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            let file_change = e.type_.strip_prefix("updraft.file.");
            let fails = data == "fail"
                || (file_change.is_some()
                    && e.subject
                        .as_deref()
                        .is_some_and(|s| s.contains("fail-always")))
                || (cron && number("cron-fail-until").is_some_and(|n| u64::from(attempt(e)) < n))
                || data
                    .strip_prefix("fail-until-")
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| attempt(e) < n);
            if fails {
                failed.push(i as u32);
                continue;
            }
            if let Some(ms) = data
                .strip_prefix("sleep-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            bucket
                .set(&format!("seen/{}", e.id), data.as_bytes())
                .map_err(|e| HandlerError {
                    message: format!("{e:?}"),
                    failed: None,
                })?;
            if let (Some("created"), Some(name)) = (file_change, e.subject.as_deref())
                && name.ends_with(".in")
                && let Err(message) = write_beside(e, name)
            {
                return Err(HandlerError {
                    message,
                    failed: None,
                });
            }
            if let (Some(change), Some(name)) = (file_change, e.subject.as_deref()) {
                atomics::increment(&bucket, &format!("file/{change}/{name}"), 1).map_err(|e| {
                    HandlerError {
                        message: format!("{e:?}"),
                        failed: None,
                    }
                })?;
            }
            atomics::increment(&bucket, "count", 1).map_err(|e| HandlerError {
                message: format!("{e:?}"),
                failed: None,
            })?;
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(HandlerError {
                message: format!("{} event(s) asked to fail", failed.len()),
                failed: Some(failed),
            })
        }
    }
}

export!(Worker);

fn main() {}
