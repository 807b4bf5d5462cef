//! Step 3, run per staged file: upserts it into `orders` in one transaction, writes the
//! export's report, and removes the staged copy and the export itself from `incoming/`.

use etl_files::{BUCKET, orders_table, report, subject};
use updraft_sdk::blob::Bucket;
use updraft_sdk::event::{Event, EventExt, Handler, HandlerError, fail};
use updraft_sdk::sql::Database;

struct Load;

impl Handler for Load {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let bucket = Bucket::open(BUCKET)?;
        let db = Database::open("warehouse")?;
        for e in &events {
            let staged = subject(e)?;
            let source = e
                .extension("source")
                .ok_or_else(|| fail(format!("event `{}` has no `source`", e.id)))?
                .to_owned();
            if bucket.info(staged)?.is_none() {
                continue; // loaded already (a redelivery)
            }
            let loaded = orders_table()
                .quarantine_prefix("quarantine/staged/")
                .load_object(&db, &bucket, staged)?;
            let status = if loaded.is_clean() {
                "loaded"
            } else {
                "quarantined"
            };
            report(
                &bucket,
                &source,
                serde_json::json!({
                    "file": source,
                    "status": status,
                    "rows": loaded.rows,
                    "loaded": loaded.loaded,
                    "unknown_customers": e.extension("unknowncustomers").unwrap_or("0").parse::<u64>().unwrap_or(0),
                    "details": loaded,
                }),
            )?;
            if loaded.is_clean() {
                bucket.delete(staged)?;
                bucket.rename(
                    &source,
                    &format!(
                        "done/{}",
                        source.strip_prefix("incoming/").unwrap_or(&source)
                    ),
                )?;
            }
            println!("load: `{source}` {status}, {} rows", loaded.loaded);
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(Load);
