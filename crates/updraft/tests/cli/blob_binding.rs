//! The bucket binding from inside a function: `wasi:blobstore` + `updraft:platform/blob`
//! through the SDK and the raw draft bindings (the kitchen guest's `/blob/...` ops), on the
//! default local-folder backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use updraft_test_support::{AppDir, Server};

use crate::{client, eventually, get, kitchen_app, post, start, stderr_shows};

/// `kitchen` may use `uploads`; `private` is declared but not listed.
fn app(function_extra: &str) -> AppDir {
    let app = kitchen_app("\n[bucket.uploads]\n\n[bucket.private]\n");
    let manifest = std::fs::read_to_string(app.path().join("updraft.toml")).unwrap();
    let manifest = manifest.replacen(
        "source = \"kitchen.wasm\"\n",
        &format!("source = \"kitchen.wasm\"\nbuckets = [\"uploads\"]\n{function_extra}"),
        1,
    );
    app.write("updraft.toml", manifest);
    app
}

/// The `uploads` bucket's folder (the default, under the app's `.updraft`).
fn folder(app: &AppDir) -> PathBuf {
    app.path().join(".updraft/buckets/uploads")
}

fn json(status_and_body: (u16, String)) -> Value {
    let (status, body) = status_and_body;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn names(v: &Value) -> Vec<String> {
    v["names"]
        .as_array()
        .unwrap_or_else(|| panic!("no names in {v}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// The bytes `/blob/big-put` writes: byte `i` is `i % 251`.
fn pattern_sha256(size: u64) -> String {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut offset = 0u64;
    while offset < size {
        let n = (size - offset).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ((offset + i as u64) % 251) as u8;
        }
        hash.update(&buf[..n]);
        offset += n as u64;
    }
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn objects_round_trip_through_the_sdk_and_the_raw_draft_bindings() {
    let app = app("");
    let server = start(&app);

    // Put, get, info: the object is a plain file in the bucket's folder.
    let put = json(
        post(
            &server,
            "/k/blob/put?bucket=uploads&name=docs/a.txt",
            "hello",
        )
        .await,
    );
    assert_eq!(put["size"], 5, "{put}");
    assert_eq!(put["name"], "docs/a.txt", "{put}");
    let etag = put["etag"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read_to_string(folder(&app).join("docs/a.txt")).unwrap(),
        "hello"
    );
    assert_eq!(
        get(&server, "/k/blob/get?bucket=uploads&name=docs/a.txt").await,
        (200, "hello".to_owned())
    );
    let info = json(get(&server, "/k/blob/info?bucket=uploads&name=docs/a.txt").await);
    assert_eq!(info["etag"], etag.as_str(), "{info}");
    assert_eq!(info["size"], 5, "{info}");
    assert_eq!(info["content_type"], "text/plain", "{info}");
    assert!(
        info["modified_us"].as_i64().unwrap() > 1_600_000_000_000_000,
        "{info}"
    );
    let (s, body) = get(&server, "/k/blob/info?bucket=uploads&name=docs/none.txt").await;
    assert_eq!(s, 404, "{body}");
    let (s, body) = get(&server, "/k/blob/get?bucket=uploads&name=docs/none.txt").await;
    assert_eq!(s, 404, "{body}");

    // Conditional puts: a lost condition writes nothing.
    let (s, body) = post(
        &server,
        "/k/blob/put?bucket=uploads&name=docs/a.txt&if_none_match=1",
        "clobbered",
    )
    .await;
    assert_eq!(s, 412, "{body}");
    let (s, body) = post(
        &server,
        "/k/blob/put?bucket=uploads&name=docs/a.txt&if_match=not-the-etag",
        "clobbered",
    )
    .await;
    assert_eq!(s, 412, "{body}");
    assert_eq!(
        get(&server, "/k/blob/get?bucket=uploads&name=docs/a.txt")
            .await
            .1,
        "hello"
    );
    let replaced = json(
        post(
            &server,
            &format!("/k/blob/put?bucket=uploads&name=docs/a.txt&if_match={etag}"),
            "hello again",
        )
        .await,
    );
    assert_ne!(replaced["etag"], etag.as_str(), "{replaced}");
    let (s, body) = post(
        &server,
        &format!("/k/blob/put?bucket=uploads&name=docs/a.txt&if_match={etag}"),
        "stale",
    )
    .await;
    assert_eq!(s, 412, "a stale etag loses: {body}");
    json(
        post(
            &server,
            "/k/blob/put?bucket=uploads&name=docs/b.csv&if_none_match=1",
            "x,y\n",
        )
        .await,
    );
    json(
        post(
            &server,
            "/k/blob/put?bucket=uploads&name=docs/c.bin",
            vec![0u8; 3],
        )
        .await,
    );
    json(post(&server, "/k/blob/put?bucket=uploads&name=other/d", "d").await);

    // A file another program drops into the folder is an object like any other.
    std::fs::create_dir_all(folder(&app).join("docs/dropped")).unwrap();
    std::fs::write(folder(&app).join("docs/dropped/in.csv"), "id\n1\n").unwrap();
    assert_eq!(
        get(
            &server,
            "/k/blob/get?bucket=uploads&name=docs/dropped/in.csv"
        )
        .await,
        (200, "id\n1\n".to_owned())
    );

    // Listing by prefix, a page at a time.
    let page = json(get(&server, "/k/blob/ls?bucket=uploads&prefix=docs/&limit=2").await);
    assert_eq!(names(&page), ["docs/a.txt", "docs/b.csv"], "{page}");
    let cursor = page["cursor"].as_str().expect("a cursor").to_owned();
    let rest = json(
        get(
            &server,
            &format!("/k/blob/ls?bucket=uploads&prefix=docs/&limit=2&cursor={cursor}"),
        )
        .await,
    );
    assert_eq!(
        names(&rest),
        ["docs/c.bin", "docs/dropped/in.csv"],
        "{rest}"
    );
    // The last page says so: no cursor.
    assert!(rest["cursor"].is_null(), "{rest}");
    assert_eq!(rest["objects"][0]["size"], 3, "{rest}");
    let all = json(get(&server, "/k/blob/ls-all?bucket=uploads&prefix=").await);
    assert_eq!(
        names(&all),
        [
            "docs/a.txt",
            "docs/b.csv",
            "docs/c.bin",
            "docs/dropped/in.csv",
            "other/d"
        ]
    );

    // Delete.
    let rm = json(get(&server, "/k/blob/rm?bucket=uploads&name=docs/c.bin").await);
    assert_eq!(rm["existed"], true, "{rm}");
    let rm = json(get(&server, "/k/blob/rm?bucket=uploads&name=docs/c.bin").await);
    assert_eq!(rm["existed"], false, "{rm}");
    assert!(!folder(&app).join("docs/c.bin").exists());

    // The raw draft bindings, in the draft's order: body, drop the stream, write-data, finish.
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
    let (s, text) = post(
        &server,
        "/k/blob/raw-put?bucket=uploads&name=raw/x.bin",
        body.clone(),
    )
    .await;
    assert_eq!((s, text.as_str()), (200, "wrote 100000 bytes\n"));
    assert_eq!(std::fs::read(folder(&app).join("raw/x.bin")).unwrap(), body);
    let r = client()
        .get(server.url("/k/blob/raw-get?bucket=uploads&name=raw/x.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    // Offsets are inclusive.
    let r = client()
        .get(server.url("/k/blob/raw-get?bucket=uploads&name=raw/x.bin&start=10&end=19&sync=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), body[10..20].to_vec());
    let (s, text) = get(&server, "/k/blob/raw-get?bucket=uploads&name=raw/none").await;
    assert_eq!(s, 400, "{text}");
    assert!(
        text.contains("bucket `uploads`") && text.contains("`raw/none` does not exist"),
        "{text}"
    );
    let ls = json(get(&server, "/k/blob/raw-ls?bucket=uploads&name=raw/x.bin").await);
    assert_eq!(
        names(&ls),
        [
            "docs/a.txt",
            "docs/b.csv",
            "docs/dropped/in.csv",
            "other/d",
            "raw/x.bin"
        ],
        "{ls}"
    );
    assert_eq!(ls["info"]["size"], 100_000, "{ls}");
    assert_eq!(ls["info"]["container"], "uploads", "{ls}");
    assert_eq!(ls["has"], true, "{ls}");
    for (bucket, exists) in [("uploads", "true"), ("private", "false"), ("nope", "false")] {
        assert_eq!(
            get(&server, &format!("/k/blob/raw-exists?bucket={bucket}")).await,
            (200, format!("{exists}\n")),
            "{bucket}"
        );
    }
    let (s, text) = get(&server, "/k/blob/raw-create?bucket=fresh").await;
    assert_eq!(s, 400, "{text}");
    assert!(
        text.contains("`[bucket.fresh]`") && text.contains("updraft.toml"),
        "{text}"
    );
    let (s, text) = get(&server, "/k/blob/raw-clear?bucket=uploads").await;
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("cannot be cleared"), "{text}");
    assert!(folder(&app).join("raw/x.bin").exists(), "clear did nothing");

    // Copy and move stream between buckets the function may use.
    let (s, text) = get(
        &server,
        "/k/blob/raw-copy?bucket=uploads&name=raw/x.bin&to_bucket=uploads&to_name=raw/copy.bin",
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(
        std::fs::read(folder(&app).join("raw/copy.bin")).unwrap(),
        body
    );
    let (s, text) = get(
        &server,
        "/k/blob/raw-copy?bucket=uploads&name=raw/copy.bin&to_bucket=uploads&to_name=moved/m.bin&move=1",
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert!(!folder(&app).join("raw/copy.bin").exists());
    assert_eq!(
        std::fs::read(folder(&app).join("moved/m.bin")).unwrap(),
        body
    );
    let (s, text) = get(
        &server,
        "/k/blob/raw-copy?bucket=uploads&name=raw/x.bin&to_bucket=private&to_name=x",
    )
    .await;
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("`buckets = [...]`"), "{text}");
}

#[tokio::test]
async fn a_bucket_the_function_does_not_list_is_denied_and_logged_and_an_undeclared_one_is_an_error()
 {
    let app = app("");
    std::fs::create_dir_all(app.path().join(".updraft/buckets/private")).unwrap();
    std::fs::write(app.path().join(".updraft/buckets/private/secret"), "s").unwrap();
    let server = start(&app);

    let fix = "function `kitchen` may not use bucket `private`; add it to the function's `buckets = [...]`";
    for path in [
        "/k/blob/get?bucket=private&name=secret",
        "/k/blob/raw-get?bucket=private&name=secret",
    ] {
        let (s, body) = get(&server, path).await;
        assert_eq!(s, 403, "{path}: {body}");
        assert!(body.contains(fix), "{path}: {body}");
        assert!(!body.contains("\ns\n"), "{body}");
    }
    stderr_shows(&server, fix).await;

    let (s, body) = get(&server, "/k/blob/get?bucket=nope&name=x").await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body.contains("bucket `nope` is not declared; add a `[bucket.nope]` table to updraft.toml"),
        "{body}"
    );
    let (s, body) = get(&server, "/k/blob/raw-get?bucket=nope&name=x").await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("`[bucket.nope]`"), "{body}");
}

#[tokio::test]
async fn object_names_that_would_leave_the_bucket_are_refused_and_nothing_is_written_outside() {
    let app = app("");
    let server = start(&app);
    let outside = app.path().join("outside.txt");
    let absolute = format!("{}/abs.txt", folder(&app).display());
    let before = files_under(app.path());

    for (name, needle) in [
        ("../outside.txt", "`..` segment"),
        ("..%2Foutside.txt", "`..` segment"),
        ("a/../../../outside.txt", "`..` segment"),
        ("%2Fetc%2Fupdraft-escape", "starts with `/`"),
        (absolute.as_str(), "starts with `/`"),
        ("a%00b", "control character"),
        ("a/./b", "`.` segment"),
        ("", "may not be empty"),
    ] {
        for op in ["put", "raw-put"] {
            let (s, body) = post(
                &server,
                &format!("/k/blob/{op}?bucket=uploads&name={name}"),
                "escaped",
            )
            .await;
            assert_eq!(s, 400, "{op} {name:?}: {body}");
            assert!(
                body.contains("bucket `uploads`")
                    && body.contains("is refused")
                    && body.contains(needle),
                "{op} {name:?}: {body}"
            );
        }
        for op in ["get", "info", "rm"] {
            let (s, body) = get(&server, &format!("/k/blob/{op}?bucket=uploads&name={name}")).await;
            assert_eq!(s, 400, "{op} {name:?}: {body}");
            assert!(body.contains("is refused"), "{op} {name:?}: {body}");
        }
    }
    assert!(!outside.exists());
    assert!(!Path::new("/etc/updraft-escape").exists());
    assert!(!Path::new(&absolute).exists());
    let (s, body) = post(&server, "/k/blob/put?bucket=uploads&name=inside.txt", "in").await;
    assert_eq!(s, 200, "{body}");
    // The only new files are the bucket's own object and updraft's state.
    let new: Vec<String> = files_under(app.path())
        .into_iter()
        .filter(|f| !before.contains(f))
        .filter(|f| !f.starts_with(".updraft/") || f.starts_with(".updraft/buckets/"))
        .collect();
    assert_eq!(new, [".updraft/buckets/uploads/inside.txt"]);
}

/// Runs `GET path` while sampling the server's resident memory; returns the answer and how
/// far the memory rose above where it was before, in KiB.
async fn watching_memory(server: &Server, path: &str) -> ((u16, String), u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let baseline = server.rss_kib().unwrap_or(0);
    let done = AtomicBool::new(false);
    let request = async {
        let r = get(server, path).await;
        done.store(true, Ordering::Relaxed);
        r
    };
    let sample = async {
        let mut peak = baseline;
        while !done.load(Ordering::Relaxed) {
            peak = peak.max(server.rss_kib().unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    };
    let (answer, peak) = tokio::join!(request, sample);
    eprintln!("{path}: resident memory {baseline} KiB, peak {peak} KiB");
    (answer, peak.saturating_sub(baseline))
}

#[tokio::test]
async fn a_256_mib_object_streams_in_and_out_under_a_64_mib_memory_limit() {
    const MIB: u64 = 1 << 20;
    let app = app("memory = \"64MiB\"\ntimeout = \"120s\"\n");
    let server = start(&app);
    let want = pattern_sha256(256 * MIB);

    // Warm the instance pool, then watch the server's memory while 256 MiB go through: the
    // host holds a bounded part (the guest's 64 MiB instance is in these figures).
    json(post(&server, "/k/blob/put?bucket=uploads&name=warm", "w").await);
    let (put, grew) = watching_memory(
        &server,
        "/k/blob/big-put?bucket=uploads&name=big/blob.bin&mb=256",
    )
    .await;
    let put = json(put);
    assert_eq!(put["size"], 256 * MIB, "{put}");
    assert_eq!(put["sha256"], want.as_str(), "{put}");
    let on_disk = std::fs::File::open(folder(&app).join("big/blob.bin")).unwrap();
    assert_eq!(on_disk.metadata().unwrap().len(), 256 * MIB);
    assert!(
        grew < 128 * 1024,
        "the server grew by {grew} KiB while 256 MiB were written"
    );

    // The draft's order (the body before the name) holds the body aside on disk, not in
    // memory.
    let (put, grew) = watching_memory(
        &server,
        "/k/blob/raw-big-put?bucket=uploads&name=big/raw.bin&mb=256",
    )
    .await;
    assert_eq!(put, (200, format!("wrote {} bytes\n", 256 * MIB)));
    assert!(
        grew < 128 * 1024,
        "the server grew by {grew} KiB while 256 MiB were written in the draft's order"
    );
    let got = json(get(&server, "/k/blob/big-get?bucket=uploads&name=big/raw.bin").await);
    assert_eq!(got["sha256"], want.as_str(), "{got}");

    // A function that fails mid-write stores nothing, and leaves no temporary file.
    let (s, body) = get(
        &server,
        "/k/blob/big-put?bucket=uploads&name=big/broken.bin&mb=8&trap_at_mb=4",
    )
    .await;
    assert_eq!(s, 500, "{body}");
    let (s, body) = get(&server, "/k/blob/info?bucket=uploads&name=big/broken.bin").await;
    assert_eq!(s, 404, "{body}");
    assert!(
        eventually(Duration::from_secs(10), async || {
            files_under(&folder(&app).join(".updraft-tmp")).is_empty()
        })
        .await,
        "{:?}",
        files_under(&folder(&app).join(".updraft-tmp"))
    );

    // Read back through the SDK's reader inside the function, and out over HTTP.
    let got = json(get(&server, "/k/blob/big-get?bucket=uploads&name=big/blob.bin").await);
    assert_eq!(got["size"], 256 * MIB, "{got}");
    assert_eq!(got["sha256"], want.as_str(), "{got}");
    let mut r = client()
        .get(server.url("/k/blob/get?bucket=uploads&name=big/blob.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        size += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(size, 256 * MIB);
    assert_eq!(hex(&hash.finalize()), want);

    // Reading it whole would not fit: the refusal points at the stream.
    for path in [
        "/k/blob/get-whole?bucket=uploads&name=big/blob.bin",
        "/k/blob/raw-get?bucket=uploads&name=big/blob.bin&sync=1",
    ] {
        let (s, body) = get(&server, path).await;
        assert_eq!(s, 400, "{path}: {body}");
        assert!(
            body.contains("more than this function's memory limit of 64 MiB")
                && body.contains("incoming-value-consume-async"),
            "{path}: {body}"
        );
    }
    // The function is still healthy afterwards.
    assert!(
        eventually(Duration::from_secs(10), async || {
            get(&server, "/k/blob/info?bucket=uploads&name=big/blob.bin")
                .await
                .0
                == 200
        })
        .await
    );
}
