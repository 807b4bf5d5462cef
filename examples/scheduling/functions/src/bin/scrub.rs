//! Runs on a timer and cleans the `legacy` database: normalises what can be repaired,
//! quarantines what cannot (with the reason), and reports what it did to kv `reports`.
//!
//! Every step is one idempotent SQL statement pair, so a run cut short is finished by the
//! next one.

use updraft_sdk::event::{Event, EventExt, Handler, HandlerError};
use updraft_sdk::{kv, params, sql};

/// A customer row as JSON, for the quarantine.
const CUSTOMER_JSON: &str =
    "json_object('id', id, 'name', name, 'email', email, 'country', country)";
/// Emails the scrubber accepts: something, `@`, something, `.`, something.
const BAD_EMAIL: &str = "(email IS NULL OR email NOT LIKE '%_@_%._%' OR email LIKE '% %')";

struct Scrub;

impl Handler for Scrub {
    fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
        let db = sql::Database::open("legacy")?;
        let reports = kv::Store::open("reports")?;
        for tick in &events {
            let at = tick.time.clone().unwrap_or_default();
            let report = scrub(&db, &at)?;
            let report = serde_json::json!({
                "at": at,
                "past_due": tick.past_due(),
                "normalised": report[0],
                "named": report[1],
                "invalid_emails": report[2],
                "duplicates": report[3],
                "orphan_orders": report[4],
            });
            println!("scrubbed: {report}");
            reports.set_json("latest", &report)?;
            reports.increment("runs", 1)?;
        }
        Ok(())
    }
}

/// One pass; returns the rows touched by each step.
fn scrub(db: &sql::Database, at: &str) -> updraft_sdk::Result<[u64; 5]> {
    let normalised = db.execute(
        "UPDATE customers SET name = trim(name), email = lower(trim(email)), country = upper(trim(country))
         WHERE name != trim(name) OR email != lower(trim(email)) OR country != upper(trim(country))",
        &[],
    )?;
    // A missing name is repaired from the email's local part.
    let named = db.execute(
        "UPDATE customers SET name = substr(email, 1, instr(email, '@') - 1)
         WHERE (name IS NULL OR name = '') AND instr(email, '@') > 1",
        &[],
    )?;
    let invalid = quarantine_customers(db, BAD_EMAIL, "no usable email address", at)?;
    // Duplicates by email: the oldest row stays and takes over the others' orders.
    db.execute(
        "UPDATE orders SET customer_id = (
             SELECT min(k.id) FROM customers d JOIN customers k ON k.email = d.email
             WHERE d.id = orders.customer_id)
         WHERE customer_id IN (
             SELECT d.id FROM customers d WHERE EXISTS (
                 SELECT 1 FROM customers k WHERE k.email = d.email AND k.id < d.id))",
        &[],
    )?;
    let duplicates = quarantine_customers(
        db,
        "EXISTS (SELECT 1 FROM customers k WHERE k.email = customers.email AND k.id < customers.id)",
        "duplicate email; orders moved to the oldest customer with it",
        at,
    )?;
    let orphans_where = "customer_id IS NULL OR customer_id NOT IN (SELECT id FROM customers)";
    db.execute(
        &format!(
            "INSERT INTO quarantine (source_table, source_id, row_json, reason, quarantined_at)
             SELECT 'orders', id, json_object('id', id, 'customer_id', customer_id, 'amount_cents', amount_cents),
                    'no such customer', $1
             FROM orders WHERE ({orphans_where})
               AND id NOT IN (SELECT source_id FROM quarantine WHERE source_table = 'orders')"
        ),
        params![at],
    )?;
    let orphans = db.execute(&format!("DELETE FROM orders WHERE {orphans_where}"), &[])?;
    Ok([normalised, named, invalid, duplicates, orphans])
}

/// Copies the customers matching `condition` to the quarantine (once), then deletes them.
fn quarantine_customers(
    db: &sql::Database,
    condition: &str,
    reason: &str,
    at: &str,
) -> updraft_sdk::Result<u64> {
    db.execute(
        &format!(
            "INSERT INTO quarantine (source_table, source_id, row_json, reason, quarantined_at)
             SELECT 'customers', id, {CUSTOMER_JSON}, $1, $2 FROM customers
             WHERE {condition}
               AND id NOT IN (SELECT source_id FROM quarantine WHERE source_table = 'customers')"
        ),
        params![reason, at],
    )?;
    db.execute(&format!("DELETE FROM customers WHERE {condition}"), &[])
}

updraft_sdk::export_event_handler!(Scrub);
