//! Buckets: list the declared buckets and their objects, and get, put (streamed, with
//! `If-None-Match: *` / `If-Match`) and delete objects, as `updraft blob` does.

use futures::TryStreamExt;
use updraft_store::blob::{BlobError, ObjectMeta, PutCondition, PutOptions};

use super::*;

/// Most objects one listing page returns.
const MAX_LIST: u32 = 1000;

/// A declared bucket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BucketInfo {
    /// `[bucket.<name>]`.
    pub name: String,
}

/// One object's metadata.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ObjectInfo {
    /// Its name in the bucket (`incoming/orders.csv`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Changes whenever the object is rewritten (send it back as `If-Match`).
    pub etag: String,
    /// The media type, where the backend keeps or derives one.
    pub content_type: Option<String>,
    /// Last modification, RFC 3339.
    pub modified: String,
}

impl From<ObjectMeta> for ObjectInfo {
    fn from(m: ObjectMeta) -> Self {
        Self {
            name: m.name,
            size: m.size,
            etag: m.etag,
            content_type: m.content_type,
            modified: rfc3339(m.modified_us),
        }
    }
}

/// One page of a bucket listing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ObjectList {
    /// Objects in ascending byte order of name.
    pub objects: Vec<ObjectInfo>,
    /// Pass as `cursor` for the next page; none after the last.
    pub cursor: Option<String>,
}

/// `?prefix=&cursor=&limit=`
#[derive(Debug, Deserialize, IntoParams)]
pub(super) struct ListQuery {
    /// Only names that start with this.
    #[serde(default)]
    prefix: String,
    /// The `cursor` of the previous page.
    cursor: Option<String>,
    /// Most objects to return (default and most 1,000).
    limit: Option<u32>,
}

fn unknown_bucket(name: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!(
            "bucket `{name}` is not declared in this app; `GET /_updraft/api/v1/buckets` lists the buckets (declare one with `[bucket.{name}]`)"
        ),
    )
}

fn blob_error(bucket: &str, e: BlobError) -> Response {
    let status = match &e {
        BlobError::InvalidName { .. } => StatusCode::BAD_REQUEST,
        BlobError::NotFound { .. } => StatusCode::NOT_FOUND,
        BlobError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
        BlobError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BlobError::Backend { .. } => StatusCode::BAD_GATEWAY,
    };
    api_error(status, format!("bucket `{bucket}`: {e}"))
}

fn not_found(bucket: &str, object: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        format!("bucket `{bucket}` has no object `{object}`"),
    )
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/buckets", params(("app" = String, Path, description = "the app's name")), responses((status = 200, body = [BucketInfo])))]
pub(super) async fn buckets(Extension(state): Extension<Arc<AppState>>) -> Json<Vec<BucketInfo>> {
    Json(
        state
            .buckets
            .keys()
            .map(|name| BucketInfo { name: name.clone() })
            .collect(),
    )
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/buckets/{bucket}/objects",
    params(("app" = String, Path, description = "the app's name"), ("bucket" = String, Path, description = "the bucket"), ListQuery),
    responses((status = 200, body = ObjectList), (status = 404, body = ApiError)))]
pub(super) async fn list_objects(
    Extension(state): Extension<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    match object_page(&state, &name, &q.prefix, q.cursor.as_deref(), q.limit).await {
        Ok(Some(list)) => Json(list).into_response(),
        Ok(None) => unknown_bucket(&name),
        Err(e) => blob_error(&name, e),
    }
}

/// A page of the objects of bucket `name` whose names start with `prefix`, after `cursor`;
/// `None` when the app has no such bucket.
pub(crate) async fn object_page(
    state: &AppState,
    name: &str,
    prefix: &str,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<Option<ObjectList>, BlobError> {
    let Some(store) = state.buckets.get(name).cloned() else {
        return Ok(None);
    };
    let limit = limit.unwrap_or(MAX_LIST).clamp(1, MAX_LIST);
    let page = store.list(prefix, cursor, limit).await?;
    Ok(Some(ObjectList {
        objects: page.objects.into_iter().map(ObjectInfo::from).collect(),
        cursor: page.cursor,
    }))
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/buckets/{bucket}/objects/{object}",
    params(("app" = String, Path, description = "the app's name"), ("bucket" = String, Path, description = "the bucket"), ("object" = String, Path, description = "the object's name; may contain `/`")),
    responses((status = 200, description = "the object, streamed, with `ETag`, `Content-Type` and `Content-Length`"), (status = 404, body = ApiError)))]
pub(super) async fn get_object(
    Extension(state): Extension<Arc<AppState>>,
    Path((name, object)): Path<(String, String)>,
) -> Response {
    let Some(store) = state.buckets.get(&name).cloned() else {
        return unknown_bucket(&name);
    };
    match store.get(&object, None).await {
        Ok(Some((meta, body))) => {
            let mut response = Response::new(axum::body::Body::from_stream(body));
            let headers = response.headers_mut();
            let mut set = |name: header::HeaderName, value: &str| {
                if let Ok(v) = header::HeaderValue::from_str(value) {
                    headers.insert(name, v);
                }
            };
            set(header::CONTENT_LENGTH, &meta.size.to_string());
            set(header::ETAG, &format!("\"{}\"", meta.etag));
            set(
                header::CONTENT_TYPE,
                meta.content_type
                    .as_deref()
                    .unwrap_or("application/octet-stream"),
            );
            set(header::LAST_MODIFIED, &httpdate(meta.modified_us));
            response
        }
        Ok(None) => not_found(&name, &object),
        Err(e) => blob_error(&name, e),
    }
}

#[utoipa::path(put, path = "/_updraft/api/v1/apps/{app}/buckets/{bucket}/objects/{object}",
    params(("app" = String, Path, description = "the app's name"), ("bucket" = String, Path, description = "the bucket"), ("object" = String, Path, description = "the object's name; may contain `/`"),
        ("if-none-match" = Option<String>, Header, description = "`*`: only if no object has the name"),
        ("if-match" = Option<String>, Header, description = "only if the object's etag is this one")),
    request_body(content = Vec<u8>, description = "the object's bytes, streamed", content_type = "application/octet-stream"),
    responses((status = 201, body = ObjectInfo), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 412, body = ApiError), (status = 413, body = ApiError)))]
pub(super) async fn put_object(
    Extension(state): Extension<Arc<AppState>>,
    Path((name, object)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // A refusal is sent before the body is read; the rest of the body is read and dropped
    // meanwhile, so a client still sending gets the answer, not a reset connection.
    let Some(store) = state.buckets.get(&name).cloned() else {
        drain(body);
        return unknown_bucket(&name);
    };
    if let Err(e) = updraft_store::blob::check_name(&object) {
        drain(body);
        return blob_error(&name, e);
    }
    let condition = match condition(&headers) {
        Ok(c) => c,
        Err(message) => {
            drain(body);
            return api_error(StatusCode::BAD_REQUEST, message);
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let stream = TryStreamExt::map_err(body.into_data_stream(), |e| {
        BlobError::backend(format!("the request body broke off: {e}"))
    });
    let options = PutOptions {
        content_type,
        condition,
    };
    match store.put(&object, Box::pin(stream), options).await {
        Ok(meta) => (StatusCode::CREATED, Json(ObjectInfo::from(meta))).into_response(),
        Err(e) => blob_error(&name, e),
    }
}

#[utoipa::path(delete, path = "/_updraft/api/v1/apps/{app}/buckets/{bucket}/objects/{object}",
    params(("app" = String, Path, description = "the app's name"), ("bucket" = String, Path, description = "the bucket"), ("object" = String, Path, description = "the object's name; may contain `/`")),
    responses((status = 204, description = "deleted"), (status = 404, body = ApiError)))]
pub(super) async fn delete_object(
    Extension(state): Extension<Arc<AppState>>,
    Path((name, object)): Path<(String, String)>,
) -> Response {
    let Some(store) = state.buckets.get(&name).cloned() else {
        return unknown_bucket(&name);
    };
    match store.delete(&object).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => not_found(&name, &object),
        Err(e) => blob_error(&name, e),
    }
}

/// The put condition of `If-None-Match: *` or `If-Match: "<etag>"`.
fn condition(headers: &HeaderMap) -> Result<PutCondition, String> {
    let text = |name: header::HeaderName| -> Result<Option<String>, String> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| format!("`{name}` is not text"))
            })
            .transpose()
    };
    match (text(header::IF_NONE_MATCH)?, text(header::IF_MATCH)?) {
        (Some(_), Some(_)) => Err("send `If-None-Match` or `If-Match`, not both".to_owned()),
        (Some(v), None) if v == "*" => Ok(PutCondition::IfNoneMatch),
        (Some(v), None) => Err(format!(
            "`If-None-Match: {v}` is not supported on a put; send `If-None-Match: *` (create only)"
        )),
        (None, Some(v)) => {
            let etag = v.trim_start_matches("W/").trim_matches('"').to_owned();
            Ok(PutCondition::IfMatch(etag))
        }
        (None, None) => Ok(PutCondition::Always),
    }
}

fn httpdate(us: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0)))
}

/// Reads and drops up to 64 MiB of a refused upload in the background, for at most 10 s.
fn drain(body: axum::body::Body) {
    tokio::spawn(async move {
        let limited = http_body_util::Limited::new(body, 64 << 20);
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            http_body_util::BodyExt::collect(limited),
        )
        .await;
    });
}
