//! Buckets: the conformance suite against the local-folder backend (in a temp folder) and
//! the S3 backend on a real, private `moto_server` (`updraft_test_support::s3::S3Server`),
//! plus what is particular to each.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use updraft_store::blob::{body, read_all};
use updraft_store::conformance;
use updraft_store::fs::{FsBlobStore, TMP_DIR};
use updraft_store::s3::{S3BlobStore, S3Config, S3Credentials};
use updraft_store::{BlobError, BlobStore, PutCondition, PutOptions};
use updraft_test_support::s3::S3Server;

/// Every file and folder under `dir`, relative, sorted (links not followed).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(base)
                .expect("under base")
                .to_string_lossy()
                .into_owned();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn fs_store(root: PathBuf) -> Arc<FsBlobStore> {
    Arc::new(FsBlobStore::open(root).expect("open the bucket folder"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_passes_the_conformance_suite() {
    let parent = tempfile::tempdir().expect("temp dir");
    let mut n = 0;
    let base = parent.path().to_path_buf();
    conformance::blob::run(move |limit| {
        n += 1;
        let mut store = FsBlobStore::open(base.join(format!("bucket{n}"))).expect("open");
        if let Some(limit) = limit {
            store = store.with_max_object_bytes(limit);
        }
        Arc::new(store)
    })
    .await;
    // Nothing was written beside the buckets, and no temporary file was left in them.
    for entry in tree(parent.path()) {
        let first = entry.split('/').next().unwrap_or_default();
        assert!(
            first.starts_with("bucket"),
            "{entry} is outside the buckets"
        );
        assert!(
            !entry.contains(&format!("{TMP_DIR}/")) || entry.ends_with(&format!("{TMP_DIR}/")),
            "a temporary file was left: {entry}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_sees_files_other_programs_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = fs_store(dir.path().to_path_buf());
    std::fs::create_dir_all(dir.path().join("drop/in")).expect("mkdir");
    std::fs::write(dir.path().join("drop/in/orders.csv"), b"id,total\n1,9.99\n").expect("write");
    std::fs::write(dir.path().join("top.txt"), b"top").expect("write");
    // Hidden files (an editor's swap file, a partial download) are not listed.
    std::fs::write(dir.path().join("drop/.orders.csv.swp"), b"x").expect("write");
    std::fs::create_dir_all(dir.path().join(".git")).expect("mkdir");
    std::fs::write(dir.path().join(".git/config"), b"x").expect("write");

    let head = store
        .head("drop/in/orders.csv")
        .await
        .expect("head")
        .expect("a dropped file is an object");
    assert_eq!(head.size, 16);
    assert_eq!(head.content_type.as_deref(), Some("text/csv"));
    let (meta, stream) = store
        .get("drop/in/orders.csv", None)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(meta, head);
    assert_eq!(read_all(stream).await.expect("read"), b"id,total\n1,9.99\n");

    let page = store.list("", None, 100).await.expect("list");
    let listed: Vec<(&str, u64, Option<&str>)> = page
        .objects
        .iter()
        .map(|m| (m.name.as_str(), m.size, m.content_type.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            ("drop/in/orders.csv", 16, Some("text/csv")),
            ("top.txt", 3, Some("text/plain")),
        ]
    );
    assert_eq!(page.objects[0].etag, head.etag);

    // Rewritten in place by the other program: the etag changes.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(dir.path().join("drop/in/orders.csv"), b"id,total\n1,9.98\n").expect("write");
    let again = store
        .head("drop/in/orders.csv")
        .await
        .expect("head")
        .expect("exists");
    assert_ne!(again.etag, head.etag);

    // And objects put through the store are plain files.
    store
        .put("out/report.json", body(&b"{}"[..]), PutOptions::default())
        .await
        .expect("put");
    assert_eq!(
        std::fs::read(dir.path().join("out/report.json")).expect("read"),
        b"{}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_never_follows_symlinks_out_of_the_folder() {
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::write(outside.path().join("secret.txt"), b"secret").expect("write");
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("bucket");
    let store = fs_store(root.clone());
    std::os::unix::fs::symlink(outside.path(), root.join("linkdir")).expect("symlink");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("link.txt"))
        .expect("symlink");
    std::fs::create_dir_all(root.join("real")).expect("mkdir");
    std::os::unix::fs::symlink(outside.path(), root.join("real/inner")).expect("symlink");
    std::fs::write(root.join("real/file.txt"), b"mine").expect("write");

    for name in ["linkdir/secret.txt", "link.txt", "real/inner/secret.txt"] {
        assert_eq!(store.head(name).await.expect("head"), None, "{name}");
        assert!(
            store.get(name, None).await.expect("get").is_none(),
            "{name}"
        );
        assert!(!store.delete(name).await.expect("delete"), "{name}");
    }
    let page = store.list("", None, 100).await.expect("list");
    let names: Vec<&str> = page.objects.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["real/file.txt"], "links are not listed");

    // A put through a linked folder is refused and writes nothing outside.
    let e = store
        .put("linkdir/new.txt", body(&b"x"[..]), PutOptions::default())
        .await
        .expect_err("a put through a link");
    assert!(
        e.to_string().contains("symbolic link") && e.to_string().contains("`linkdir`"),
        "{e}"
    );
    let e = store
        .put("real/inner/new.txt", body(&b"x"[..]), PutOptions::default())
        .await
        .expect_err("a put through a link");
    assert!(e.to_string().contains("`real/inner`"), "{e}");
    // A put over a link to a file replaces the link, not the file it points to.
    store
        .put("link.txt", body(&b"replaced"[..]), PutOptions::default())
        .await
        .expect("put over a link");
    assert_eq!(tree(outside.path()), ["secret.txt"]);
    assert_eq!(
        std::fs::read(outside.path().join("secret.txt")).expect("read"),
        b"secret"
    );
    assert!(
        !std::fs::symlink_metadata(root.join("link.txt"))
            .expect("stat")
            .file_type()
            .is_symlink()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_invalid_names_write_nothing_anywhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("a/bucket");
    let store = fs_store(root.clone());
    for name in conformance::blob::invalid_names() {
        for condition in [PutCondition::Always, PutCondition::IfNoneMatch] {
            let e = store
                .put(
                    &name,
                    body(&b"evil"[..]),
                    PutOptions {
                        content_type: None,
                        condition,
                    },
                )
                .await
                .expect_err("refused");
            assert!(matches!(e, BlobError::InvalidName { .. }), "{name:?}: {e}");
        }
    }
    // Not even a temporary folder: names are checked before anything is touched.
    assert_eq!(tree(dir.path()), ["a/", "a/bucket/"]);
}

/// A body that sends one chunk and then never ends.
fn stalled_body() -> updraft_store::ByteStream {
    futures::stream::once(async { Ok(Bytes::from(vec![1u8; 4096])) })
        .chain(futures::stream::pending())
        .boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_failed_or_dropped_puts_leave_no_temporary_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = fs_store(dir.path().to_path_buf());
    let failing = futures::stream::iter([
        Ok(Bytes::from_static(b"part")),
        Err(BlobError::backend("the body broke")),
    ])
    .boxed();
    store
        .put("x", failing, PutOptions::default())
        .await
        .expect_err("fails");
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        store.put("y", stalled_body(), PutOptions::default()),
    )
    .await;
    assert!(dropped.is_err(), "the stalled put was cut off");
    assert_eq!(tree(dir.path()), [format!("{TMP_DIR}/")]);
    // A leftover of a crash, old enough, is swept when the folder is opened again.
    let stale = dir.path().join(TMP_DIR).join("crashed");
    std::fs::write(&stale, b"half").expect("write");
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .and_then(|f| f.set_modified(old))
        .expect("age it");
    let fresh = dir.path().join(TMP_DIR).join("in-progress");
    std::fs::write(&fresh, b"half").expect("write");
    drop(fs_store(dir.path().to_path_buf()));
    assert!(!stale.exists(), "an old temporary file is swept");
    assert!(fresh.exists(), "a recent one may be another process's put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_delete_keeps_folders_and_lists_only_objects() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = fs_store(dir.path().to_path_buf());
    for name in ["a/b/c/d.txt", "a/keep.txt"] {
        store
            .put(name, body(&b"x"[..]), PutOptions::default())
            .await
            .expect("put");
    }
    // A drop folder like `incoming/` stays after its last file is handled.
    assert!(store.delete("a/b/c/d.txt").await.expect("delete"));
    assert!(store.delete("a/keep.txt").await.expect("delete"));
    assert_eq!(tree(dir.path()), [".updraft-tmp/", "a/", "a/b/", "a/b/c/"]);
    // Empty folders are not objects: the listing is as on S3.
    let page = store.list("a/", None, 100).await.expect("list");
    assert!(page.objects.is_empty(), "{:?}", page.objects);
    // A folder is not an object.
    std::fs::create_dir_all(dir.path().join("folder/inner")).expect("mkdir");
    assert!(!store.delete("folder").await.expect("delete"));
    assert_eq!(store.head("folder").await.expect("head"), None);
    let e = store
        .put("folder", body(&b"x"[..]), PutOptions::default())
        .await
        .expect_err("a folder is in the way");
    assert!(e.to_string().contains("folder"), "{e}");
}

fn s3_config(server: &S3Server, bucket: &str, prefix: Option<&str>) -> S3Config {
    S3Config {
        endpoint: Some(server.url()),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        prefix: prefix.map(str::to_owned),
        allow_http: true,
    }
}

fn s3_keys() -> S3Credentials {
    S3Credentials {
        access_key_id: "testing".into(),
        secret_access_key: "testing".into(),
    }
}

fn s3_store(server: &S3Server, bucket: &str, prefix: Option<&str>) -> S3BlobStore {
    S3BlobStore::open_with_credentials(&s3_config(server, bucket, prefix), &s3_keys())
        .expect("open the s3 bucket")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_the_conformance_suite() {
    let server = S3Server::start();
    conformance::blob::run(|limit| {
        // A fresh bucket per case.
        let mut store = s3_store(&server, &server.new_bucket(), None);
        if let Some(limit) = limit {
            store = store.with_max_object_bytes(limit);
        }
        Arc::new(store)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_the_conformance_suite_under_a_prefix() {
    let server = S3Server::start();
    let bucket = server.new_bucket();
    // Every case shares one S3 bucket, each under its own prefix, as apps would.
    let mut n = 0;
    conformance::blob::run(|limit| {
        n += 1;
        let mut store = s3_store(&server, &bucket, Some(&format!("apps/case{n}/")));
        if let Some(limit) = limit {
            store = store.with_max_object_bytes(limit);
        }
        Arc::new(store)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_prefixes_keep_stores_apart() {
    let server = S3Server::start();
    let bucket = server.new_bucket();
    let shop = s3_store(&server, &bucket, Some("shop"));
    let blog = s3_store(&server, &bucket, Some("/blog/"));
    let whole = s3_store(&server, &bucket, None);
    for (store, data) in [(&shop, "shop"), (&blog, "blog")] {
        store
            .put("x.txt", body(data), PutOptions::default())
            .await
            .expect("put");
    }
    let names = |page: updraft_store::ObjectPage| {
        page.objects.into_iter().map(|m| m.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(shop.list("", None, 10).await.expect("list")),
        ["x.txt"]
    );
    assert_eq!(
        names(whole.list("", None, 10).await.expect("list")),
        ["blog/x.txt", "shop/x.txt"]
    );
    let (_, stream) = blog.get("x.txt", None).await.expect("get").expect("exists");
    assert_eq!(read_all(stream).await.expect("read"), b"blog");
    assert!(shop.delete("x.txt").await.expect("delete"));
    assert!(whole.head("blog/x.txt").await.expect("head").is_some());
    assert!(whole.head("shop/x.txt").await.expect("head").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_multipart_puts_keep_their_content_type() {
    let server = S3Server::start();
    let store = s3_store(&server, &server.new_bucket(), None);
    let chunk = Bytes::from(vec![b'c'; 1 << 20]);
    let stream = futures::stream::iter((0..9).map(move |_| Ok(chunk.clone()))).boxed();
    let meta = store
        .put(
            "big.dat",
            stream,
            PutOptions {
                content_type: Some("text/csv".into()),
                condition: PutCondition::Always,
            },
        )
        .await
        .expect("multipart put");
    assert_eq!(meta.size, 9 << 20);
    assert_eq!(meta.content_type.as_deref(), Some("text/csv"));
    let head = store.head("big.dat").await.expect("head").expect("exists");
    assert_eq!(head.content_type.as_deref(), Some("text/csv"));
    assert_eq!(head.etag, meta.etag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_conditional_puts_are_bounded() {
    let server = S3Server::start();
    let store = s3_store(&server, &server.new_bucket(), None).with_max_conditional_bytes(1000);
    let e = store
        .put(
            "c",
            body(vec![0u8; 1001]),
            PutOptions {
                content_type: None,
                condition: PutCondition::IfNoneMatch,
            },
        )
        .await
        .expect_err("over the conditional limit");
    assert_eq!(
        e,
        BlobError::TooLarge {
            name: "c".into(),
            limit: 1000
        }
    );
    assert_eq!(store.head("c").await.expect("head"), None);
    // Unconditional puts are not bound by it.
    store
        .put("c", body(vec![0u8; 5000]), PutOptions::default())
        .await
        .expect("unconditional");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_an_unreachable_server_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = S3Config {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "us-east-1".into(),
        bucket: "gone".into(),
        prefix: None,
        allow_http: true,
    };
    let store = S3BlobStore::open_with_credentials(&config, &s3_keys()).expect("open");
    let e = tokio::time::timeout(Duration::from_secs(60), store.head("x"))
        .await
        .expect("gives up in time")
        .expect_err("unreachable");
    let text = e.to_string();
    assert!(
        text.contains("s3 bucket `gone`") && text.contains("`x`"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_plain_http_needs_allow_http() {
    let server = S3Server::start();
    let bucket = server.new_bucket();
    let mut config = s3_config(&server, &bucket, None);
    config.allow_http = false;
    let store = S3BlobStore::open_with_credentials(&config, &s3_keys()).expect("open");
    let e = tokio::time::timeout(Duration::from_secs(60), store.head("x"))
        .await
        .expect("gives up in time")
        .expect_err("plain http refused");
    assert!(e.to_string().contains("allow_http"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_https_goes_through_tls() {
    // moto speaks plain HTTP: an `https` endpoint on it fails the TLS handshake, as an error
    // (the transport brings its own rustls provider, so nothing panics for want of one).
    let server = S3Server::start();
    let bucket = server.new_bucket();
    let mut config = s3_config(&server, &bucket, None);
    config.endpoint = Some(server.url().replace("http://", "https://"));
    config.allow_http = false;
    let store = S3BlobStore::open_with_credentials(&config, &s3_keys()).expect("open");
    let e = tokio::time::timeout(Duration::from_secs(60), store.head("x"))
        .await
        .expect("gives up in time")
        .expect_err("no TLS on moto");
    assert!(
        e.to_string().contains(&format!("s3 bucket `{bucket}`")),
        "{e}"
    );
}
