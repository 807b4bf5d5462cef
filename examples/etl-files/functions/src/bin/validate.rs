//! Step 1, run per finished file in `incoming/`: checks the export's header, column count and
//! encoding. A clean file is queued for `transform`; a bad one is quarantined with a report.

use etl_files::{BUCKET, export_schema, quarantine, subject};
use updraft_sdk::blob::Bucket;
use updraft_sdk::event::{self, Event, Handler, HandlerError};
use updraft_sdk::messaging::{self, Options};

struct Validate;

impl Handler for Validate {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let bucket = Bucket::open(BUCKET)?;
        for e in &events {
            let name = subject(e)?;
            let Some(file) = bucket.reader(name)? else {
                continue; // gone since: nothing to validate
            };
            let report = updraft_sdk::csv::read(file, &export_schema(), |_| Ok(()))?;
            if !report.is_clean() {
                quarantine(
                    &bucket,
                    name,
                    "validate",
                    serde_json::to_value(&report).unwrap_or_default(),
                )?;
                eprintln!("validate: quarantined `{name}`");
                continue;
            }
            // The file event's id is the same on a redelivery: the queue drops the repeat.
            let next = event::new("etl.validated").subject(name).build();
            let options = Options {
                idempotency_key: Some(e.id.clone()),
                ..Options::default()
            };
            messaging::enqueue_with("transform", &next, options)?;
            println!("validate: `{name}` has {} rows", report.rows);
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(Validate);
