//! The app's sql databases: their tables and columns, and read-only queries (what the
//! dashboard's table explorer runs).

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
    /// The statement (`SELECT …`); one that would write is refused.
    pub sql: String,
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

/// Runs `sql` read-only on database `database`, bounded in time.
pub(crate) async fn read_query(
    state: &AppState,
    database: &str,
    sql: &str,
) -> Result<updraft_store::RowSet, ReadProblem> {
    let db = state.sql.get(database).ok_or_else(|| {
        ReadProblem::UnknownDatabase(format!(
            "sql database `{database}` is not declared in this app; `GET /_updraft/api/v1/sql` lists its databases"
        ))
    })?;
    match tokio::time::timeout(READ_TIMEOUT, db.read(sql, Vec::new())).await {
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
    responses((status = 200, body = QueryResult), (status = 400, body = ApiError, description = "the statement writes, is not valid, or ran over 5 s"), (status = 404, body = ApiError)))]
pub(super) async fn sql_query(
    Extension(state): Extension<Arc<AppState>>,
    Path(name): Path<String>,
    Json(q): Json<QueryRequest>,
) -> Response {
    match read_query(&state, &name, &q.sql).await {
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
