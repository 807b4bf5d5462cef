//! What the ETL steps share: the bucket, the schemas at each stage, and the per-file report.

use updraft_sdk::blob::Bucket;
use updraft_sdk::csv::{Column, Schema, Table};
use updraft_sdk::event::{Event, HandlerError, fail};

/// The bucket every step reads and writes.
pub const BUCKET: &str = "orders";

/// An orders export as it arrives: every column must be there and be UTF-8; `transform`
/// reads the values.
pub fn export_schema() -> Schema {
    Schema::new([
        Column::text("order_id"),
        Column::text("ordered"),
        Column::text("customer"),
        Column::text("amount"),
        Column::text("currency"),
    ])
}

/// The staged file `transform` writes and `load` upserts into `orders`.
pub fn orders_table() -> Table {
    Table::new(
        "orders",
        Schema::new([
            Column::text("order_id"),
            Column::date("day"),
            Column::text("customer"),
            Column::text("region").optional(),
            Column::float("amount_eur"),
            Column::text("source"),
        ]),
    )
    .key(&["order_id"])
}

/// The object a file event or a step's event is about.
pub fn subject(event: &Event) -> Result<&str, HandlerError> {
    event
        .subject
        .as_deref()
        .ok_or_else(|| fail(format!("event `{}` names no object", event.id)))
}

/// Writes `reports/<file name>.json` for the export `source` (an `incoming/…` name).
pub fn report(bucket: &Bucket, source: &str, report: serde_json::Value) -> updraft_sdk::Result<()> {
    let name = source.strip_prefix("incoming/").unwrap_or(source);
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    bucket
        .put(&format!("reports/{name}.json"), text)
        .map(|_| ())
}

/// Moves the export `source` to `quarantine/` and reports why.
pub fn quarantine(
    bucket: &Bucket,
    source: &str,
    step: &str,
    details: serde_json::Value,
) -> updraft_sdk::Result<()> {
    let to = format!(
        "quarantine/{}",
        source.strip_prefix("incoming/").unwrap_or(source)
    );
    report(
        bucket,
        source,
        serde_json::json!({ "file": source, "status": "quarantined", "step": step,
                            "quarantined": to, "details": details }),
    )?;
    bucket.rename(source, &to)
}
