//! Step 2, run per validated export: dates to ISO, amounts to euros (the `rates` table),
//! each order enriched with its customer's region (the `customers` table). Writes
//! `staged/<name>` and queues it for `load`; an export with an unknown currency, a bad date
//! or a bad amount is quarantined with every bad line named.

use std::collections::HashMap;
use std::io::Write;

use etl_files::{BUCKET, export_schema, quarantine, subject};
use updraft_sdk::blob::Bucket;
use updraft_sdk::csv::Column;
use updraft_sdk::event::{self, Event, Handler, HandlerError, fail};
use updraft_sdk::messaging::{self, Options};
use updraft_sdk::sql::{Database, Value};

struct Transform;

/// A lookup table as a map from its first column to its second.
fn lookup(db: &Database, query: &str) -> updraft_sdk::Result<HashMap<String, Value>> {
    Ok(db
        .query(query, &[])?
        .rows
        .into_iter()
        .filter_map(|mut row| match row.remove(0) {
            Value::Text(key) => Some((key, row.remove(0))),
            _ => None,
        })
        .collect())
}

fn text(v: &Value) -> &str {
    match v {
        Value::Text(t) => t,
        _ => "",
    }
}

/// `2026-12-01` or `01/12/2026` as ISO.
fn iso_day(raw: &str) -> Result<String, String> {
    let iso = Column::date("ordered");
    let european = Column::date("ordered").format("%d/%m/%Y");
    match iso.parse(raw).or_else(|_| european.parse(raw)) {
        Ok(Value::Text(day)) => Ok(day),
        _ => Err(format!(
            "`{raw}` is not a date like 2026-12-01 or 01/12/2026"
        )),
    }
}

/// A CSV field, quoted when it must be.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl Handler for Transform {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let bucket = Bucket::open(BUCKET)?;
        let db = Database::open("warehouse")?;
        let rates = lookup(&db, "SELECT currency, eur FROM rates")?;
        let regions = lookup(&db, "SELECT id, region FROM customers")?;
        for e in &events {
            let source = subject(e)?;
            let Some(file) = bucket.reader(source)? else {
                continue; // already handled and moved
            };
            let staged = format!(
                "staged/{}",
                source.strip_prefix("incoming/").unwrap_or(source)
            );
            let mut out = bucket.writer(&staged)?;
            writeln!(out, "order_id,day,customer,region,amount_eur,source")
                .map_err(|e| fail(e.to_string()))?;
            let mut problems = Vec::new();
            let mut line = 1;
            let mut unknown_customers = 0;
            updraft_sdk::csv::read(file, &export_schema(), |rows| {
                for row in rows {
                    line += 1;
                    let [id, ordered, customer, amount, currency] =
                        [0, 1, 2, 3, 4].map(|i| text(&row[i]));
                    let day = iso_day(ordered.trim());
                    let rate = rates
                        .get(currency.trim())
                        .ok_or_else(|| format!("unknown currency `{currency}`"));
                    let amount = amount
                        .trim()
                        .replace(',', "")
                        .parse::<f64>()
                        .map_err(|_| format!("`{amount}` is not an amount"));
                    match (day, rate, amount) {
                        (Ok(day), Ok(Value::Real(rate)), Ok(amount)) => {
                            let region = regions.get(customer).map(text).unwrap_or_default();
                            if region.is_empty() {
                                unknown_customers += 1;
                            }
                            let eur = (amount * rate * 100.0).round() / 100.0;
                            writeln!(
                                out,
                                "{},{day},{},{},{eur:.2},{}",
                                field(id),
                                field(customer),
                                field(region),
                                field(source)
                            )
                            .map_err(|e| updraft_sdk::Error(e.to_string()))?;
                        }
                        (day, rate, amount) => {
                            let reasons: Vec<String> = [day.err(), rate.err(), amount.err()]
                                .into_iter()
                                .flatten()
                                .collect();
                            problems.push(
                                serde_json::json!({ "line": line, "reason": reasons.join("; ") }),
                            );
                        }
                    }
                }
                Ok(())
            })?;
            if !problems.is_empty() {
                drop(out); // unfinished: nothing is staged
                quarantine(
                    &bucket,
                    source,
                    "transform",
                    serde_json::json!({ "errors": problems }),
                )?;
                eprintln!("transform: quarantined `{source}`");
                continue;
            }
            out.finish()?;
            let next = event::new("etl.transformed")
                .subject(&staged)
                .extension("source", source)
                .extension("unknowncustomers", unknown_customers.to_string())
                .build();
            let options = Options {
                idempotency_key: Some(e.id.clone()),
                ..Options::default()
            };
            messaging::enqueue_with("load", &next, options)?;
            println!("transform: staged `{staged}`");
        }
        Ok(())
    }
}

updraft_sdk::export_event_handler!(Transform);
