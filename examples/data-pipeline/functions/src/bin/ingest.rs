//! Runs once per finished CSV in `drop/incoming/`: every row is checked against the sales
//! schema and the file is upserted into `sales` in one transaction. A file with any bad row
//! loads nothing and moves to `quarantine/`, with `quarantine/<name>.report.json` naming each
//! bad line. A database failure is an error, so the platform retries the file with backoff
//! and dead-letters it if it keeps failing; the file itself stays where it was.

use updraft_sdk::blob::Bucket;
use updraft_sdk::csv::{Column, Schema, Table};
use updraft_sdk::event::{Event, Handler, HandlerError, fail};
use updraft_sdk::sql::Database;

struct Ingest;

fn sales() -> Table {
    Table::new(
        "sales",
        Schema::new([
            Column::text("order_id"),
            Column::date("day"),
            Column::text("region"),
            Column::text("product"),
            Column::int("units"),
            Column::float("unit_price"),
            Column::float("total"),
            Column::bool("paid").optional(),
        ]),
    )
    .key(&["order_id"])
}

impl Handler for Ingest {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let drop = Bucket::open("drop")?;
        let db = Database::open("sales")?;
        for event in &events {
            let Some(name) = event.subject.as_deref() else {
                return Err(fail(format!(
                    "file event `{}` has no object name",
                    event.id
                )));
            };
            let report = sales().load_object(&db, &drop, name)?;
            if report.is_clean() {
                println!("loaded `{name}`: {} rows", report.loaded);
            } else {
                eprintln!(
                    "quarantined `{name}` to `{}`: {} bad row(s){}",
                    report.quarantined.as_deref().unwrap_or("?"),
                    report.bad_rows,
                    report
                        .error
                        .as_deref()
                        .map(|e| format!("; {e}"))
                        .unwrap_or_default()
                );
            }
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(Ingest);
