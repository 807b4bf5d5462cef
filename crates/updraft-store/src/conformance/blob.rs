//! What every [`BlobStore`] must do.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::blob::{
    BlobError, BlobStore, ByteStream, MAX_NAME_BYTES, ObjectMeta, PutCondition, PutOptions, body,
    read_all,
};

/// The size limit the suite sets through `make(Some(..))`.
pub const SMALL_LIMIT: u64 = 1000;

/// Runs the suite. `make(None)` returns a fresh, empty store with its default limits;
/// `make(Some(n))` one whose [`BlobStore::max_object_bytes`] is `n`.
pub async fn run(mut make: impl FnMut(Option<u64>) -> Arc<dyn BlobStore>) {
    round_trip(make(None)).await;
    empty_object(make(None)).await;
    overwrite_changes_etag(make(None)).await;
    missing_objects(make(None)).await;
    ranges(make(None)).await;
    list_by_prefix_with_pages(make(None)).await;
    invalid_names_are_refused_everywhere(make(None)).await;
    conditional_puts(make(None)).await;
    failed_body_changes_nothing(make(None)).await;
    large_object_streams(make(None)).await;
    size_limit(make(Some(SMALL_LIMIT))).await;
    concurrent_creates_one_wins(make(None)).await;
}

/// Names no backend may take, each with what it tries.
pub fn invalid_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "",
        "a\0b",
        "nul\0",
        "line\nbreak",
        "tab\there",
        "del\u{7f}",
        "/etc/passwd",
        "/abs",
        "a\\b",
        "..\\escape",
        "a//b",
        "trailing/",
        "/",
        ".",
        "..",
        "./a",
        "a/./b",
        "../escape",
        "a/../../escape",
        "a/..",
        ".updraft-tmp/x",
        "a/.updraft-tmp",
        ".updraftsomething",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.push("x".repeat(MAX_NAME_BYTES + 1));
    names.push(format!("{}/y", "d".repeat(MAX_NAME_BYTES)));
    names
}

fn opts(condition: PutCondition) -> PutOptions {
    PutOptions {
        content_type: None,
        condition,
    }
}

/// A body of several chunks.
fn chunks(parts: &[&[u8]]) -> ByteStream {
    let parts: Vec<Result<Bytes, BlobError>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    futures::stream::iter(parts).boxed()
}

async fn put(store: &Arc<dyn BlobStore>, name: &str, data: &[u8]) -> ObjectMeta {
    store
        .put(
            name,
            body(Bytes::copy_from_slice(data)),
            PutOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("put `{name}`: {e}"))
}

async fn read(store: &Arc<dyn BlobStore>, name: &str) -> Option<Vec<u8>> {
    let (_, stream) = store
        .get(name, None)
        .await
        .unwrap_or_else(|e| panic!("get `{name}`: {e}"))?;
    Some(read_all(stream).await.expect("read body"))
}

async fn read_range(
    store: &Arc<dyn BlobStore>,
    name: &str,
    range: std::ops::Range<u64>,
) -> (ObjectMeta, Vec<u8>) {
    let (meta, stream) = store
        .get(name, Some(range.clone()))
        .await
        .unwrap_or_else(|e| panic!("get `{name}` {range:?}: {e}"))
        .unwrap_or_else(|| panic!("`{name}` exists"));
    (meta, read_all(stream).await.expect("read body"))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

async fn list_all(store: &Arc<dyn BlobStore>, prefix: &str, limit: u32) -> Vec<ObjectMeta> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let page = store
            .list(prefix, cursor.as_deref(), limit)
            .await
            .expect("list");
        assert!(
            page.objects.len() <= limit as usize,
            "a page holds at most `limit` objects"
        );
        out.extend(page.objects);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("listing `{prefix}` did not end");
}

async fn round_trip(store: Arc<dyn BlobStore>) {
    let name = "dir/hello.txt";
    assert_eq!(store.head(name).await.expect("head"), None);
    assert!(store.get(name, None).await.expect("get").is_none());
    assert!(!store.delete(name).await.expect("delete missing"));

    let before = now_us();
    let meta = store
        .put(
            name,
            chunks(&[b"hello, ", b"world"]),
            PutOptions {
                content_type: Some("text/plain".into()),
                condition: PutCondition::Always,
            },
        )
        .await
        .expect("put");
    assert_eq!(meta.name, name);
    assert_eq!(meta.size, 12);
    assert!(!meta.etag.is_empty(), "an object has an etag");
    assert!(
        (meta.modified_us - before).abs() < 600_000_000,
        "modified is about now: {} vs {before}",
        meta.modified_us
    );

    let head = store.head(name).await.expect("head").expect("exists");
    assert_eq!(head.name, name);
    assert_eq!(head.size, 12);
    assert_eq!(head.etag, meta.etag, "head has the put's etag");
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));
    assert_eq!(head.modified_us, meta.modified_us);

    let (got, stream) = store.get(name, None).await.expect("get").expect("exists");
    assert_eq!(got, head, "get has head's metadata");
    assert_eq!(read_all(stream).await.expect("body"), b"hello, world");

    // With no type given, a backend keeps or derives one from the extension.
    put(&store, "data.json", b"{}").await;
    let head = store
        .head("data.json")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.content_type.as_deref(), Some("application/json"));

    // Names with characters that need escaping somewhere survive as they are.
    for odd in [
        "a b/c d.txt",
        "ünïcödé/🔑",
        "%2F",
        "a+b&c=d?e#f",
        "~tilde",
        "x.tmp",
    ] {
        put(&store, odd, odd.as_bytes()).await;
        assert_eq!(
            read(&store, odd).await.as_deref(),
            Some(odd.as_bytes()),
            "{odd}"
        );
        assert_eq!(
            store.head(odd).await.expect("head").map(|m| m.name),
            Some(odd.to_owned())
        );
    }
    let longest = "n".repeat(200);
    let long_name = format!("{longest}/{longest}/{longest}");
    put(&store, &long_name, b"deep").await;
    assert_eq!(
        read(&store, &long_name).await.as_deref(),
        Some(&b"deep"[..])
    );

    assert!(store.delete(name).await.expect("delete"));
    assert_eq!(store.head(name).await.expect("head"), None);
    assert!(store.get(name, None).await.expect("get").is_none());
    assert!(!store.delete(name).await.expect("delete again"));
    assert!(
        !list_all(&store, "", 100)
            .await
            .iter()
            .any(|m| m.name == name),
        "a deleted object is not listed"
    );
}

async fn empty_object(store: Arc<dyn BlobStore>) {
    let meta = store
        .put("empty", body(Bytes::new()), PutOptions::default())
        .await
        .expect("put empty");
    assert_eq!(meta.size, 0);
    assert_eq!(read(&store, "empty").await.as_deref(), Some(&b""[..]));
    let head = store.head("empty").await.expect("head").expect("exists");
    assert_eq!(head.size, 0);
    let (_, bytes) = read_range(&store, "empty", 0..10).await;
    assert!(bytes.is_empty());
    let listed = list_all(&store, "", 10).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, 0);
}

async fn overwrite_changes_etag(store: Arc<dyn BlobStore>) {
    let first = put(&store, "k", b"version one").await;
    let second = put(&store, "k", b"version two").await;
    assert_ne!(first.etag, second.etag, "a rewrite changes the etag");
    assert_eq!(
        read(&store, "k").await.as_deref(),
        Some(&b"version two"[..])
    );
    let head = store.head("k").await.expect("head").expect("exists");
    assert_eq!(head.etag, second.etag);
    let third = put(&store, "k", b"v3").await;
    assert_eq!(third.size, 2, "a shorter rewrite leaves no tail");
    assert_eq!(read(&store, "k").await.as_deref(), Some(&b"v3"[..]));
}

async fn missing_objects(store: Arc<dyn BlobStore>) {
    put(&store, "present/x", b"x").await;
    for name in ["nope", "present/nope", "nope/deeper/still", "present"] {
        assert_eq!(store.head(name).await.expect("head"), None, "{name}");
        assert!(
            store.get(name, None).await.expect("get").is_none(),
            "{name}"
        );
        assert!(
            store.get(name, Some(0..4)).await.expect("get").is_none(),
            "{name}"
        );
        assert!(!store.delete(name).await.expect("delete"), "{name}");
    }
    // A name below an object is not an object either.
    assert_eq!(store.head("present/x/y").await.expect("head"), None);
}

async fn ranges(store: Arc<dyn BlobStore>) {
    let data: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    put(&store, "r", &data).await;
    for (range, want) in [
        (0..1, &data[0..1]),
        (10..20, &data[10..20]),
        (1000..2000, &data[1000..]),
        (0..1024, &data[..]),
        (1023..1024, &data[1023..]),
        (1024..1030, &data[0..0]),
        (5000..6000, &data[0..0]),
        (5..5, &data[0..0]),
    ] {
        let (meta, got) = read_range(&store, "r", range.clone()).await;
        assert_eq!(meta.size, 1024, "{range:?}: the meta is the whole object's");
        assert_eq!(got, want, "{range:?}");
    }
}

async fn list_by_prefix_with_pages(store: Arc<dyn BlobStore>) {
    let mut names: Vec<String> = (0..25).map(|i| format!("p/{i:02}")).collect();
    names.extend(
        [
            "p/sub/a",
            "p/sub/b/c",
            "p/a-c",
            "p/a.txt",
            "p/a/b",
            "p/a0",
            "p/Z",
        ]
        .map(str::to_owned),
    );
    for name in &names {
        put(&store, name, name.as_bytes()).await;
    }
    for other in ["pa", "q/x", "o", "p/.hidden", ".env", "p/.git/config"] {
        put(&store, other, other.as_bytes()).await;
    }
    let mut expected = names.clone();
    expected.sort();

    // Pages of 7, in byte order, the cursor ending after the last.
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list("p/", cursor.as_deref(), 7)
            .await
            .expect("list page");
        pages.push(page.objects.len());
        let page_names: Vec<&str> = page.objects.iter().map(|m| m.name.as_str()).collect();
        let mut sorted = page_names.clone();
        sorted.sort_unstable();
        assert_eq!(page_names, sorted, "a page is in byte order");
        for m in &page.objects {
            assert_eq!(m.size, m.name.len() as u64, "{}", m.name);
            let head = store.head(&m.name).await.expect("head").expect("exists");
            assert_eq!(m.etag, head.etag, "{}: listed etag is head's", m.name);
            assert!(
                m.content_type.is_none() || m.content_type == head.content_type,
                "{}: a listed content type is head's",
                m.name
            );
        }
        match page.cursor {
            Some(c) => {
                assert_eq!(Some(c.as_str()), page_names.last().copied());
                cursor = Some(c);
            }
            None => break,
        }
        assert!(pages.len() < 20, "pagination did not end");
    }
    assert_eq!(pages, vec![7, 7, 7, 7, 4], "32 objects in pages of 7");
    let all: Vec<String> = list_all(&store, "p/", 7)
        .await
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(
        all, expected,
        "every object under `p/`, hidden ones skipped"
    );

    let count = |prefix: &'static str| {
        let store = store.clone();
        async move { list_all(&store, prefix, 1000).await.len() }
    };
    assert_eq!(count("p/1").await, 10);
    assert_eq!(count("p/sub/").await, 2);
    assert_eq!(count("p/sub/b/").await, 1);
    assert_eq!(count("p/a").await, 4);
    assert_eq!(
        count("p").await,
        expected.len() + 1,
        "`p` also matches `pa`"
    );
    assert_eq!(
        count("").await,
        expected.len() + 3,
        "with `pa`, `q/x` and `o`"
    );
    assert_eq!(count("zzz").await, 0);
    let page = store.list("zzz", None, 10).await.expect("list");
    assert!(page.objects.is_empty() && page.cursor.is_none());
    // A cursor past everything gives an empty last page.
    let page = store.list("p/", Some("p/zzz"), 10).await.expect("list");
    assert!(page.objects.is_empty() && page.cursor.is_none());
    // Hidden objects can still be read by name.
    assert_eq!(
        read(&store, "p/.hidden").await.as_deref(),
        Some(&b"p/.hidden"[..])
    );
}

async fn invalid_names_are_refused_everywhere(store: Arc<dyn BlobStore>) {
    put(&store, "a/b", b"keep").await;
    for name in invalid_names() {
        let invalid = |what: &str, e: BlobError| {
            assert!(
                matches!(e, BlobError::InvalidName { .. }),
                "{what} {name:?}: {e}"
            );
            let text = e.to_string();
            assert!(text.starts_with("object name `"), "{text}");
        };
        invalid(
            "put",
            store
                .put(&name, body(&b"evil"[..]), PutOptions::default())
                .await
                .expect_err("put"),
        );
        invalid(
            "put if-none-match",
            store
                .put(&name, body(&b"evil"[..]), opts(PutCondition::IfNoneMatch))
                .await
                .expect_err("put"),
        );
        invalid("head", store.head(&name).await.expect_err("head"));
        invalid(
            "get",
            store.get(&name, None).await.err().expect("get refused"),
        );
        invalid(
            "get range",
            store
                .get(&name, Some(0..1))
                .await
                .err()
                .expect("get refused"),
        );
        invalid("delete", store.delete(&name).await.expect_err("delete"));
        if !name.is_empty() {
            invalid(
                "list cursor",
                store.list("", Some(&name), 10).await.expect_err("list"),
            );
        }
    }
    for prefix in ["a\0", "line\n", &"x".repeat(MAX_NAME_BYTES + 1)] {
        let e = store.list(prefix, None, 10).await.expect_err("list");
        assert!(
            matches!(e, BlobError::InvalidName { .. }),
            "{prefix:?}: {e}"
        );
    }
    let all = list_all(&store, "", 100).await;
    assert_eq!(
        all.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["a/b"],
        "nothing was written"
    );
    assert_eq!(read(&store, "a/b").await.as_deref(), Some(&b"keep"[..]));
}

async fn conditional_puts(store: Arc<dyn BlobStore>) {
    let first = store
        .put("c", body(&b"one"[..]), opts(PutCondition::IfNoneMatch))
        .await
        .expect("create when absent");
    let lost = store
        .put("c", body(&b"two"[..]), opts(PutCondition::IfNoneMatch))
        .await
        .expect_err("create when present");
    assert_eq!(lost, BlobError::PreconditionFailed { name: "c".into() });
    assert!(lost.to_string().contains("`c`"), "{lost}");
    assert_eq!(read(&store, "c").await.as_deref(), Some(&b"one"[..]));

    let stale = store
        .put(
            "c",
            body(&b"two"[..]),
            opts(PutCondition::IfMatch("not-an-etag".into())),
        )
        .await
        .expect_err("if-match with a wrong etag");
    assert_eq!(stale, BlobError::PreconditionFailed { name: "c".into() });

    let second = store
        .put(
            "c",
            body(&b"two"[..]),
            opts(PutCondition::IfMatch(first.etag.clone())),
        )
        .await
        .expect("if-match with the current etag");
    assert_ne!(second.etag, first.etag);
    assert_eq!(read(&store, "c").await.as_deref(), Some(&b"two"[..]));

    let stale = store
        .put(
            "c",
            body(&b"three"[..]),
            opts(PutCondition::IfMatch(first.etag.clone())),
        )
        .await
        .expect_err("if-match with the old etag");
    assert_eq!(stale, BlobError::PreconditionFailed { name: "c".into() });
    assert_eq!(read(&store, "c").await.as_deref(), Some(&b"two"[..]));

    let absent = store
        .put(
            "absent",
            body(&b"x"[..]),
            opts(PutCondition::IfMatch(second.etag.clone())),
        )
        .await
        .expect_err("if-match on a missing object");
    assert_eq!(
        absent,
        BlobError::PreconditionFailed {
            name: "absent".into()
        }
    );
    assert_eq!(store.head("absent").await.expect("head"), None);

    // After a delete the name is free again.
    assert!(store.delete("c").await.expect("delete"));
    store
        .put("c", body(&b"again"[..]), opts(PutCondition::IfNoneMatch))
        .await
        .expect("create after delete");
    assert_eq!(read(&store, "c").await.as_deref(), Some(&b"again"[..]));
}

/// A body of `n` chunks of `chunk` bytes, then a failure.
fn failing_body(n: usize, chunk: usize) -> ByteStream {
    let data = Bytes::from(vec![b'z'; chunk]);
    futures::stream::iter(0..=n)
        .map(move |i| {
            if i < n {
                Ok(data.clone())
            } else {
                Err(BlobError::backend("the body broke"))
            }
        })
        .boxed()
}

async fn failed_body_changes_nothing(store: Arc<dyn BlobStore>) {
    let old = put(&store, "f", b"old").await;
    // Small (one request) and large (past the first multipart part) bodies.
    for (n, chunk) in [(1usize, 1024usize), (10, 1 << 20)] {
        for condition in [
            PutCondition::Always,
            PutCondition::IfMatch(old.etag.clone()),
        ] {
            let e = store
                .put("f", failing_body(n, chunk), opts(condition.clone()))
                .await
                .expect_err("a failing body fails the put");
            assert_eq!(
                e,
                BlobError::backend("the body broke"),
                "the body's own error"
            );
            assert_eq!(read(&store, "f").await.as_deref(), Some(&b"old"[..]));
            assert_eq!(
                store.head("f").await.expect("head").map(|m| m.etag),
                Some(old.etag.clone()),
                "{condition:?}"
            );
        }
        let e = store
            .put("g/new", failing_body(n, chunk), PutOptions::default())
            .await
            .expect_err("a failing body fails the put");
        assert_eq!(e, BlobError::backend("the body broke"));
        assert_eq!(store.head("g/new").await.expect("head"), None);
    }
    let all = list_all(&store, "", 100).await;
    assert_eq!(
        all.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["f"],
        "nothing else was left behind"
    );
}

/// Chunk `i` of the large object: 64 KiB from a small xorshift seeded by `i`.
fn large_chunk(i: u64) -> Bytes {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(LARGE_CHUNK);
    while out.len() < LARGE_CHUNK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(out)
}

const LARGE_CHUNK: usize = 64 << 10;
const LARGE_CHUNKS: u64 = 1024;

async fn large_object_streams(store: Arc<dyn BlobStore>) {
    let size = LARGE_CHUNK as u64 * LARGE_CHUNKS;
    let mut want = Sha256::new();
    for i in 0..LARGE_CHUNKS {
        want.update(large_chunk(i));
    }
    let want = want.finalize();

    let stream = futures::stream::iter(0..LARGE_CHUNKS)
        .map(|i| Ok(large_chunk(i)))
        .boxed();
    let meta = store
        .put("big/object.bin", stream, PutOptions::default())
        .await
        .expect("put 64 MiB");
    assert_eq!(meta.size, size);
    let head = store
        .head("big/object.bin")
        .await
        .expect("head")
        .expect("exists");
    assert_eq!(head.size, size);
    assert_eq!(head.etag, meta.etag);

    let (got, mut stream) = store
        .get("big/object.bin", None)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.size, size);
    let mut hash = Sha256::new();
    let mut read = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        read += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(read, size);
    assert_eq!(hash.finalize(), want, "the object reads back as written");

    // A range across a chunk boundary, deep in the object.
    let at = LARGE_CHUNK as u64 * 700;
    let (_, bytes) = read_range(&store, "big/object.bin", at - 10..at + 10).await;
    let mut expected = large_chunk(699)[LARGE_CHUNK - 10..].to_vec();
    expected.extend_from_slice(&large_chunk(700)[..10]);
    assert_eq!(bytes, expected);
    assert!(store.delete("big/object.bin").await.expect("delete"));
}

async fn size_limit(store: Arc<dyn BlobStore>) {
    assert_eq!(store.max_object_bytes(), SMALL_LIMIT);
    let limit = usize::try_from(SMALL_LIMIT).expect("small");
    let exact = vec![b'e'; limit];
    let over = vec![b'o'; limit + 1];
    let in_chunks = |data: &[u8]| {
        let parts: Vec<&[u8]> = data.chunks(100).collect();
        chunks(&parts)
    };
    let too_large = |name: &str| BlobError::TooLarge {
        name: name.into(),
        limit: SMALL_LIMIT,
    };
    for condition in [PutCondition::Always, PutCondition::IfNoneMatch] {
        let e = store
            .put("big", in_chunks(&over), opts(condition))
            .await
            .expect_err("over the limit");
        assert_eq!(e, too_large("big"));
        assert_eq!(store.head("big").await.expect("head"), None);
    }
    store
        .put("ok", in_chunks(&exact), PutOptions::default())
        .await
        .expect("exactly the limit");
    let e = store
        .put("ok", in_chunks(&over), PutOptions::default())
        .await
        .expect_err("over the limit");
    assert_eq!(e, too_large("ok"));
    assert!(e.to_string().contains(&SMALL_LIMIT.to_string()), "{e}");
    assert_eq!(read(&store, "ok").await, Some(exact));
    let all = list_all(&store, "", 100).await;
    assert_eq!(
        all.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["ok"]
    );
}

async fn concurrent_creates_one_wins(store: Arc<dyn BlobStore>) {
    for round in 0..3 {
        let name = format!("race/{round}");
        let mut tasks = Vec::new();
        for writer in 0..8 {
            let store = store.clone();
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                let data = format!("writer {writer}");
                let r = store
                    .put(&name, body(data.clone()), opts(PutCondition::IfNoneMatch))
                    .await;
                (data, r)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (data, r) = task.await.expect("task");
            match r {
                Ok(_) => winners.push(data),
                Err(BlobError::PreconditionFailed { .. }) => {}
                Err(e) => panic!("a racing create failed otherwise: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one create wins: {winners:?}");
        assert_eq!(
            read(&store, &name).await.as_deref(),
            Some(winners[0].as_bytes())
        );
    }
}
