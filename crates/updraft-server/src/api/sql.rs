//! The app's sql databases: their tables and columns, and read-only queries (what the
//! dashboard's table explorer runs).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::*;

/// Longest a query from here may run.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A declared database with its tables.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DatabaseInfo {
    /// `[sql.<label>]`.
    pub name: String,
    /// Its tables and views, by name.
    pub tables: Vec<TableSchema>,
}

/// A table or view.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TableSchema {
    /// Its name.
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
    /// Its columns, in order.
    pub columns: Vec<ColumnSchema>,
}

/// A column and its declared type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ColumnSchema {
    /// Its name.
    pub name: String,
    /// Its declared type (may be empty).
    #[serde(rename = "type")]
    pub ty: String,
}

/// A read-only statement.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryRequest {
    /// The statement (`SELECT …`); one that would write is refused. `$from` and `$to` in it
    /// are bound to the time range, as RFC 3339 text (`2026-12-01T00:00:00Z`).
    pub sql: String,
    /// Start of the time range, RFC 3339 (default: `0001-01-01T00:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// End of the time range, RFC 3339 (default: `9999-12-31T23:59:59Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// The time range a query's `$from` and `$to` stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeRange {
    pub(crate) from: DateTime<Utc>,
    pub(crate) to: DateTime<Utc>,
}

impl TimeRange {
    /// All time that RFC 3339 can write (the years 1 to 9999), so no row is left out.
    pub(crate) fn all() -> Self {
        let at = |(y, m, d), (h, min, s)| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|d| d.and_hms_opt(h, min, s))
                .map_or(DateTime::<Utc>::MIN_UTC, |t| t.and_utc())
        };
        Self {
            from: at((1, 1, 1), (0, 0, 0)),
            to: at((9999, 12, 31), (23, 59, 59)),
        }
    }

    /// The last `span`, ending now.
    pub(crate) fn last(span: Duration) -> Self {
        let to = Utc::now();
        let from = chrono::Duration::from_std(span)
            .ok()
            .and_then(|d| to.checked_sub_signed(d))
            .unwrap_or(Self::all().from);
        Self { from, to }
    }

    /// From `from` to `to` (RFC 3339 each; a missing end is open), or which is not a time.
    pub(crate) fn between(from: Option<&str>, to: Option<&str>) -> Result<Self, String> {
        let parse = |name: &str, v: Option<&str>, open: DateTime<Utc>| match v {
            None => Ok(open),
            Some(v) => DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    format!(
                        "`{name}` is not an RFC 3339 time ({e}); write it as `2026-12-01T00:00:00Z`"
                    )
                }),
        };
        let all = Self::all();
        let range = Self {
            from: parse("from", from, all.from)?,
            to: parse("to", to, all.to)?,
        };
        if range.from > range.to {
            return Err("`from` is after `to`: give the earlier time as `from`".to_owned());
        }
        Ok(range)
    }

    /// Its ends in unix seconds.
    pub(crate) fn seconds(&self) -> (f64, f64) {
        (self.from.timestamp() as f64, self.to.timestamp() as f64)
    }

    /// `sql` with `$from` and `$to` turned into positional parameters, and their values.
    /// Quoted text, quoted names and comments are left as they are.
    pub(crate) fn bind(&self, sql: &str) -> (String, Vec<updraft_store::Value>) {
        let mut out = String::with_capacity(sql.len());
        let mut names: Vec<&str> = Vec::new();
        let mut rest = sql;
        while let Some(c) = rest.chars().next() {
            let skipped = match c {
                '\'' | '"' => rest[1..].find(c).map_or(rest.len(), |end| end + 2),
                '-' if rest.starts_with("--") => rest.find('\n').unwrap_or(rest.len()),
                '/' if rest.starts_with("/*") => rest.find("*/").map_or(rest.len(), |end| end + 2),
                '$' => {
                    let word = &rest[1..];
                    let name = ["from", "to"].into_iter().find(|n| {
                        word.starts_with(n)
                            && !word[n.len()..]
                                .starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
                    });
                    if let Some(name) = name {
                        let at = match names.iter().position(|n| *n == name) {
                            Some(at) => at,
                            None => {
                                names.push(name);
                                names.len() - 1
                            }
                        };
                        let _ = write!(out, "${}", at + 1);
                        rest = &rest[1 + name.len()..];
                        continue;
                    }
                    1
                }
                c => c.len_utf8(),
            };
            out.push_str(&rest[..skipped]);
            rest = &rest[skipped..];
        }
        let text = |t: DateTime<Utc>| {
            updraft_store::Value::Text(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        };
        let values = names
            .into_iter()
            .map(|n| text(if n == "from" { self.from } else { self.to }))
            .collect();
        (out, values)
    }

    /// Whether `sql` mentions `$from` or `$to`.
    pub(crate) fn used_by(sql: &str) -> bool {
        !Self::all().bind(sql).1.is_empty()
    }
}

/// A query's result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each with one JSON value per column (blobs as base64-free byte counts).
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Why a read-only query gave no rows.
pub(crate) enum ReadProblem {
    /// The app has no such database.
    UnknownDatabase(String),
    /// The statement is not allowed, not valid, or ran too long: the user's to fix.
    Refused(String),
    /// The backend failed.
    Failed(String),
}

impl ReadProblem {
    fn response(self) -> Response {
        match self {
            Self::UnknownDatabase(m) => api_error(StatusCode::NOT_FOUND, m),
            Self::Refused(m) => api_error(StatusCode::BAD_REQUEST, m),
            Self::Failed(m) => api_error(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }

    /// What to tell the user.
    pub(crate) fn message(&self) -> &str {
        match self {
            Self::UnknownDatabase(m) | Self::Refused(m) | Self::Failed(m) => m,
        }
    }
}

/// Every declared database with its tables, in name order.
pub(crate) async fn databases(state: &AppState) -> Result<Vec<DatabaseInfo>, ReadProblem> {
    let mut out = Vec::new();
    for (name, db) in &state.sql {
        let tables = db
            .tables()
            .await
            .map_err(|e| ReadProblem::Failed(e.to_string()))?;
        out.push(DatabaseInfo {
            name: name.clone(),
            tables: tables
                .into_iter()
                .map(|t| TableSchema {
                    name: t.name,
                    kind: t.kind,
                    columns: t
                        .columns
                        .into_iter()
                        .map(|(name, ty)| ColumnSchema { name, ty })
                        .collect(),
                })
                .collect(),
        });
    }
    Ok(out)
}

/// Runs `sql` read-only on database `database`, bounded in time, with its `$from` and
/// `$to` bound to `range`.
pub(crate) async fn read_query(
    state: &AppState,
    database: &str,
    sql: &str,
    range: &TimeRange,
) -> Result<updraft_store::RowSet, ReadProblem> {
    let db = state.sql.get(database).ok_or_else(|| {
        ReadProblem::UnknownDatabase(format!(
            "sql database `{database}` is not declared in this app; `GET /_updraft/api/v1/sql` lists its databases"
        ))
    })?;
    let (sql, params) = range.bind(sql);
    match tokio::time::timeout(READ_TIMEOUT, db.read(&sql, params)).await {
        Err(_) => Err(ReadProblem::Refused(format!(
            "the query ran longer than {} s and was stopped; make it cheaper (an index, a `LIMIT`)",
            READ_TIMEOUT.as_secs()
        ))),
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e @ updraft_store::SqlError::Backend { .. })) => {
            Err(ReadProblem::Failed(e.to_string()))
        }
        Ok(Err(e)) => Err(ReadProblem::Refused(e.to_string())),
    }
}

/// A value as JSON.
pub(crate) fn json_value(v: updraft_store::Value) -> serde_json::Value {
    use updraft_store::Value;
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Int(i) => i.into(),
        Value::Float(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(t) => t.into(),
        Value::Blob(b) => format!("({} bytes)", b.len()).into(),
    }
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/sql", params(("app" = String, Path, description = "the app's name")),
    responses((status = 200, body = [DatabaseInfo]), (status = 500, body = ApiError)))]
pub(super) async fn sql_databases(Extension(state): Extension<Arc<AppState>>) -> Response {
    match databases(&state).await {
        Ok(d) => Json(d).into_response(),
        Err(p) => p.response(),
    }
}

#[utoipa::path(post, path = "/_updraft/api/v1/apps/{app}/sql/{name}/query", params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "the database label")),
    request_body = QueryRequest,
    responses((status = 200, body = QueryResult), (status = 400, body = ApiError, description = "the statement writes, is not valid, or ran over 5 s; or `from`/`to` is not a time"), (status = 404, body = ApiError)))]
pub(super) async fn sql_query(
    Extension(state): Extension<Arc<AppState>>,
    Path(name): Path<String>,
    Json(q): Json<QueryRequest>,
) -> Response {
    let range = match TimeRange::between(q.from.as_deref(), q.to.as_deref()) {
        Ok(range) => range,
        Err(why) => return api_error(StatusCode::BAD_REQUEST, why),
    };
    match read_query(&state, &name, &q.sql, &range).await {
        Ok(rows) => Json(QueryResult {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|r| r.into_iter().map(json_value).collect())
                .collect(),
        })
        .into_response(),
        Err(p) => p.response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> TimeRange {
        TimeRange::between(
            Some("2026-12-01T00:00:00Z"),
            Some("2026-12-08T12:30:00+01:00"),
        )
        .unwrap()
    }

    fn texts(values: &[updraft_store::Value]) -> Vec<String> {
        values
            .iter()
            .map(|v| match v {
                updraft_store::Value::Text(t) => t.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn from_and_to_become_positional_parameters_outside_quotes_and_comments() {
        let (sql, values) = range().bind(
            "SELECT * FROM t WHERE at >= $from AND at < $to AND b <> '$from' AND \"$to\" > 0 -- $to\n/* $from */",
        );
        assert_eq!(
            sql,
            "SELECT * FROM t WHERE at >= $1 AND at < $2 AND b <> '$from' AND \"$to\" > 0 -- $to\n/* $from */"
        );
        assert_eq!(
            texts(&values),
            ["2026-12-01T00:00:00Z", "2026-12-08T11:30:00Z"]
        );
        // Numbered in order of first use, each once; other `$` words are left alone.
        let (sql, values) = range().bind("$to, $from, $to, $fromage, $from$x$, $1");
        assert_eq!(sql, "$1, $2, $1, $fromage, $from$x$, $1");
        assert_eq!(
            texts(&values),
            ["2026-12-08T11:30:00Z", "2026-12-01T00:00:00Z"]
        );
        assert!(!TimeRange::used_by("SELECT 'no $from here'"));
        assert!(TimeRange::used_by("SELECT 1 WHERE $to > ''"));
    }

    #[test]
    fn a_range_that_is_not_a_time_or_runs_backwards_says_so() {
        let e = TimeRange::between(Some("yesterday"), None).unwrap_err();
        assert!(e.contains("`from` is not an RFC 3339 time"), "{e}");
        let e = TimeRange::between(Some("2026-12-02T00:00:00Z"), Some("2026-12-01T00:00:00Z"))
            .unwrap_err();
        assert!(e.contains("`from` is after `to`"), "{e}");
        let all = TimeRange::between(None, None).unwrap();
        assert_eq!(all, TimeRange::all());
        assert_eq!(
            texts(&all.bind("$from $to").1),
            ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
        );
    }
}
