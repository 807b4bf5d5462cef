//! Limits: traps, timeouts, memory caps, body size, concurrency, outbound hosts.

use std::time::{Duration, Instant};

use crate::{client, get, kitchen_app, start};

#[tokio::test]
async fn a_trap_answers_500_with_the_invocation_id_and_serving_goes_on() {
    let app = kitchen_app("");
    let server = start(&app);
    let r = client().get(server.url("/k/trap")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let id = r.headers()["updraft-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["invocation_id"], id.as_str());
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("function `kitchen` failed"),
        "{body}"
    );
    for _ in 0..3 {
        assert_eq!(get(&server, "/k/sleep?ms=1").await.0, 200);
    }
}

#[tokio::test]
async fn an_infinite_loop_times_out_with_504_without_blocking_others() {
    let app = kitchen_app(
        r#"
[function.spin]
source = "kitchen.wasm"
timeout = "5s"

[[trigger.http]]
route = "/spin/..."
function = "spin"
"#,
    );
    let server = start(&app);
    let spin_url = server.url("/spin/spin");
    let started = Instant::now();
    let spinner = tokio::spawn(async move { client().get(spin_url).send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Other requests keep being answered while the loop burns a core: each well before
    // the loop's 5 s timeout would have freed a blocked worker (with room for a loaded
    // 2-core machine, where the loop has one of the two cores).
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(&server, "/k/sleep?ms=1").await.0, 200);
        assert!(
            t.elapsed() < Duration::from_millis(3000),
            "took {:?}",
            t.elapsed()
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(4800),
        "others were blocked by the loop"
    );
    let r = spinner.await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 504);
    let body = r.text().await.unwrap();
    assert!(body.contains("timeout of 5s"), "{body}");
    assert!(
        took >= Duration::from_millis(4950) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let needle = r#"function="spin",trigger="http",outcome="timeout"} 1"#;
    let m = crate::wait_metrics(&server, &[needle]).await;
    assert!(m.contains(needle), "{m}");
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_the_cap_and_host_memory_stays_bounded() {
    let app = kitchen_app(
        r#"
[function.bomb]
source = "kitchen.wasm"
memory = "32MiB"

[[trigger.http]]
route = "/bomb/..."
function = "bomb"
"#,
    );
    let server = start(&app);
    // Under the cap works.
    let (s, body) = get(&server, "/bomb/alloc?mb=8").await;
    assert_eq!((s, body.as_str()), (200, "allocated 8 MiB\n"));
    let mut bombs = Vec::new();
    for _ in 0..8 {
        let url = server.url("/bomb/alloc?mb=4096");
        bombs.push(tokio::spawn(async move {
            client().get(url).send().await.unwrap()
        }));
    }
    for b in bombs {
        let r = b.await.unwrap();
        assert_eq!(r.status(), 500);
        let body = r.text().await.unwrap();
        assert!(
            body.contains("exceeded its memory limit of 32 MiB"),
            "{body}"
        );
    }
    let rss = server.rss_kib().unwrap();
    assert!(rss < 400 * 1024, "host RSS {rss} KiB after 8 bombs");
    assert_eq!(get(&server, "/k/sleep?ms=1").await.0, 200);
}

#[tokio::test]
async fn each_request_gets_memory_that_no_earlier_instance_touched() {
    // Every `/leftover` call marks pages of a static buffer and first checks that none of an
    // earlier instance's marks survived the reset of its pooled slot.
    let app = kitchen_app("");
    let server = start(&app);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = server.url("/k/leftover");
        tasks.spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..40 {
                let r = client().get(&url).send().await.unwrap();
                answers.push((r.status().as_u16(), r.text().await.unwrap()));
            }
            answers
        });
    }
    let mut answers = Vec::new();
    while let Some(batch) = tasks.join_next().await {
        answers.extend(batch.unwrap());
    }
    assert_eq!(answers.len(), 320);
    let dirty: Vec<_> = answers
        .iter()
        .filter(|(s, body)| *s != 200 || body != "clean\n")
        .collect();
    assert!(dirty.is_empty(), "{dirty:?}");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let app = kitchen_app("");
    let server = start(&app);
    let big = vec![b'x'; 11 << 20];
    // Declared length over the limit.
    let r = client()
        .post(server.url("/k/echo"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("over the limit of 10485760 bytes")
    );
    // Chunked, with no declared length, to a function that reads the body before answering.
    let chunked = || {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            big.chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
        reqwest::Body::wrap_stream(futures::stream::iter(chunks))
    };
    let r = client()
        .post(server.url("/k/count"))
        .body(chunked())
        .send()
        .await;
    // The server may answer before reading the whole upload, and close the connection.
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    // A function that streams its answer while reading has already sent 200: its response
    // is cut off rather than completed, so the client never sees a whole echo.
    if let Ok(r) = client()
        .post(server.url("/k/echo"))
        .body(chunked())
        .send()
        .await
    {
        let status = r.status().as_u16();
        let body = r.bytes().await;
        assert!(
            status == 413 || body.is_err(),
            "an oversized chunked echo ended as if it were whole ({status}, {:?} bytes)",
            body.map(|b| b.len())
        );
    }
    // A function that answers at once and ends its answer cleanly although its read failed:
    // the gateway cuts the answer, logs it and counts it.
    let r = client()
        .post(server.url("/k/drain"))
        .body(chunked())
        .send()
        .await
        .unwrap();
    // (Its headers go out before it reads; 413 only if the whole upload raced ahead.)
    if r.status() != 413 {
        assert_eq!(r.status(), 200);
        let body = r.bytes().await;
        assert!(body.is_err(), "the cut answer looked whole: {body:?}");
        let cut =
            r#"updraft_responses_cut_total{function="kitchen",reason="request_body_limit"} 1"#;
        assert!(crate::wait_metrics(&server, &[cut]).await.contains(cut));
        crate::stderr_shows(&server, "the response is cut off").await;
    }
    // A body at the limit is fine.
    let r = client()
        .post(server.url("/k/echo"))
        .body(vec![b'y'; 10 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 10 << 20);
}

#[tokio::test]
async fn over_the_concurrency_cap_answers_503_with_retry_after() {
    let app = kitchen_app(
        r#"
[function.single]
source = "kitchen.wasm"
max_concurrency = 1

[[trigger.http]]
route = "/single/..."
function = "single"
"#,
    );
    let server = start(&app);
    let url = server.url("/single/sleep?ms=3000");
    let busy = tokio::spawn(async move { client().get(url).send().await.unwrap() });
    // Wait until the first request holds the only slot (it logs as it starts sleeping; the
    // terminal gets the line at once, the logs API only after the next batch is stored).
    crate::stderr_shows(&server, "sleeping 3000 ms").await;
    let r = client()
        .get(server.url("/single/sleep?ms=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().await.unwrap().contains("concurrency limit (1)"));
    assert_eq!(busy.await.unwrap().status(), 200);
    // The slot frees when the instance is dropped, just after its response went out.
    assert!(
        crate::eventually(Duration::from_secs(30), async || {
            get(&server, "/single/sleep?ms=1").await.0 == 200
        })
        .await,
        "the slot is free again"
    );
}

/// A small HTTP server on loopback answering `pong`, on its own thread.
fn pong_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10) {
            let Ok(mut s) = stream else { return };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            // Read the whole request head before answering.
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npong");
            // Keep the connection open until the client closes it, as a keep-alive server does.
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    port
}

#[tokio::test]
async fn outbound_http_only_reaches_declared_hosts() {
    let port = pong_server();
    let app = kitchen_app(&format!(
        r#"
[function.allowed]
source = "kitchen.wasm"
allowed_outbound_hosts = ["http://127.0.0.1:{port}"]

[[trigger.http]]
route = "/allowed/..."
function = "allowed"
"#
    ));
    let server = start(&app);
    let target = format!("http://127.0.0.1:{port}/");
    let (s, body) = get(&server, &format!("/allowed/fetch?url={target}")).await;
    assert_eq!((s, body.as_str()), (200, "upstream 200: pong"));
    // `kitchen` declares no hosts: denied, and the denial is logged.
    let (s, body) = get(&server, &format!("/k/fetch?url={target}")).await;
    // (wstd reports the refused request as a failed body write or as `HttpRequestDenied`,
    // whichever of its two halves notices first.)
    assert_eq!(s, 502, "{body}");
    assert!(
        body.starts_with("fetch failed") && !body.contains("pong"),
        "{body}"
    );
    assert!(
        server.stderr.wait_for("denied", Duration::from_secs(5)),
        "{}",
        server.stderr.text()
    );
    assert!(
        server
            .stderr
            .wait_for("allowed_outbound_hosts", Duration::from_secs(5)),
        "{}",
        server.stderr.text()
    );
}

#[tokio::test]
async fn headers_over_64_kib_get_431() {
    let app = kitchen_app("");
    let server = start(&app);
    let r = client()
        .get(server.url("/k/headers"))
        .header("x-big", "a".repeat(70 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let r = client()
        .get(server.url("/k/headers"))
        .header("x-fine", "a".repeat(16 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_timeout_after_the_headers_breaks_the_body_instead_of_ending_it() {
    let app = kitchen_app(
        r#"
[function.short]
source = "kitchen.wasm"
timeout = "2s"

[[trigger.http]]
route = "/short/..."
function = "short"
"#,
    );
    let server = start(&app);
    // Ten chunks 300 ms apart: the headers go out at once, the timeout (2 s, room for a slow
    // start) hits mid-stream.
    let r = client()
        .get(server.url("/short/stream?chunks=10&ms=300"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await;
    assert!(
        body.is_err(),
        "a truncated body must not look complete: {body:?}"
    );
    let needle = r#"function="short",trigger="http",outcome="timeout"} 1"#;
    assert!(
        crate::wait_metrics(&server, &[needle])
            .await
            .contains(needle)
    );
}

#[tokio::test]
async fn a_trap_after_the_headers_breaks_the_body_instead_of_ending_it() {
    let app = kitchen_app("");
    let server = start(&app);
    let r = client()
        .get(server.url("/k/stream?chunks=6&ms=20&trap_after=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await;
    assert!(
        body.is_err(),
        "a body cut by a trap must not look complete: {body:?}"
    );
    let needle = r#"function="kitchen",trigger="http",outcome="error"} 1"#;
    assert!(
        crate::wait_metrics(&server, &[needle])
            .await
            .contains(needle)
    );
}

/// A client that hangs up mid-response makes the guest's next write fail; the record says
/// the client left first, so an operator does not hunt for a bug in the function.
#[tokio::test]
async fn a_client_leaving_mid_response_is_named_in_the_invocation_record() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = kitchen_app("");
    let server = start(&app);
    let addr = server
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /k/stream?chunks=200&ms=20 HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let got_first_chunk = tokio::time::timeout(Duration::from_secs(20), async {
        while !String::from_utf8_lossy(&seen).contains("chunk 0") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        got_first_chunk.is_ok() && String::from_utf8_lossy(&seen).contains("chunk 0"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    drop(tcp);

    let mut records = String::new();
    let named = crate::eventually(Duration::from_secs(30), async || {
        records = get(
            &server,
            "/_updraft/api/v1/invocations?function=kitchen&limit=5",
        )
        .await
        .1;
        records.contains("the client closed the connection before the response was complete")
    })
    .await;
    assert!(named, "{records}\n{}", server.stderr.text());
    assert!(
        !server.stderr.text().contains(" WARN "),
        "a client leaving is not a warning: {}",
        server.stderr.text()
    );
}

/// Reads one request (head, then its `content-length` or chunked body) and answers 200 with
/// how many body bytes it got (chunk framing included); a stand-in upstream service.
async fn counting_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let want: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let chunked = head.contains("transfer-encoding: chunked");
                while if chunked {
                    !buf[head_end..].ends_with(b"0\r\n\r\n")
                } else {
                    buf.len() - head_end < want
                } {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let reply = format!("{}", buf.len() - head_end);
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                            reply.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_route_body_limit_holds_for_functions_and_upstreams() {
    let (upstream, task) = counting_upstream().await;
    let app = kitchen_app(&format!(
        r#"
[[gateway.route]]
name = "small"
route = "/small/..."
max_body = "1KiB"
rewrite = {{ strip_prefix = "/small", add_prefix = "/k" }}
function = "kitchen"

[[gateway.route]]
name = "small-upstream"
route = "/up/..."
max_body = "1KiB"
upstream = "http://{upstream}"
"#
    ));
    let server = start(&app);
    let post = async |path: &str, body: Vec<u8>| crate::post(&server, path, body).await;
    // Under the route's limit: the function echoes it, the upstream counts it.
    let (status, body) = post("/small/echo", vec![b'x'; 1000]).await;
    assert_eq!((status, body.len()), (200, 1000));
    let (status, body) = post("/up/count", vec![b'x'; 1000]).await;
    assert_eq!((status, body.as_str()), (200, "1000"));
    // Over it: 413 naming the route's limit, before the target sees anything.
    for path in ["/small/echo", "/up/count"] {
        let (status, body) = post(path, vec![b'x'; 2048]).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert!(
            body.contains("over the limit of 1024 bytes"),
            "{path}: {body}"
        );
    }
    // The node's limit still holds elsewhere: 2 KiB is fine on the function's own route.
    let (status, body) = post("/k/echo", vec![b'x'; 2048]).await;
    assert_eq!((status, body.len()), (200, 2048));
    // A streamed (chunked) body over the limit to the upstream: 413, not a partial forward.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b'y'; 512])).collect();
    if let Ok(r) = client()
        .post(server.url("/up/count"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
    {
        assert_eq!(r.status(), 413, "{:?}", r.text().await);
    }
    // The routes API shows the limit.
    let (_, routes) = get(&server, "/_updraft/api/v1/routes").await;
    assert!(routes.contains("max_body:1024"), "{routes}");
    task.abort();
}

#[tokio::test]
async fn a_route_header_limit_answers_431_before_the_target() {
    let app = kitchen_app(
        r#"
[[gateway.route]]
name = "tight"
route = "/tight/..."
max_headers = "1KiB"
rewrite = { strip_prefix = "/tight", add_prefix = "/k" }
function = "kitchen"
"#,
    );
    let server = start(&app);
    let send = async |path: &str, header_len: usize| {
        let r = client()
            .post(server.url(path))
            .header("x-filler", "f".repeat(header_len))
            .body("hello")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (status, body) = send("/tight/echo", 100).await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    let (status, body) = send("/tight/echo", 2000).await;
    assert_eq!(status, 431, "{body}");
    assert!(
        body.contains("over route `tight`'s `max_headers` of 1024"),
        "{body}"
    );
    // Other routes keep the listener's limit.
    let (status, body) = send("/k/echo", 2000).await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    let (_, routes) = get(&server, "/_updraft/api/v1/routes").await;
    assert!(routes.contains("max_headers:1024"), "{routes}");
}

#[tokio::test]
async fn reuse_serves_up_to_its_count_from_one_instance_and_a_trap_ends_it() {
    // `/served` counts the requests its instance has served, in a guest global. The same
    // component on `/r/...` as a function with `reuse = 3`.
    let app = kitchen_app(
        r#"
[function.reused]
source = "kitchen.wasm"
reuse = 3

[[trigger.http]]
route = "/r/..."
function = "reused"
"#,
    );
    let server = start(&app);
    for _ in 0..3 {
        assert_eq!(get(&server, "/k/served").await, (200, "1\n".to_owned()));
    }
    let (s, info) = get(&server, "/_updraft/api/v1/functions/reused").await;
    assert!(s == 200 && info.contains("\"reuse\":3"), "{info}");
    // One request at a time: the kept instance serves the next, three requests each.
    let mut counts = Vec::new();
    for _ in 0..7 {
        let (s, body) = get(&server, "/r/served").await;
        assert_eq!(s, 200, "{body}");
        counts.push(body.trim().to_owned());
    }
    assert_eq!(counts, ["1", "2", "3", "1", "2", "3", "1"]);
    // A trap ends the instance (it had served one): the two `/log` calls and the `/served`
    // after them are a fresh instance's three requests. A reused instance's output is
    // logged under the invocation that wrote it.
    assert_eq!(get(&server, "/r/trap").await.0, 500);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = client().get(server.url("/r/log")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        ids.push(
            r.headers()["updraft-invocation-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(get(&server, "/r/served").await, (200, "3\n".to_owned()));
    for id in &ids {
        let logged = crate::logged_line(&server, &format!("to stdout from {id}")).await;
        assert!(logged.contains(&format!("invocation={id}")), "{logged}");
    }
    // Concurrent requests on kept instances each get their own answer: 8 clients echo 25
    // distinct bodies each.
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..8 {
        let url = server.url("/r/echo");
        tasks.spawn(async move {
            let mut wrong = Vec::new();
            for i in 0..25 {
                let sent = format!("client {c} request {i}");
                let r = client().post(&url).body(sent.clone()).send().await.unwrap();
                let status = r.status().as_u16();
                let got = r.text().await.unwrap();
                if status != 200 || got != sent {
                    wrong.push((sent, status, got));
                }
            }
            wrong
        });
    }
    let mut wrong = Vec::new();
    while let Some(batch) = tasks.join_next().await {
        wrong.extend(batch.unwrap());
    }
    assert!(wrong.is_empty(), "{wrong:?}");
}
