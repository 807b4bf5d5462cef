//! What every [`KvStore`] must do.

use std::sync::Arc;

use crate::kv::{KvStore, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Runs the suite. `make` returns a fresh, empty store each call.
pub async fn run(mut make: impl FnMut() -> Arc<dyn KvStore>) {
    basics(make()).await;
    awkward_keys(make()).await;
    limits(make()).await;
    list_by_prefix_with_pages(make()).await;
    increments(make()).await;
    compare_and_swap(make()).await;
    concurrent_updates_lose_nothing(make()).await;
    batches(make()).await;
}

async fn basics(kv: Arc<dyn KvStore>) {
    assert_eq!(kv.get("k").await.expect("get"), None);
    assert!(!kv.exists("k").await.expect("exists"));
    kv.set("k", b"one").await.expect("set");
    assert_eq!(
        kv.get("k").await.expect("get").as_deref(),
        Some(&b"one"[..])
    );
    kv.set("k", b"two").await.expect("overwrite");
    assert_eq!(
        kv.get("k").await.expect("get").as_deref(),
        Some(&b"two"[..])
    );
    assert!(kv.exists("k").await.expect("exists"));
    kv.set("empty", b"").await.expect("empty value");
    assert_eq!(
        kv.get("empty").await.expect("get").as_deref(),
        Some(&b""[..])
    );
    kv.delete("k").await.expect("delete");
    assert_eq!(kv.get("k").await.expect("get"), None);
    kv.delete("never-there")
        .await
        .expect("deleting a missing key is fine");
}

/// Keys that trip up narrower alphabets (NATS subjects, URLs, file names).
pub fn awkward_key_set() -> Vec<String> {
    let mut keys: Vec<String> = [
        "a",
        "a/b",
        "a.b",
        "a..b",
        ".",
        "a b",
        "a\tb",
        "*",
        ">",
        "a*b>c",
        "a:b",
        "%2F",
        "a\\b",
        "ünïcödé/🔑",
        "-",
        "_",
        "~tilde",
        "UPPER",
        "0",
        "00",
        "1",
        "9",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    keys.push("x".repeat(MAX_KEY_BYTES));
    keys
}

async fn awkward_keys(kv: Arc<dyn KvStore>) {
    let keys = awkward_key_set();
    for (i, k) in keys.iter().enumerate() {
        kv.set(k, i.to_string().as_bytes())
            .await
            .expect("set awkward key");
    }
    for (i, k) in keys.iter().enumerate() {
        let got = kv.get(k).await.expect("get awkward key");
        assert_eq!(got, Some(i.to_string().into_bytes()), "key {k:?}");
    }
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = kv.list("", cursor.as_deref(), 5).await.expect("list");
        listed.extend(page.keys);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "list returns every key once, in byte order");
}

async fn limits(kv: Arc<dyn KvStore>) {
    assert!(kv.set("", b"x").await.is_err(), "empty key");
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    let err = kv.set(&long, b"x").await.expect_err("key over the limit");
    assert!(err.to_string().contains("over the limit"), "{err}");
    let big = vec![7u8; MAX_VALUE_BYTES];
    kv.set("big", &big).await.expect("value at the limit");
    assert_eq!(
        kv.get("big").await.expect("get").map(|v| v.len()),
        Some(MAX_VALUE_BYTES)
    );
    let err = kv
        .set("bigger", &vec![7u8; MAX_VALUE_BYTES + 1])
        .await
        .expect_err("value over the limit");
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert_eq!(kv.get("bigger").await.expect("get"), None);
}

async fn list_by_prefix_with_pages(kv: Arc<dyn KvStore>) {
    for i in 1..=25 {
        kv.set(&format!("p/{i}"), b"v").await.expect("set");
    }
    kv.set("o", b"v").await.expect("set");
    kv.set("q/1", b"v").await.expect("set");
    kv.set("p", b"v").await.expect("set");
    let first = kv.list("p/", None, 10).await.expect("list");
    assert_eq!(first.keys.len(), 10);
    assert!(first.cursor.is_some());
    let mut all = first.keys.clone();
    let mut cursor = first.cursor;
    while let Some(c) = cursor {
        let page = kv.list("p/", Some(&c), 10).await.expect("list page");
        all.extend(page.keys);
        cursor = page.cursor;
    }
    let mut expected: Vec<String> = (1..=25).map(|i| format!("p/{i}")).collect();
    expected.sort();
    assert_eq!(all, expected);
    let ones = kv.list("p/1", None, 100).await.expect("list");
    assert_eq!(ones.keys.len(), 11, "{:?}", ones.keys);
    assert_eq!(ones.cursor, None);
    let none = kv.list("zzz", None, 10).await.expect("list");
    assert!(none.keys.is_empty() && none.cursor.is_none());
}

async fn increments(kv: Arc<dyn KvStore>) {
    assert_eq!(kv.increment("n", 1).await.expect("first increment"), 1);
    assert_eq!(kv.increment("n", 41).await.expect("increment"), 42);
    assert_eq!(kv.increment("n", -2).await.expect("decrement"), 40);
    assert_eq!(kv.get("n").await.expect("get").as_deref(), Some(&b"40"[..]));
    kv.set("word", b"hello").await.expect("set");
    let err = kv.increment("word", 1).await.expect_err("not a number");
    assert!(err.to_string().contains("not an integer"), "{err}");
}

async fn compare_and_swap(kv: Arc<dyn KvStore>) {
    assert!(kv.compare_and_swap("c", None, b"1").await.expect("create"));
    assert!(
        !kv.compare_and_swap("c", None, b"x")
            .await
            .expect("exists already")
    );
    assert!(
        !kv.compare_and_swap("c", Some(b"0"), b"x")
            .await
            .expect("stale")
    );
    assert!(
        kv.compare_and_swap("c", Some(b"1"), b"2")
            .await
            .expect("swap")
    );
    assert_eq!(kv.get("c").await.expect("get").as_deref(), Some(&b"2"[..]));
}

async fn concurrent_updates_lose_nothing(kv: Arc<dyn KvStore>) {
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                kv.increment("counter", 1).await.expect("increment");
                // A CAS loop, as a guest would write it.
                loop {
                    let cur = kv.get("cas").await.expect("get");
                    let n: u64 = cur
                        .as_deref()
                        .map(|v| String::from_utf8_lossy(v).parse().expect("number"))
                        .unwrap_or(0);
                    if kv
                        .compare_and_swap("cas", cur.as_deref(), (n + 1).to_string().as_bytes())
                        .await
                        .expect("cas")
                    {
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(
        kv.get("counter").await.expect("get").as_deref(),
        Some(&b"200"[..])
    );
    assert_eq!(
        kv.get("cas").await.expect("get").as_deref(),
        Some(&b"200"[..])
    );
}

async fn batches(kv: Arc<dyn KvStore>) {
    let entries: Vec<(String, Vec<u8>)> = (0..10).map(|i| (format!("b{i}"), vec![i])).collect();
    kv.set_many(&entries).await.expect("set_many");
    let keys: Vec<String> = vec!["b0".into(), "missing".into(), "b9".into()];
    let got = kv.get_many(&keys).await.expect("get_many");
    assert_eq!(got, vec![Some(vec![0]), None, Some(vec![9])]);
    kv.delete_many(&["b0".to_owned(), "b1".to_owned()])
        .await
        .expect("delete_many");
    assert_eq!(kv.list("b", None, 100).await.expect("list").keys.len(), 8);
    // A batch with one bad entry changes nothing.
    let bad = vec![("ok".to_owned(), vec![1]), (String::new(), vec![2])];
    assert!(kv.set_many(&bad).await.is_err());
    assert_eq!(kv.get("ok").await.expect("get"), None);
}
