//! A test function that does whatever its path (after the route's `/...`) asks, so one
//! component can exercise every runtime behaviour: echo, headers, env, traps, loops,
//! memory bombs, outbound HTTP, logging, sleeping, streaming, and the kv, sql, messaging and
//! bucket bindings.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use wstd::http::body::{Body, Bytes};
use wstd::http::{Client, Error, Request, Response, StatusCode};

wit_bindgen::generate!({
    path: "../../wit",
    world: "updraft:platform/imports",
    generate_all,
});

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    // The route's `...` remainder, or the whole path when there is none (e.g. `updraft invoke`).
    let op = req
        .headers()
        .get("updraft-path-info")
        .and_then(|v| v.to_str().ok())
        .filter(|p| !p.is_empty())
        .unwrap_or(req.uri().path())
        .to_owned();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let num = |k: &str, d: u64| query.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    match op.as_str() {
        "/leftover" => text(StatusCode::OK, leftover()),
        // How many requests this instance has served, this one included: 1 on a fresh
        // instance, more when the function opts into reuse.
        "/served" => text(StatusCode::OK, format!("{served}\n")),
        "/echo" => {
            let (_parts, body) = req.into_parts();
            Ok(Response::new(body))
        }
        "/count" => {
            let mut body = req.into_body();
            match body.contents().await {
                Ok(bytes) => text(StatusCode::OK, format!("{}\n", bytes.len())),
                Err(err) => text(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {err:?}\n"),
                ),
            }
        }
        "/headers" => {
            let headers: BTreeMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
                .collect();
            let out = serde_json::json!({
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "headers": headers,
            });
            json(&out)
        }
        "/env" => {
            let env: BTreeMap<String, String> = std::env::vars().collect();
            let config: BTreeMap<String, String> = wasi::config::store::get_all()
                .map(|all| all.into_iter().collect())
                .unwrap_or_default();
            let cwd_listing = std::fs::read_dir("/").map(|d| d.count()).ok();
            let out =
                serde_json::json!({ "env": env, "config": config, "root_entries": cwd_listing });
            json(&out)
        }
        "/trap" => panic!("kitchen was asked to trap"),
        "/spin" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "/alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            for _ in 0..num("mb", 1) {
                hoard.push(vec![1u8; 1 << 20]);
            }
            text(StatusCode::OK, format!("allocated {} MiB\n", hoard.len()))
        }
        "/fetch" => {
            let url = query.get("url").cloned().unwrap_or_default();
            let request = Request::get(url.as_str()).body(Body::empty())?;
            match Client::new().send(request).await {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let body = response.body_mut().str_contents().await?.to_owned();
                    text(StatusCode::OK, format!("upstream {status}: {body}"))
                }
                Err(err) => text(StatusCode::BAD_GATEWAY, format!("fetch failed: {err:?}")),
            }
        }
        "/log" => {
            let id = req
                .headers()
                .get("updraft-invocation-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            println!("to stdout from {id}");
            eprintln!("to stderr from {id}");
            text(StatusCode::OK, "logged\n".into())
        }
        "/sleep" => {
            println!("sleeping {} ms", num("ms", 100));
            wstd::task::sleep(wstd::time::Duration::from_millis(num("ms", 100))).await;
            text(StatusCode::OK, "slept\n".into())
        }
        "/stream" => {
            let chunks = num("chunks", 5);
            let ms = num("ms", 50);
            // `trap_after=N`: trap once N chunks went out (a body that breaks mid-way).
            let trap_after = query.get("trap_after").and_then(|v| v.parse::<u64>().ok());
            let stream = futures_lite::stream::unfold(0u64, move |i| async move {
                if i == chunks {
                    return None;
                }
                if trap_after == Some(i) {
                    panic!("kitchen was asked to trap after {i} chunks");
                }
                wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
                Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from(format!("chunk {i}\n"))),
                    i + 1,
                ))
            });
            Ok(Response::new(Body::from_try_stream(stream)))
        }
        "/drain" => {
            // Answers at once, then reads the request body into the answer's only line; a
            // read error ends the answer cleanly, so only the gateway can tell it is cut.
            let mut body = req.into_body();
            let stream = futures_lite::stream::once_future(async move {
                let read = match body.contents().await {
                    Ok(bytes) => bytes.len().to_string(),
                    Err(_) => "an error".to_owned(),
                };
                Ok::<_, std::convert::Infallible>(Bytes::from(format!("read {read}\n")))
            });
            Ok(Response::new(Body::from_try_stream(stream)))
        }
        op if op.starts_with("/kv/") => kv(op, &query, req).await,
        "/publish" => {
            use updraft::platform::messaging::publish;
            use updraft::platform::types::Event;
            let mut body = req.into_body();
            let data = body.contents().await?.to_vec();
            let event = Event {
                id: query.get("id").cloned().unwrap_or_default(),
                source: String::new(),
                type_: query.get("type").cloned().unwrap_or_default(),
                subject: query.get("subject").cloned(),
                time: None,
                datacontenttype: Some("text/plain".to_owned()),
                data,
                extensions: Vec::new(),
            };
            match publish(query.get("topic").map(String::as_str).unwrap_or(""), &event) {
                Ok(()) => text(StatusCode::ACCEPTED, "published\n".into()),
                Err(e) => text(StatusCode::BAD_REQUEST, format!("publish failed: {e:?}\n")),
            }
        }
        "/enqueue" => {
            use updraft::platform::messaging::{EnqueueOptions, enqueue};
            use updraft::platform::types::Event;
            let mut body = req.into_body();
            let data = body.contents().await?.to_vec();
            let event = Event {
                id: query.get("id").cloned().unwrap_or_default(),
                source: String::new(),
                type_: "test.job".to_owned(),
                subject: None,
                time: None,
                datacontenttype: Some("text/plain".to_owned()),
                data,
                extensions: Vec::new(),
            };
            let options = EnqueueOptions {
                delay_ms: query.get("delay_ms").and_then(|v| v.parse().ok()),
                idempotency_key: query.get("key").cloned(),
            };
            match enqueue(
                query.get("queue").map(String::as_str).unwrap_or(""),
                &event,
                &options,
            ) {
                Ok(()) => text(StatusCode::ACCEPTED, "queued\n".into()),
                Err(e) => text(StatusCode::BAD_REQUEST, format!("enqueue failed: {e:?}\n")),
            }
        }
        op if op.starts_with("/sql/") => sql(op, &query, req).await,
        op if op.starts_with("/blob/raw-") => blob_raw(op, &query, req).await,
        op if op.starts_with("/blob/") => blob(op, &query, req).await,
        other => text(StatusCode::NOT_FOUND, format!("kitchen has no `{other}`\n")),
    }
}

fn text(status: StatusCode, body: String) -> Result<Response<Body>, Error> {
    Ok(Response::builder().status(status).body(body.into())?)
}

fn json(value: &serde_json::Value) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(value.to_string().into())?)
}

/// `/kv/{get,set,incr,list,cas,delete}?store=S&key=K…`: the kv bindings, one call each.
async fn kv(
    op: &str,
    q: &BTreeMap<String, String>,
    req: Request<Body>,
) -> Result<Response<Body>, Error> {
    use wasi::keyvalue::{atomics, store};
    let arg = |k: &str| q.get(k).cloned().unwrap_or_default();
    let bucket = match store::open(&arg("store")) {
        Ok(b) => b,
        Err(e) => return text(StatusCode::FORBIDDEN, format!("open failed: {e:?}\n")),
    };
    let key = arg("key");
    let result: Result<String, store::Error> = match op {
        "/kv/get" => match bucket.get(&key) {
            Ok(Some(v)) => Ok(String::from_utf8_lossy(&v).into_owned()),
            Ok(None) => return text(StatusCode::NOT_FOUND, "no such key\n".into()),
            Err(e) => Err(e),
        },
        "/kv/set" => {
            let mut body = req.into_body();
            let value = body.contents().await?.to_vec();
            bucket.set(&key, &value).map(|()| "ok".into())
        }
        "/kv/delete" => bucket.delete(&key).map(|()| "ok".into()),
        "/kv/incr" => {
            atomics::increment(&bucket, &key, arg("by").parse().unwrap_or(1)).map(|n| n.to_string())
        }
        "/kv/list" => updraft::platform::kv::list_by_prefix(&bucket, &arg("prefix"), None, 1000)
            .map(|page| page.keys.join(",")),
        "/kv/cas" => {
            let expected = q.get("expected").map(|e| e.as_bytes().to_vec());
            updraft::platform::kv::compare_and_swap(
                &bucket,
                &key,
                expected.as_deref(),
                arg("new").as_bytes(),
            )
            .map(|swapped| swapped.to_string())
        }
        other => return text(StatusCode::NOT_FOUND, format!("kitchen has no `{other}`\n")),
    };
    match result {
        Ok(body) => text(StatusCode::OK, body),
        Err(e) => text(StatusCode::BAD_REQUEST, format!("kv error: {e:?}\n")),
    }
}

/// `/sql/{execute,query,batch}?db=D` with a JSON body `{"sql": "...", "params": [...]}`.
async fn sql(
    op: &str,
    q: &BTreeMap<String, String>,
    req: Request<Body>,
) -> Result<Response<Body>, Error> {
    use updraft::platform::sql::{Connection, Value};
    let conn = match Connection::open(q.get("db").map(String::as_str).unwrap_or("")) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::FORBIDDEN, format!("open failed: {e:?}\n")),
    };
    let mut body = req.into_body();
    let input: serde_json::Value = body.json().await?;
    let statement = input["sql"].as_str().unwrap_or_default().to_owned();
    let params_of = |input: &serde_json::Value| -> Vec<Value> {
        input["params"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|p| match p {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Number(n) if n.is_i64() => {
                    Value::Integer(n.as_i64().unwrap_or(0))
                }
                serde_json::Value::Number(n) => Value::Real(n.as_f64().unwrap_or(0.0)),
                serde_json::Value::String(s) => Value::Text(s),
                other => Value::Text(other.to_string()),
            })
            .collect()
    };
    let params = params_of(&input);
    let out = match op {
        // `{"batch": [{"sql": …, "params": […]}, …]}`: one transaction.
        "/sql/batch" => {
            let statements: Vec<(String, Vec<Value>)> = input["batch"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    (
                        s["sql"].as_str().unwrap_or_default().to_owned(),
                        params_of(s),
                    )
                })
                .collect();
            conn.batch(&statements)
                .map(|changed| serde_json::json!({ "changed": changed }))
        }
        "/sql/execute" => conn
            .execute(&statement, &params)
            .map(|n| serde_json::json!({ "changed": n })),
        "/sql/query" => conn.query(&statement, &params).map(|rows| {
            let columns = rows.columns.clone();
            let rows: Vec<serde_json::Value> = rows
                .rows
                .into_iter()
                .map(|r| {
                    serde_json::Value::Array(
                        r.into_iter()
                            .map(|v| match v {
                                Value::Null => serde_json::Value::Null,
                                Value::Integer(i) => i.into(),
                                Value::Real(f) => f.into(),
                                Value::Text(s) => s.into(),
                                Value::Blob(b) => b.len().into(),
                            })
                            .collect(),
                    )
                })
                .collect();
            serde_json::json!({ "columns": columns, "rows": rows })
        }),
        other => return text(StatusCode::NOT_FOUND, format!("kitchen has no `{other}`\n")),
    };
    match out {
        Ok(v) => json(&v),
        Err(e) => text(StatusCode::BAD_REQUEST, format!("sql error: {e:?}\n")),
    }
}

/// The byte at `offset` of a generated object (`/blob/big-put`): the test computes the same.
fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// `s` with `%XX` escapes decoded (object names in tests carry `/`, `..` and NUL).
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn info_json(i: &updraft_sdk::blob::ObjectInfo) -> serde_json::Value {
    serde_json::json!({
        "name": i.name,
        "size": i.size,
        "etag": i.etag,
        "content_type": i.content_type,
        "modified_us": i.modified_us,
    })
}

/// `/blob/{put,get,info,ls,rm,big-put,big-get}?bucket=B&name=N…`: the bucket binding through
/// the SDK.
async fn blob(
    op: &str,
    q: &BTreeMap<String, String>,
    req: Request<Body>,
) -> Result<Response<Body>, Error> {
    use std::io::{Read, Write};

    use sha2::{Digest, Sha256};
    use updraft_sdk::blob::{Bucket, Condition};

    let arg = |k: &str| percent_decoded(q.get(k).map_or("", String::as_str));
    let bucket = match Bucket::open(&arg("bucket")) {
        Ok(b) => b,
        Err(e) => return text(StatusCode::FORBIDDEN, format!("open failed: {e}\n")),
    };
    let name = arg("name");
    let failed =
        |e: updraft_sdk::Error| text(StatusCode::BAD_REQUEST, format!("blob error: {e}\n"));
    match op {
        "/blob/put" => {
            let condition = match (q.get("if_none_match"), q.get("if_match")) {
                (Some(_), _) => Condition::IfAbsent,
                (None, Some(etag)) => Condition::IfMatch(etag.clone()),
                (None, None) => Condition::Always,
            };
            let mut body = req.into_body();
            let bytes = body.contents().await?.to_vec();
            let mut w = match bucket.writer_with(
                &name,
                q.get("content_type").map(String::as_str),
                condition,
            ) {
                Ok(w) => w,
                Err(e) => return failed(e),
            };
            if let Err(e) = w.write_all(&bytes) {
                return text(StatusCode::BAD_REQUEST, format!("blob error: {e}\n"));
            }
            match w.finish_if() {
                Ok(Some(info)) => json(&info_json(&info)),
                Ok(None) => text(
                    StatusCode::PRECONDITION_FAILED,
                    format!("condition failed for `{name}`\n"),
                ),
                Err(e) => failed(e),
            }
        }
        "/blob/get" => {
            let reader = match bucket.reader(&name) {
                Ok(Some(r)) => r,
                Ok(None) => return text(StatusCode::NOT_FOUND, format!("no object `{name}`\n")),
                Err(e) => return failed(e),
            };
            let content_type = reader.info().content_type.clone();
            let chunks = futures_lite::stream::unfold(Some(reader), |reader| async move {
                let mut reader = reader?;
                let mut buf = vec![0u8; 64 * 1024];
                match reader.read(&mut buf) {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), Some(reader)))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            });
            let mut response = Response::builder();
            if let Some(t) = content_type {
                response = response.header("content-type", t);
            }
            Ok(response.body(Body::from_try_stream(chunks))?)
        }
        "/blob/info" => match bucket.info(&name) {
            Ok(Some(info)) => json(&info_json(&info)),
            Ok(None) => text(StatusCode::NOT_FOUND, format!("no object `{name}`\n")),
            Err(e) => failed(e),
        },
        "/blob/ls" => {
            let limit = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(1000);
            let cursor = q.get("cursor").map(|c| percent_decoded(c));
            match bucket.list_page(&arg("prefix"), cursor.as_deref(), limit) {
                Ok(page) => json(&serde_json::json!({
                    "names": page.objects.iter().map(|o| o.name.clone()).collect::<Vec<_>>(),
                    "objects": page.objects.iter().map(info_json).collect::<Vec<_>>(),
                    "cursor": page.cursor,
                })),
                Err(e) => failed(e),
            }
        }
        "/blob/ls-all" => {
            let mut names = Vec::new();
            for object in bucket.list(&arg("prefix")) {
                match object {
                    Ok(o) => names.push(o.name),
                    Err(e) => return failed(e),
                }
            }
            json(&serde_json::json!({ "names": names }))
        }
        "/blob/rm" => match bucket.delete(&name) {
            Ok(existed) => json(&serde_json::json!({ "existed": existed })),
            Err(e) => failed(e),
        },
        "/blob/get-whole" => match bucket.get(&name) {
            Ok(Some(bytes)) => json(&serde_json::json!({
                "size": bytes.len(),
                "sha256": hex(&Sha256::digest(&bytes)),
            })),
            Ok(None) => text(StatusCode::NOT_FOUND, format!("no object `{name}`\n")),
            Err(e) => failed(e),
        },
        "/blob/big-put" => {
            // `mb` MiB of `pattern`, written 64 KiB at a time: never all in memory.
            let total = q.get("mb").and_then(|v| v.parse::<u64>().ok()).unwrap_or(1) << 20;
            let mut w = match bucket.writer(&name) {
                Ok(w) => w,
                Err(e) => return failed(e),
            };
            // `trap_at_mb=N`: the function fails once N MiB went out (nothing may be stored).
            let trap_at = q
                .get("trap_at_mb")
                .and_then(|v| v.parse::<u64>().ok())
                .map(|m| m << 20);
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut offset = 0u64;
            while offset < total {
                if trap_at == Some(offset) {
                    panic!("kitchen was asked to trap after {offset} bytes of `{name}`");
                }
                let n = (total - offset).min(buf.len() as u64) as usize;
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = pattern(offset + i as u64);
                }
                hash.update(&buf[..n]);
                if let Err(e) = w.write_all(&buf[..n]) {
                    return text(StatusCode::BAD_REQUEST, format!("blob error: {e}\n"));
                }
                offset += n as u64;
            }
            match w.finish() {
                Ok(info) => json(&serde_json::json!({
                    "size": info.size,
                    "etag": info.etag,
                    "sha256": hex(&hash.finalize()),
                })),
                Err(e) => failed(e),
            }
        }
        "/blob/big-get" => {
            let mut reader = match bucket.reader(&name) {
                Ok(Some(r)) => r,
                Ok(None) => return text(StatusCode::NOT_FOUND, format!("no object `{name}`\n")),
                Err(e) => return failed(e),
            };
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut size = 0u64;
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        hash.update(&buf[..n]);
                        size += n as u64;
                    }
                    Err(e) => return text(StatusCode::BAD_REQUEST, format!("blob error: {e}\n")),
                }
            }
            json(&serde_json::json!({ "size": size, "sha256": hex(&hash.finalize()) }))
        }
        other => text(StatusCode::NOT_FOUND, format!("kitchen has no `{other}`\n")),
    }
}

/// `/blob/raw-{put,get,ls,exists,create,copy}`: the raw `wasi:blobstore@0.2.0-draft`
/// bindings, called the way an off-the-shelf guest does (the draft's order for a write: the
/// body, then `write-data`, then `finish`).
async fn blob_raw(
    op: &str,
    q: &BTreeMap<String, String>,
    req: Request<Body>,
) -> Result<Response<Body>, Error> {
    use wasi::blobstore::blobstore;
    use wasi::blobstore::types::{IncomingValue, ObjectId, OutgoingValue};
    use wasi::io::streams::StreamError;

    let arg = |k: &str| percent_decoded(q.get(k).map_or("", String::as_str));
    let name = arg("name");
    let failed = |e: String| text(StatusCode::BAD_REQUEST, format!("blobstore error: {e}\n"));
    match op {
        "/blob/raw-exists" => {
            return match blobstore::container_exists(&arg("bucket")) {
                Ok(b) => text(StatusCode::OK, format!("{b}\n")),
                Err(e) => failed(e),
            };
        }
        "/blob/raw-create" => {
            return match blobstore::create_container(&arg("bucket")) {
                Ok(_) => text(StatusCode::OK, "created\n".into()),
                Err(e) => failed(e),
            };
        }
        "/blob/raw-copy" => {
            let src = ObjectId {
                container: arg("bucket"),
                object: name,
            };
            let dest = ObjectId {
                container: arg("to_bucket"),
                object: arg("to_name"),
            };
            let result = if q.contains_key("move") {
                blobstore::move_object(&src, &dest)
            } else {
                blobstore::copy_object(&src, &dest)
            };
            return match result {
                Ok(()) => text(StatusCode::OK, "ok\n".into()),
                Err(e) => failed(e),
            };
        }
        _ => {}
    }
    let container = match blobstore::get_container(&arg("bucket")) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::FORBIDDEN, format!("open failed: {e}\n")),
    };
    match op {
        "/blob/raw-put" => {
            let mut body = req.into_body();
            let bytes = body.contents().await?.to_vec();
            let value = OutgoingValue::new_outgoing_value();
            {
                let Ok(stream) = value.outgoing_value_write_body() else {
                    return failed("no body stream".into());
                };
                for chunk in bytes.chunks(4096) {
                    if let Err(e) = stream.blocking_write_and_flush(chunk) {
                        return failed(format!("write failed: {e:?}"));
                    }
                }
            }
            if let Err(e) = container.write_data(&name, &value) {
                return failed(e);
            }
            match OutgoingValue::finish(value) {
                Ok(()) => text(StatusCode::OK, format!("wrote {} bytes\n", bytes.len())),
                Err(e) => failed(e),
            }
        }
        "/blob/raw-big-put" => {
            // `mb` MiB of `pattern` in the draft's order: the body before the name, so the
            // host holds it aside (in a temporary file) until `write-data`.
            let total = q.get("mb").and_then(|v| v.parse::<u64>().ok()).unwrap_or(1) << 20;
            let value = OutgoingValue::new_outgoing_value();
            {
                let Ok(stream) = value.outgoing_value_write_body() else {
                    return failed("no body stream".into());
                };
                let pollable = stream.subscribe();
                let mut buf = vec![0u8; 64 * 1024];
                let mut offset = 0u64;
                while offset < total {
                    let permit = match stream.check_write() {
                        Ok(0) => {
                            pollable.block();
                            continue;
                        }
                        Ok(n) => n,
                        Err(e) => return failed(format!("check-write failed: {e:?}")),
                    };
                    let n = (total - offset).min(permit).min(buf.len() as u64) as usize;
                    for (i, b) in buf[..n].iter_mut().enumerate() {
                        *b = pattern(offset + i as u64);
                    }
                    if let Err(e) = stream.write(&buf[..n]) {
                        return failed(format!("write failed: {e:?}"));
                    }
                    offset += n as u64;
                }
            }
            if let Err(e) = container.write_data(&name, &value) {
                return failed(e);
            }
            match OutgoingValue::finish(value) {
                Ok(()) => text(StatusCode::OK, format!("wrote {total} bytes\n")),
                Err(e) => failed(e),
            }
        }
        "/blob/raw-get" => {
            let end = q
                .get("end")
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
            let start = q.get("start").and_then(|v| v.parse().ok()).unwrap_or(0);
            let value = match container.get_data(&name, start, end) {
                Ok(v) => v,
                Err(e) => return failed(e),
            };
            if q.contains_key("sync") {
                return match IncomingValue::incoming_value_consume_sync(value) {
                    Ok(bytes) => Ok(Response::new(bytes.into())),
                    Err(e) => failed(e),
                };
            }
            let stream = match IncomingValue::incoming_value_consume_async(value) {
                Ok(s) => s,
                Err(e) => return failed(e),
            };
            let mut out = Vec::new();
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(bytes) => out.extend_from_slice(&bytes),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return failed(e.to_debug_string());
                    }
                }
            }
            Ok(Response::new(out.into()))
        }
        "/blob/raw-ls" => {
            let names = match container.list_objects() {
                Ok(n) => n,
                Err(e) => return failed(e),
            };
            let mut all = Vec::new();
            loop {
                match names.read_stream_object_names(2) {
                    Ok((batch, end)) => {
                        all.extend(batch);
                        if end {
                            break;
                        }
                    }
                    Err(e) => return failed(e),
                }
            }
            let info = match container.object_info(&name) {
                Ok(m) => {
                    serde_json::json!({ "name": m.name, "container": m.container, "size": m.size })
                }
                Err(e) => serde_json::json!({ "error": e }),
            };
            json(
                &serde_json::json!({ "names": all, "info": info, "has": container.has_object(&name).ok() }),
            )
        }
        "/blob/raw-clear" => match container.clear() {
            Ok(()) => text(StatusCode::OK, "cleared\n".into()),
            Err(e) => failed(e),
        },
        other => text(StatusCode::NOT_FOUND, format!("kitchen has no `{other}`\n")),
    }
}

/// 1 MiB of zero-initialised static memory (`.bss`), as 64-bit words.
static SCRATCH: [AtomicU64; 1 << 17] = [const { AtomicU64::new(0) }; 1 << 17];

/// Says whether this instance's memory is as fresh as the component's image: an earlier
/// instance in the same pooled slot marked every other 4 KiB page of `SCRATCH` (many
/// disjoint dirty regions), and a reset that missed any of them would show it here. Then
/// marks them again for the next instance.
/// Requests this instance has served, whatever they asked (see `/served`).
static SERVED: AtomicU64 = AtomicU64::new(0);

fn leftover() -> String {
    const WORDS_PER_PAGE: usize = 4096 / 8;
    let dirty = SCRATCH
        .iter()
        .filter(|w| w.load(Ordering::Relaxed) != 0)
        .count();
    for page in SCRATCH.chunks(WORDS_PER_PAGE).step_by(2) {
        page[0].store(0x5eed_5eed_5eed_5eed, Ordering::Relaxed);
    }
    if dirty == 0 {
        "clean\n".into()
    } else {
        format!("{dirty} words left by an earlier instance\n")
    }
}
