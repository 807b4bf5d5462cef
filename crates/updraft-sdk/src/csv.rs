//! CSV files into tables: a streaming reader that maps a file's header row to typed columns,
//! reports every bad row with its line number and reason, and loads the rows through the
//! sql binding's streamed load ([`crate::sql::Database::load`]), all or nothing, with upsert
//! by key.
//!
//! ```ignore
//! use updraft_sdk::csv::{Column, Schema, Table};
//!
//! let sales = Table::new(
//!     "sales",
//!     Schema::new([
//!         Column::text("order_id"),
//!         Column::date("day"),
//!         Column::text("region"),
//!         Column::float("total"),
//!         Column::int("units").optional(),
//!     ]),
//! )
//! .key(&["order_id"]);
//! let report = sales.load_object(&db, &bucket, &event.subject)?;
//! // Clean: every row is in `sales`. Otherwise nothing of the file is, the file is under
//! // `quarantine/` with `quarantine/<name>.report.json` beside it, and `report` says why.
//! ```
//!
//! The file streams: a chunk of rows is in memory at a time, so a 100 MB file loads in
//! bounded memory. Header names are matched to columns ignoring case and surrounding spaces;
//! columns of the file the schema does not name are skipped. A value is checked against its
//! column's type: `int` (a whole number), `float` (a finite number), `bool` (`true`/`false`,
//! `yes`/`no`, `t`/`f`, `y`/`n`, `1`/`0`), `date` (ISO `2026-12-06` or
//! [`Column::format`]), `datetime` (RFC 3339, `2026-12-06 10:30:00`, or
//! [`Column::format`]) and `text` (as is). An empty value is NULL in an
//! [`Column::optional`] column and a bad row otherwise. Dates are stored as ISO 8601 text.

use std::io::Read;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat};
use serde::Serialize;

use crate::blob::Bucket;
use crate::sql::{Database, Value};
use crate::{Error, Result};

/// Rows pushed to the database at a time.
const CHUNK_ROWS: usize = 1000;
/// Bytes of values pushed at a time, for wide rows.
const CHUNK_BYTES: usize = 1 << 20;
/// Bad rows listed in a report; the count covers them all.
const MAX_LISTED: usize = 1000;
/// Where [`Table::load_object`] moves a bad file, by default.
pub const QUARANTINE_PREFIX: &str = "quarantine/";

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    /// Text, as is.
    Text,
    /// A whole number (64-bit).
    Int,
    /// A finite number.
    Float,
    /// A truth value, stored as 0 or 1.
    Bool,
    /// A calendar date, stored as `YYYY-MM-DD`.
    Date,
    /// A date and time, stored as ISO 8601 (UTC with `Z` when the file gives an offset).
    DateTime,
}

/// A column of a [`Schema`]: the header name it is read from, the table column it goes to,
/// and its type.
#[derive(Debug, Clone)]
pub struct Column {
    header: String,
    column: String,
    ty: Type,
    optional: bool,
    format: Option<String>,
}

impl Column {
    fn new(name: &str, ty: Type) -> Self {
        Self {
            header: name.to_owned(),
            column: name.to_owned(),
            ty,
            optional: false,
            format: None,
        }
    }

    /// A text column.
    pub fn text(name: &str) -> Self {
        Self::new(name, Type::Text)
    }

    /// A whole-number column.
    pub fn int(name: &str) -> Self {
        Self::new(name, Type::Int)
    }

    /// A number column.
    pub fn float(name: &str) -> Self {
        Self::new(name, Type::Float)
    }

    /// A true/false column.
    pub fn bool(name: &str) -> Self {
        Self::new(name, Type::Bool)
    }

    /// A date column.
    pub fn date(name: &str) -> Self {
        Self::new(name, Type::Date)
    }

    /// A date-and-time column.
    pub fn datetime(name: &str) -> Self {
        Self::new(name, Type::DateTime)
    }

    /// Empty values (and a file without this column) are NULL instead of bad rows.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Stores the values in table column `column` (the header name is the default).
    pub fn to_column(mut self, column: &str) -> Self {
        self.column = column.to_owned();
        self
    }

    /// Parses dates or times with a `chrono` format such as `%d/%m/%Y`.
    pub fn format(mut self, format: &str) -> Self {
        self.format = Some(format.to_owned());
        self
    }

    /// The header name this column is read from.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The table column this column goes to.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Reads one value of this column; `Err` says what is wrong with it.
    pub fn parse(&self, raw: &str) -> std::result::Result<Value, String> {
        let trimmed = raw.trim();
        let value = if self.ty == Type::Text { raw } else { trimmed };
        if value.is_empty() {
            return if self.optional {
                Ok(Value::Null)
            } else {
                Err("is empty, and the column is not optional".to_owned())
            };
        }
        match self.ty {
            Type::Text => Ok(Value::Text(value.to_owned())),
            Type::Int => value
                .parse::<i64>()
                .map(Value::Integer)
                .map_err(|_| format!("`{value}` is not a whole number")),
            Type::Float => match value.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Real(f)),
                _ => Err(format!("`{value}` is not a number")),
            },
            Type::Bool => parse_bool(value)
                .map(|b| Value::Integer(i64::from(b)))
                .ok_or_else(|| format!("`{value}` is not true or false")),
            Type::Date => self.parse_date(value).map(Value::Text),
            Type::DateTime => self.parse_datetime(value).map(Value::Text),
        }
    }

    fn parse_date(&self, value: &str) -> std::result::Result<String, String> {
        let format = self.format.as_deref().unwrap_or("%Y-%m-%d");
        NaiveDate::parse_from_str(value, format)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .map_err(|_| format!("`{value}` is not a date like `{}`", example(format)))
    }

    fn parse_datetime(&self, value: &str) -> std::result::Result<String, String> {
        let naive = |d: NaiveDateTime| d.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
        if let Some(format) = &self.format {
            return NaiveDateTime::parse_from_str(value, format)
                .map(naive)
                .map_err(|_| format!("`{value}` is not a date and time like `{format}`"));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(value) {
            return Ok(t.to_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
            .map(naive)
            .ok_or_else(|| format!("`{value}` is not a date and time like `2026-12-06T10:30:00Z`"))
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// A date format as a reader would write it.
fn example(format: &str) -> String {
    format
        .replace("%Y", "2026")
        .replace("%m", "12")
        .replace("%d", "06")
}

/// The typed columns of a file, in the order their values are produced.
#[derive(Debug, Clone)]
pub struct Schema {
    columns: Vec<Column>,
}

impl Schema {
    /// A schema of these columns.
    pub fn new(columns: impl IntoIterator<Item = Column>) -> Self {
        Self {
            columns: columns.into_iter().collect(),
        }
    }

    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

/// One bad row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// The line of the file the row starts on (the header is line 1).
    pub line: u64,
    /// The column at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}: column `{c}` {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// What reading (and loading) a file found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The object read, when it came from a bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Data rows read (the header is not one).
    pub rows: u64,
    /// Rows the load changed; 0 unless the file was clean and committed.
    pub loaded: u64,
    /// Rows that were bad.
    pub bad_rows: u64,
    /// The first bad rows (up to 1,000), in file order.
    pub errors: Vec<RowError>,
    /// A problem with the file as a whole (empty, a required column missing, the database
    /// refusing a row), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the file was moved, when it was quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
}

impl Report {
    /// Whether the file had no problem at all.
    pub fn is_clean(&self) -> bool {
        self.error.is_none() && self.bad_rows == 0
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn bad_row(&mut self, error: RowError) {
        self.bad_rows += 1;
        if self.errors.len() < MAX_LISTED {
            self.errors.push(error);
        }
    }
}

/// Reads CSV from `input` against `schema`, handing chunks of typed rows (values in schema
/// order) to `each`. Every bad row is reported; after the first one, `each` is not called
/// again (the file will not be loaded) but reading goes on to report the rest. A problem
/// with the file as a whole ends reading and is in [`Report::error`]. `Err` is only what
/// `each` returns, or the input failing to read.
pub fn read(
    input: impl Read,
    schema: &Schema,
    mut each: impl FnMut(&[Vec<Value>]) -> Result<()>,
) -> Result<Report> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(input);
    let mut report = Report::default();
    let mut record = csv::ByteRecord::new();
    if !csv.read_byte_record(&mut record).map_err(io_error)? {
        report.error = Some("the file is empty: a CSV file starts with a header row".into());
        return Ok(report);
    }
    let fields = match header_slots(&record, schema) {
        Ok(fields) => fields,
        Err(e) => {
            report.error = Some(e);
            return Ok(report);
        }
    };
    let width = record.len();
    let mut chunk: Vec<Vec<Value>> = Vec::with_capacity(CHUNK_ROWS);
    let mut chunk_bytes = 0;
    while csv.read_byte_record(&mut record).map_err(io_error)? {
        let line = record.position().map_or(0, csv::Position::line);
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line
        }
        report.rows += 1;
        match typed_row(&record, width, schema, &fields, line) {
            Ok(row) => {
                if report.bad_rows > 0 {
                    continue;
                }
                chunk_bytes += row.iter().map(value_size).sum::<usize>();
                chunk.push(row);
                if chunk.len() >= CHUNK_ROWS || chunk_bytes >= CHUNK_BYTES {
                    each(&chunk)?;
                    chunk.clear();
                    chunk_bytes = 0;
                }
            }
            Err(e) => {
                chunk.clear();
                report.bad_row(e);
            }
        }
    }
    if report.bad_rows == 0 && !chunk.is_empty() {
        each(&chunk)?;
    }
    Ok(report)
}

fn io_error(e: csv::Error) -> Error {
    Error(format!("cannot read the CSV file: {e}"))
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Text(t) => t.len(),
        Value::Blob(b) => b.len(),
        Value::Null | Value::Integer(_) | Value::Real(_) => 8,
    }
}

/// For each schema column, the field of a record it is read from (none: an optional column
/// the file does not have).
fn header_slots(header: &csv::ByteRecord, schema: &Schema) -> Result<Vec<Option<usize>>, String> {
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let name = std::str::from_utf8(raw)
                .map_err(|_| format!("header field {} is not valid UTF-8", i + 1))?;
            Ok(name.trim_start_matches('\u{feff}').trim().to_lowercase())
        })
        .collect::<Result<_, String>>()?;
    schema
        .columns
        .iter()
        .map(|c| {
            let want = c.header.trim().to_lowercase();
            let mut at = names.iter().enumerate().filter(|(_, n)| **n == want);
            match (at.next(), at.next()) {
                (Some(_), Some(_)) => Err(format!("column `{}` appears twice in the header", c.header)),
                (Some((i, _)), None) => Ok(Some(i)),
                (None, _) if c.optional => Ok(None),
                (None, _) => Err(format!(
                    "the header has no column `{}` (it has {}); add it, or mark the column optional",
                    c.header,
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        })
        .collect()
}

fn typed_row(
    record: &csv::ByteRecord,
    width: usize,
    schema: &Schema,
    fields: &[Option<usize>],
    line: u64,
) -> std::result::Result<Vec<Value>, RowError> {
    if record.len() != width {
        return Err(RowError {
            line,
            column: None,
            reason: format!("has {} field(s) but the header has {width}", record.len()),
        });
    }
    schema
        .columns
        .iter()
        .zip(fields)
        .map(|(column, field)| {
            let fault = |reason: String| RowError {
                line,
                column: Some(column.header.clone()),
                reason,
            };
            let raw = match field {
                Some(i) => std::str::from_utf8(&record[*i])
                    .map_err(|_| fault("is not valid UTF-8".into()))?,
                None => "",
            };
            column.parse(raw).map_err(fault)
        })
        .collect()
}

/// A table that CSV files load into.
#[derive(Debug, Clone)]
pub struct Table {
    name: String,
    schema: Schema,
    key: Vec<String>,
    quarantine: String,
}

impl Table {
    /// Loads into table `name` (it must exist, with the schema's columns).
    pub fn new(name: &str, schema: Schema) -> Self {
        Self {
            name: name.to_owned(),
            schema,
            key: Vec::new(),
            quarantine: QUARANTINE_PREFIX.to_owned(),
        }
    }

    /// Upserts by these table columns (a primary key or unique index): a row whose key is
    /// already there updates it.
    pub fn key(mut self, columns: &[&str]) -> Self {
        self.key = columns.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// Moves bad files under `prefix` instead of `quarantine/`.
    pub fn quarantine_prefix(mut self, prefix: &str) -> Self {
        self.quarantine = prefix.to_owned();
        self
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The statement each row runs: an `INSERT`, with `ON CONFLICT … DO UPDATE` when the
    /// table has a key.
    pub fn statement(&self) -> String {
        let columns: Vec<&str> = self.schema.columns.iter().map(|c| c.column()).collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quoted(&self.name),
            columns
                .iter()
                .map(|c| quoted(c))
                .collect::<Vec<_>>()
                .join(", "),
            (1..=columns.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !self.key.is_empty() {
            let updates: Vec<String> = columns
                .iter()
                .filter(|c| !self.key.iter().any(|k| k == *c))
                .map(|c| format!("{0} = excluded.{0}", quoted(c)))
                .collect();
            let keys = self.key.iter().map(|k| quoted(k)).collect::<Vec<_>>();
            sql.push_str(&format!(" ON CONFLICT ({}) ", keys.join(", ")));
            if updates.is_empty() {
                sql.push_str("DO NOTHING");
            } else {
                sql.push_str(&format!("DO UPDATE SET {}", updates.join(", ")));
            }
        }
        sql
    }

    /// Reads `input` and loads it into the table in one transaction, all or nothing: when
    /// the report is not clean, nothing was loaded. `Err` means the database or the input
    /// failed (worth a retry), not that the file is bad.
    pub fn load(&self, db: &Database, input: impl Read) -> Result<Report> {
        let mut loader = db.load(&self.statement())?;
        let mut report = read(input, &self.schema, |rows| loader.push(rows))?;
        if !report.is_clean() {
            return Ok(report); // dropping the loader discards what it had
        }
        match loader.commit_typed() {
            Ok(changed) => report.loaded = changed,
            Err(crate::sql::LoadError::Refused(message)) => report.error = Some(message),
            Err(crate::sql::LoadError::Failed(e)) => return Err(e),
        }
        Ok(report)
    }

    /// Loads object `name` of `bucket` ([`Table::load`]); a bad file is quarantined: its
    /// report is written to `<quarantine prefix><name>.report.json`, then the file is moved
    /// to `<quarantine prefix><name>`, and nothing of it is in the table.
    pub fn load_object(&self, db: &Database, bucket: &Bucket, name: &str) -> Result<Report> {
        let Some(reader) = bucket.reader(name)? else {
            return Err(Error(format!(
                "object `{name}` is not in bucket `{}`",
                bucket.name()
            )));
        };
        let mut report = self.load(db, reader)?;
        report.object = Some(name.to_owned());
        if !report.is_clean() {
            let to = format!("{}{name}", self.quarantine);
            report.quarantined = Some(to.clone());
            bucket.put(&format!("{to}.report.json"), report.to_json())?;
            bucket.rename(name, &to)?;
        }
        Ok(report)
    }
}

/// An SQL identifier, quoted.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated `Value` has no `PartialEq`; its `Debug` form tells values apart.
    fn debug(v: &impl std::fmt::Debug) -> String {
        format!("{v:?}")
    }

    fn schema() -> Schema {
        Schema::new([
            Column::int("id"),
            Column::text("name"),
            Column::float("total"),
            Column::bool("paid"),
            Column::date("day"),
            Column::datetime("at").optional(),
        ])
    }

    fn rows_of(input: &[u8]) -> (Report, Vec<Vec<Value>>) {
        let mut rows = Vec::new();
        let report = read(input, &schema(), |chunk| {
            rows.extend_from_slice(chunk);
            Ok(())
        })
        .unwrap();
        (report, rows)
    }

    #[test]
    fn typed_rows_come_out_in_schema_order() {
        let (report, rows) = rows_of(
            "\u{feff}At,DAY,paid,total,name,id,extra\n\
             2026-12-06T10:30:00+01:00,2026-12-06,yes,12.5,\"Ann, \"\"the\"\"\nsecond\",1,x\n\
             ,2026-01-31,0,-3,Bob,2,y\n"
                .as_bytes(),
        );
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.rows, 2);
        assert_eq!(
            debug(&rows[0]),
            debug(&[
                Value::Integer(1),
                Value::Text("Ann, \"the\"\nsecond".into()),
                Value::Real(12.5),
                Value::Integer(1),
                Value::Text("2026-12-06".into()),
                Value::Text("2026-12-06T09:30:00Z".into()),
            ])
        );
        assert_eq!(debug(&rows[1][5]), debug(&Value::Null));
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line() {
        let input = b"id,name,total,paid,day\n\
            1,a,1.0,true,2026-12-06\n\
            x,b,1.0,true,2026-12-06\n\
            3,c,1.0\n\
            4,\xff\xfe,1.0,true,2026-12-06\n\
            5,e,NaN,maybe,2026-02-30\n\
            6,,1,1,2026-12-06\n";
        let (report, rows) = rows_of(input);
        assert!(rows.is_empty(), "nothing is handed on once a row is bad");
        assert_eq!(report.rows, 6);
        assert_eq!(report.bad_rows, 5);
        let listed: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            listed,
            [
                "line 3: column `id` `x` is not a whole number",
                "line 4: has 3 field(s) but the header has 5",
                "line 5: column `name` is not valid UTF-8",
                "line 6: column `total` `NaN` is not a number",
                "line 7: column `name` is empty, and the column is not optional",
            ]
        );
    }

    #[test]
    fn file_level_problems_end_the_read() {
        let (report, _) = rows_of(b"");
        assert!(report.error.unwrap().contains("empty"));
        let (report, _) = rows_of(b"id,name\n1,a\n");
        let error = report.error.unwrap();
        assert!(
            error.contains("no column `total`") && error.contains("`id`, `name`"),
            "{error}"
        );
        let (report, rows) = rows_of(b"id,name,total,paid,day\n");
        assert!(report.is_clean() && rows.is_empty() && report.rows == 0);
    }

    #[test]
    fn dates_take_a_format() {
        let c = Column::date("d").format("%d/%m/%Y");
        assert_eq!(
            debug(&c.parse("06/12/2026")),
            debug(&Ok::<_, String>(Value::Text("2026-12-06".into())))
        );
        assert_eq!(
            c.parse("2026-12-06").err().as_deref(),
            Some("`2026-12-06` is not a date like `06/12/2026`")
        );
        let t = Column::datetime("t");
        assert_eq!(
            debug(&t.parse("2026-12-06 10:30:00")),
            debug(&Ok::<_, String>(Value::Text("2026-12-06T10:30:00".into())))
        );
    }

    #[test]
    fn the_statement_upserts_by_key() {
        let t = Table::new(
            "sales",
            Schema::new([Column::text("id"), Column::float("total")]),
        )
        .key(&["id"]);
        assert_eq!(
            t.statement(),
            "INSERT INTO \"sales\" (\"id\", \"total\") VALUES ($1, $2) ON CONFLICT (\"id\") DO UPDATE SET \"total\" = excluded.\"total\""
        );
    }
}
