//! Scenario 9, the API gateway, driven the way a user would: `examples/api-gateway` served
//! by `updraft up`, requests on a real socket, and an upstream service of two native
//! instances started here. Versions, environments, a canary split, CORS, rate limits,
//! forged identity headers and upstream forwarding each have a part that can fail.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use updraft_test_support::{AppDir, Server};

use crate::{bin, client, copy_example, eventually};

/// One instance of the "inventory" service: answers `/healthz`, `/hang` (never, within the
/// test), `/echo` (the body back) and anything else with what it saw, as JSON.
struct Instance {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Instance {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(answer(name, stream));
            }
        });
        Self { addr, task }
    }

    fn stop(&self) {
        self.task.abort();
    }
}

/// Reads one request (head, then a `content-length` body) and answers it, closing after.
async fn answer(name: &str, mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    let reply = match target.as_str() {
        "/healthz" => b"ok".to_vec(),
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return;
        }
        "/echo" => body,
        _ => serde_json::json!({
            "instance": name,
            "target": target,
            "x_forwarded_for": header("x-forwarded-for"),
            "x_forwarded_host": header("x-forwarded-host"),
            "x_forwarded_proto": header("x-forwarded-proto"),
            "updraft_key_id": header("updraft-key-id"),
            "x_request_id": header("x-request-id"),
            "traceparent": header("traceparent"),
        })
        .to_string()
        .into_bytes(),
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reply.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&reply).await;
}

/// Sends a request; returns status, headers and body.
async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let mut r = client().request(method, server.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

async fn json(server: &Server, path: &str, headers: &[(&str, &str)]) -> Value {
    let (status, _, body) = send(server, reqwest::Method::GET, path, headers).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// `127.0.0.1:PORT`
fn authority(server: &Server) -> &str {
    server.base.trim_start_matches("http://")
}

fn version(v: &Value) -> &str {
    v["served_by"]["version"].as_str().unwrap_or("?")
}

/// The example with its upstream pointed at `a` and `b`.
async fn start_example(a: &Instance, b: &Instance) -> (tempfile::TempDir, Server) {
    let dir = copy_example("api-gateway");
    let manifest = dir.path().join("updraft.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("127.0.0.1:9801", &a.addr.to_string())
        .replace("127.0.0.1:9802", &b.addr.to_string())
        // One at a time, so a hanging request shows the cap.
        .replace("max_in_flight = 64", "max_in_flight = 1");
    std::fs::write(&manifest, text).unwrap();
    let server = Server::start(bin(), dir.path(), &[]);
    (dir, server)
}

#[tokio::test]
async fn api_gateway_example_routes_versions_hosts_and_headers() {
    let (a, b) = (Instance::start("a").await, Instance::start("b").await);
    let (_dir, server) = start_example(&a, &b).await;

    // Versions by path, with the prefix stripped before the function sees it.
    let v1 = json(&server, "/v1/products/7", &[]).await;
    assert_eq!(version(&v1), "v1", "{v1}");
    assert_eq!(v1["served_by"]["path"], "/products/7", "{v1}");
    assert_eq!(v1["product"]["id"], "7", "{v1}");
    // Versions by header, and the route without the header for everyone else.
    let by_header = json(&server, "/products", &[("api-version", "2")]).await;
    assert_eq!(version(&by_header), "v2", "{by_header}");
    assert_eq!(version(&json(&server, "/products", &[]).await), "v1");
    assert_eq!(
        version(&json(&server, "/products", &[("api-version", "3")]).await),
        "v1"
    );
    // An environment on its own host, whatever the port.
    let port = authority(&server).rsplit_once(':').unwrap().1.to_owned();
    let host = format!("staging.localhost:{port}");
    let staging = json(&server, "/products/1", &[("host", &host)]).await;
    assert_eq!(version(&staging), "v2-canary", "{staging}");

    // A client cannot forge what the gateway tells a function.
    let forged = json(
        &server,
        "/v1/products",
        &[("updraft-route", "/forged"), ("updraft-key-id", "admin")],
    )
    .await;
    assert_eq!(forged["served_by"]["route"], "/v1/products/...", "{forged}");
    assert_eq!(forged["served_by"]["key_id"], Value::Null, "{forged}");

    // A POST reaches the function with its body; a method the route lacks is 405.
    let (status, _, body) = {
        let r = client()
            .post(server.url("/v1/products"))
            .json(&serde_json::json!({ "name": "kite", "price": 25 }))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), (), r.text().await.unwrap())
    };
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("\"name\":\"kite\""), "{body}");
    let (status, headers, _) = send(&server, reqwest::Method::DELETE, "/v1/products/1", &[]).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD, POST");

    // The admin API names each route's host, headers, targets and policies.
    let routes = json(&server, "/_updraft/api/v1/routes", &[]).await;
    let named = |name: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no route `{name}` in {routes}"))
    };
    assert_eq!(named("staging")["host"], "staging.localhost");
    assert_eq!(
        named("products-by-header-v2")["headers"]["api-version"],
        "2"
    );
    let split = named("products-v2");
    assert_eq!(split["targets"][1]["target"], "function:products-canary");
    assert_eq!(split["targets"][1]["weight"], 10);
    assert_eq!(split["policies"][0], "cors:spa");
    assert!(
        server
            .stdout
            .text()
            .contains("90% function:products-v2, 10% function:products-canary")
    );
}

#[tokio::test]
async fn api_gateway_example_canary_split_cors_and_rate_limits() {
    let (a, b) = (Instance::start("a").await, Instance::start("b").await);
    let (_dir, server) = start_example(&a, &b).await;

    // 90/10 over 100 requests, exactly: the split is a smooth weighted round robin.
    let mut canary = 0;
    let mut cookies = Vec::new();
    for _ in 0..100 {
        let (status, headers, body) =
            send(&server, reqwest::Method::GET, "/v2/products", &[]).await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
        if version(&v) == "v2-canary" {
            canary += 1;
            assert!(cookie.starts_with("canary=1;"), "{cookie}");
        } else {
            assert_eq!(version(&v), "v2");
            assert!(cookie.starts_with("canary=0;"), "{cookie}");
        }
        cookies.push(cookie);
    }
    assert_eq!(canary, 10);
    // Sticky: a client holding the cookie stays where it landed, and gets no new cookie.
    for _ in 0..20 {
        let (_, headers, body) = send(
            &server,
            reqwest::Method::GET,
            "/v2/products",
            &[("cookie", "canary=1")],
        )
        .await;
        assert!(body.contains("\"version\":\"v2-canary\""), "{body}");
        assert!(!headers.contains_key("set-cookie"));
    }
    let metrics = crate::wait_metrics(&server, &["target=\"function:products-canary\""]).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("updraft_gateway_requests_total")
                && l.contains("route=\"products-v2\"")
                && l.contains("target=\"function:products-canary\"")
                && l.contains("status=\"200\"")),
        "{metrics}"
    );

    // CORS: the preflight is answered at the gateway for the SPA's origin only.
    let spa = "http://localhost:5173";
    let (status, headers, _) = send(
        &server,
        reqwest::Method::OPTIONS,
        "/v2/products",
        &[("origin", spa), ("access-control-request-method", "POST")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], spa);
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let (_, headers, _) = send(
        &server,
        reqwest::Method::OPTIONS,
        "/v2/products",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
    )
    .await;
    assert!(
        !headers.contains_key("access-control-allow-origin"),
        "{headers:?}"
    );
    let (_, headers, _) = send(
        &server,
        reqwest::Method::GET,
        "/v1/products",
        &[("origin", spa)],
    )
    .await;
    assert_eq!(headers["access-control-allow-origin"], spa);
    let (_, headers, _) = send(
        &server,
        reqwest::Method::GET,
        "/v1/products",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(!headers.contains_key("access-control-allow-origin"));

    // Rate limit per client IP (10/m, burst 5): the sixth request of one client is refused
    // with when to come back; another client (named by the trusted proxy) still gets in.
    let (statuses, refused) = burst(
        &server,
        "/public/products",
        &[("x-forwarded-for", "203.0.113.1")],
        0,
    )
    .await;
    let (headers, body) = refused.expect("a 429");
    assert!(
        body.contains("rate limit `public` reached"),
        "{body}: {statuses:?}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "{retry}");
    assert_eq!(headers["ratelimit-limit"], "5");
    assert_eq!(headers["ratelimit-remaining"], "0");
    let (status, headers, _) = send(
        &server,
        reqwest::Method::GET,
        "/public/products",
        &[("x-forwarded-for", "203.0.113.2")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["ratelimit-remaining"], "4");
}

/// Sends 12 requests as fast as they go for a client that has already spent `used` of its
/// burst of 5; checks the rest of the burst passes and no more than GCRA allows (one more
/// every 6 s) do. Returns the statuses and a 429's answer.
async fn burst(
    server: &Server,
    path: &str,
    headers: &[(&str, &str)],
    used: usize,
) -> (Vec<u16>, Option<(HeaderMap, String)>) {
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..12 {
        let (status, h, body) = send(server, reqwest::Method::GET, path, headers).await;
        statuses.push(status);
        if status == 429 {
            refused = Some((h, body));
        }
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let allowed = 5 - used + (started.elapsed().as_secs() / 6) as usize;
    assert!(
        statuses[..5 - used].iter().all(|s| *s == 200),
        "{statuses:?}"
    );
    assert!(
        accepted <= allowed,
        "{accepted} accepted, GCRA allows {allowed}: {statuses:?}"
    );
    (statuses, refused)
}

/// `updraft keys create` against the example; returns the key.
fn create_key(server: &Server, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["keys", "create", "--name", name];
    args.extend(extra);
    let (code, out, err) = crate::cli(server, &args);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("this is the only time it is shown"), "{err}");
    out.trim().to_owned()
}

#[tokio::test]
async fn api_gateway_example_api_keys_admit_scope_limit_and_revoke() {
    let (a, b) = (Instance::start("a").await, Instance::start("b").await);
    let (_dir, server) = start_example(&a, &b).await;
    let path = "/partner/products";

    // No key, a malformed one, an unknown one: 401, and the answer never echoes the token.
    let (status, headers, body) = send(&server, reqwest::Method::GET, path, &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("route `partners` needs an API key"), "{body}");
    assert!(headers.contains_key("www-authenticate"));
    for bad in ["nope", "ud_zz_zz", "ud_0123456789ab_00"] {
        let (status, _, body) =
            send(&server, reqwest::Method::GET, path, &[("x-api-key", bad)]).await;
        assert_eq!(status, 401, "{bad}: {body}");
        assert!(
            !body.contains(bad) || bad == "nope" && !body.contains("\"nope\""),
            "{body}"
        );
    }

    // A key works as `x-api-key` and as a bearer token; the function learns its id and a
    // forged `updraft-key-id` never reaches it.
    let key = create_key(&server, "partner-a", &["--route", "partners"]);
    let id = key.split('_').nth(1).unwrap().to_owned();
    assert!(key.starts_with("ud_") && key.len() > 70, "{key}");
    let v = json(
        &server,
        path,
        &[("x-api-key", &key), ("updraft-key-id", "admin")],
    )
    .await;
    assert_eq!(v["served_by"]["key_id"], id.as_str(), "{v}");
    let bearer = format!("Bearer {key}");
    let v = json(&server, path, &[("authorization", &bearer)]).await;
    assert_eq!(v["served_by"]["key_id"], id.as_str(), "{v}");
    // The wrong secret for a real id is refused.
    let wrong = format!("ud_{id}_{}", "0".repeat(64));
    let (status, _, body) = send(
        &server,
        reqwest::Method::GET,
        path,
        &[("x-api-key", &wrong)],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains(&wrong), "{body}");

    // Limited per key: this key has used 2 of its burst of 5; another key has its own.
    let (_, refused) = burst(&server, path, &[("x-api-key", &key)], 2).await;
    let (_, body) = refused.expect("a 429 for the key");
    assert!(body.contains("rate limit `partners` reached"), "{body}");
    let other = create_key(&server, "partner-b", &[]);
    let (status, headers, _) = send(
        &server,
        reqwest::Method::GET,
        path,
        &[("x-api-key", &other)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["ratelimit-remaining"], "4");

    // A key scoped to another route is 403; listing shows no secret; a revoked key is 401.
    let (code, _, err) = crate::cli(
        &server,
        &["keys", "create", "--name", "x", "--route", "inventory"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("route `inventory` takes no API keys"), "{err}");
    let (code, out, _) = crate::cli(&server, &["keys", "ls"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("partner-a") && out.contains("partner-b"),
        "{out}"
    );
    assert!(!out.contains(&key) && !out.contains(&other), "{out}");
    let (code, out, err) = crate::cli(&server, &["keys", "revoke", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("revoked API key `{id}`")), "{out}");
    let (status, _, body) = send(&server, reqwest::Method::GET, path, &[("x-api-key", &key)]).await;
    assert_eq!(status, 401);
    assert!(
        body.contains(&format!("API key `{id}` is revoked")),
        "{body}"
    );
    // The access log names keys by id, never by secret; refusals are logged too.
    assert!(
        eventually(Duration::from_secs(10), async || server
            .stdout
            .text()
            .lines()
            .any(
                |l| l.contains("\"route\":\"partners\"") && l.contains("\"status\":401")
            ))
        .await
    );
    let log = server.stdout.text();
    assert!(log.contains(&format!("\"key_id\":\"{id}\"")), "{log}");
    assert!(!log.contains(&key) && !log.contains(&other), "{log}");

    // An expired key is 401.
    let short = create_key(&server, "short", &["--expires-in", "1s"]);
    let short_id = short.split('_').nth(1).unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(10), async || {
            let (status, _, body) = send(
                &server,
                reqwest::Method::GET,
                path,
                &[("x-api-key", &short)],
            )
            .await;
            status == 401 && body.contains(&format!("API key `{short_id}` has expired"))
        })
        .await
    );
}

#[tokio::test]
async fn api_gateway_example_forwards_to_an_upstream_and_survives_an_instance() {
    let (a, b) = (Instance::start("a").await, Instance::start("b").await);
    let (_dir, server) = start_example(&a, &b).await;

    // Round robin, the prefix stripped, the query kept, x-forwarded-* set.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let v = json(
            &server,
            "/inventory/items?sku=kite",
            &[("updraft-key-id", "forged")],
        )
        .await;
        assert_eq!(v["target"], "/items?sku=kite", "{v}");
        assert_eq!(v["x_forwarded_for"], "127.0.0.1", "{v}");
        assert_eq!(v["x_forwarded_proto"], "http", "{v}");
        assert_eq!(v["x_forwarded_host"], authority(&server), "{v}");
        assert_eq!(v["updraft_key_id"], Value::Null, "{v}");
        seen.push(v["instance"].as_str().unwrap().to_owned());
    }
    assert!(
        seen.contains(&"a".to_owned()) && seen.contains(&"b".to_owned()),
        "{seen:?}"
    );

    // A client's request id and trace context go through; without them the gateway makes
    // both, the request id being the invocation id. Each request has an access log line.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, headers, body) = send(
        &server,
        reqwest::Method::GET,
        "/inventory/traced?token=secret",
        &[("x-request-id", "req-42"), ("traceparent", tp)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["x_request_id"], "req-42", "{v}");
    assert_eq!(v["traceparent"], tp, "{v}");
    assert_eq!(headers["x-request-id"], "req-42");
    let (_, headers, body) = send(&server, reqwest::Method::GET, "/inventory/untraced", &[]).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["x_request_id"],
        headers["updraft-invocation-id"].to_str().unwrap()
    );
    let made = v["traceparent"].as_str().unwrap_or_default();
    assert!(
        made.len() == 55 && made.starts_with("00-") && made.ends_with("-01"),
        "{v}"
    );
    assert!(
        eventually(Duration::from_secs(10), async || server
            .stdout
            .text()
            .lines()
            .any(|l| l.contains("\"request_id\":\"req-42\"")
                && l.contains("\"route\":\"inventory\"")
                && l.contains("\"target\":\"upstream:inventory\"")
                && l.contains("\"status\":200")
                && l.contains("\"path\":\"/inventory/traced\"")))
        .await,
        "{}",
        server.stdout.text()
    );
    assert!(
        !server.stdout.text().contains("secret"),
        "the access log holds a query"
    );

    // A 1 MiB body goes up and comes back whole.
    let payload = vec![b'x'; 1 << 20];
    let r = client()
        .post(server.url("/inventory/echo"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), payload.len());

    // An upstream that hangs answers 504 at the route's 2 s timeout; other routes go on.
    let hang = tokio::spawn({
        let url = server.url("/inventory/hang");
        async move {
            let started = Instant::now();
            let r = client().get(url).send().await.unwrap();
            (
                r.status().as_u16(),
                started.elapsed(),
                r.text().await.unwrap(),
            )
        }
    });
    assert_eq!(version(&json(&server, "/v1/products", &[]).await), "v1");
    assert!(
        !hang.is_finished(),
        "another route answered only after the hanging one"
    );
    // The route's one slot is taken by the hanging request (once it has arrived): the next
    // is refused at once. Asked until the hang is over (its 2 s timeout) or 10 s: on a busy
    // machine the hanging request can take a while to arrive.
    let mut refused = None;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && !hang.is_finished() {
        let answer = send(&server, reqwest::Method::GET, "/inventory/items", &[]).await;
        if answer.0 == 503 {
            refused = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, headers, body) = refused.expect("a 503 while the slot is taken");
    assert!(body.contains("`max_in_flight`"), "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(!hang.is_finished());
    let (status, took, body) = hang.await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert!(
        body.contains("route `inventory` did not answer within its timeout of 2s"),
        "{body}"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );

    // One instance dies: requests keep succeeding on the other (a refused connection is
    // retried once for a bodiless GET, and the instance is taken out).
    b.stop();
    for _ in 0..10 {
        let v = json(&server, "/inventory/items", &[]).await;
        assert_eq!(v["instance"], "a", "{v}");
    }
    // Both gone: 503 with when to retry, not a hang.
    a.stop();
    assert!(
        eventually(Duration::from_secs(20), async || {
            let (status, headers, _) =
                send(&server, reqwest::Method::GET, "/inventory/items", &[]).await;
            status == 503 && headers.contains_key("retry-after")
        })
        .await
    );
}

#[test]
fn gateway_mistakes_name_their_key() {
    let cases = [
        (
            "[[gateway.route]]\nroute = \"/x\"\nfunction = \"nope\"\n",
            "gateway.route[0].function",
            "function `nope` is not declared",
        ),
        (
            "[[gateway.route]]\nroute = \"/x\"\nfunction = \"hello\"\nlimit = \"tight\"\n",
            "gateway.route[0].limit",
            "limit `tight` is not declared; add a `[gateway.limit.tight]` table",
        ),
        (
            "[[gateway.route]]\nroute = \"/x\"\nupstream = \"inventory\"\n",
            "gateway.route[0].upstream",
            "`inventory` is neither a URL nor a declared upstream",
        ),
        (
            "[[gateway.route]]\nroute = \"/x\"\nfunction = \"hello\"\nupstream = \"http://127.0.0.1:1\"\n",
            "gateway.route[0]",
            "a route has one of `function`, `upstream` or `static`",
        ),
        (
            "[[gateway.route]]\nroute = \"/x\"\ntargets = [{ function = \"hello\", weight = 0 }]\n",
            "gateway.route[0].targets",
            "every weight is 0",
        ),
        (
            "[gateway.limit.l]\nrate = \"lots\"\n",
            "gateway.limit.l.rate",
            "`lots` is not a rate; write `<count>/s`",
        ),
        (
            "[gateway.cors.c]\norigins = [\"*\"]\ncredentials = true\n",
            "gateway.cors.c.origins",
            "`*` cannot go with `credentials = true`",
        ),
        (
            "[[gateway.route]]\nroute = \"/x\"\nhost = \"*.a.*\"\nfunction = \"hello\"\n",
            "gateway.route[0].host",
            "`*.a.*` is not a valid host",
        ),
        (
            "[[gateway.route]]\nroute = \"/hello\"\nfunction = \"hello\"\n",
            "gateway.route[0].route",
            "`/hello` collides with route #0 `/hello`",
        ),
    ];
    let cases = cases.into_iter().chain([
        (
            "[[gateway.route]]\nroute = \"/x\"\nfunction = \"hello\"\nmax_body = \"0\"\n",
            "gateway.route[0].max_body",
            "`0` is not a size; write it like \"128MiB\"",
        ),
        (
            "[gateway.limit.l]\nby = \"ip\"\n",
            "gateway.limit.l",
            "a limit needs `rate = \"<count>/s\"`, `quota = \"<count>/day\"` or both",
        ),
        (
            "[gateway.limit.l]\nquota = \"5/week\"\n",
            "gateway.limit.l.quota",
            "`5/week` is not a quota; write `<count>/day`",
        ),
        (
            "[gateway.auth.spa]\ntype = \"jwt\"\n",
            "gateway.auth.spa.jwks",
            "a `jwt` auth needs `jwks`",
        ),
        (
            "[gateway.auth.spa]\ntype = \"jwt\"\njwks = \"http://id.example.com/jwks\"\n",
            "gateway.auth.spa.jwks",
            "is plain http; fetch keys over https",
        ),
        (
            "[gateway.auth.spa]\ntype = \"jwt\"\njwks = \"k.json\"\nalgorithms = [\"none\"]\n",
            "gateway.auth.spa.algorithms",
            "`none` is not an algorithm",
        ),
        (
            "[gateway.auth.p]\ntype = \"api-key\"\n[[gateway.route]]\nroute = \"/x\"\nfunction = \"hello\"\nauth = [\"q\"]\n",
            "gateway.route[0].auth[0]",
            "auth `q` is not declared; add a `[gateway.auth.q]` table (declared: `p`)",
        ),
    ]);
    for (extra, key, expected) in cases {
        let app = AppDir::new(&format!(
            "[app]\nname = \"g\"\n[function.hello]\nsource = \"hello.wasm\"\n[[trigger.http]]\nroute = \"/hello\"\nfunction = \"hello\"\n{extra}"
        ));
        app.guest(updraft_test_support::guests::HELLO, "hello.wasm");
        // Exits 1 with `error: …` (asserted by `up_fails`).
        let stderr = crate::errors::up_fails(&app);
        assert!(
            stderr.contains(&format!("at `{key}`: ")) && stderr.contains(expected),
            "{extra}\nexpected `{key}`: `{expected}` in:\n{stderr}"
        );
    }
}

/// Signs `claims` with the gateway's RS256 test key (kid `rsa-1`), whose public half is in
/// the example's `keys/jwks.json`.
fn spa_token(claims: &Value) -> String {
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../updraft-gateway/tests/fixtures/jwt/rsa.pem"
    ))
    .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn api_gateway_example_jwt_admits_signed_users_and_passes_their_claims() {
    let (a, b) = (Instance::start("a").await, Instance::start("b").await);
    let (_dir, server) = start_example(&a, &b).await;
    let path = "/account/products";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://id.example.com/", "aud": "shop", "sub": "user-7",
        "exp": now + 600, "email": "ana@example.com", "roles": ["buyer"],
    });
    let token = spa_token(&claims);
    let bearer = format!("Bearer {token}");
    let v = json(
        &server,
        path,
        &[("authorization", &bearer), ("updraft-claim-sub", "admin")],
    )
    .await;
    let seen = &v["served_by"]["claims"];
    assert_eq!(seen["sub"], "user-7", "{v}");
    assert_eq!(seen["email"], "ana@example.com", "{v}");
    assert_eq!(seen["roles"], "[\"buyer\"]", "{v}");

    // Refused: none, expired, another audience, alg none; the body never holds the token.
    let expired = spa_token(&serde_json::json!({
        "iss": "https://id.example.com/", "aud": "shop", "sub": "u", "exp": now - 3600,
    }));
    let other_aud = spa_token(&serde_json::json!({
        "iss": "https://id.example.com/", "aud": "admin", "sub": "u", "exp": now + 600,
    }));
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none"}"#),
        base64_url(claims.to_string().as_bytes())
    );
    for (name, header, why) in [
        ("no token", None, "route `account` needs a JWT"),
        ("expired", Some(expired), "the token has expired"),
        (
            "audience",
            Some(other_aud),
            "audience is not the expected one",
        ),
        (
            "alg none",
            Some(none),
            "unsigned tokens (`alg: none`) are refused",
        ),
        (
            "an API key",
            Some("ud_0123456789ab_00".to_owned()),
            "the token is malformed",
        ),
    ] {
        let auth = header.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let (status, _, body) = send(&server, reqwest::Method::GET, path, &headers).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert!(body.contains(why), "{name}: {body}");
        if let Some(t) = &header {
            assert!(
                !body.contains(t.as_str()),
                "{name} echoes the token: {body}"
            );
        }
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// GCRA by the book (virtual scheduling): what a limit of `burst` at once and one more
/// every `period` accepts of requests arriving at `times`.
fn gcra_allows(times: &[Duration], period: Duration, burst: u32) -> usize {
    let tolerance = period * (burst - 1);
    let mut tat = Duration::ZERO;
    let mut accepted = 0;
    for t in times {
        if *t + tolerance >= tat {
            tat = tat.max(*t) + period;
            accepted += 1;
        }
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_accepts_what_gcra_allows_for_the_actual_send_times() {
    let app = AppDir::new(
        r#"
[app]
name = "limited"

[gateway.limit.l]
rate = "100/s"
burst = 200
by = "route"

[[gateway.route]]
name = "limited"
route = "/..."
static = "web"
limit = "l"
"#,
    );
    app.write("web/index.html", "ok");
    let server = Server::start(bin(), app.path(), &["--no-build"]);
    let url = server.url("/");
    let client = client();
    // ~500 req/s offered for 10 s, at most 64 in flight; each send time is recorded.
    let started = Instant::now();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..=5000u32 {
        tokio::time::sleep_until((started + Duration::from_millis(2) * i).into()).await;
        let permit = gate.clone().acquire_owned().await.unwrap();
        let sent = started.elapsed();
        let request = client.get(&url).send();
        tasks.push(tokio::spawn(async move {
            let status = request.await.map(|r| r.status().as_u16()).unwrap_or(0);
            drop(permit);
            (sent, status)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let span = results.last().unwrap().0;
    let offered = results.len() as f64 / span.as_secs_f64();
    assert!(
        results.iter().all(|(_, s)| *s == 200 || *s == 429),
        "only 200 and 429 expected"
    );
    let accepted = results.iter().filter(|(_, s)| *s == 200).count();
    let mut times: Vec<Duration> = results.iter().map(|(t, _)| *t).collect();
    times.sort();
    let allowed = gcra_allows(&times, Duration::from_millis(10), 200);
    let off = (accepted as f64 - allowed as f64).abs() / allowed as f64;
    eprintln!(
        "offered {offered:.0} req/s over {span:.1?}: accepted {accepted}, GCRA allows {allowed} ({:+.1}%)",
        (accepted as f64 / allowed as f64 - 1.0) * 100.0
    );
    assert!(span >= Duration::from_secs(10), "{span:?}");
    assert!(offered > 200.0, "offered only {offered:.0} req/s");
    assert!(off <= 0.05, "accepted {accepted}, GCRA allows {allowed}");
}

/// `compress = true` on a route: gzip or Brotli as the client's `Accept-Encoding` asks, for
/// a function's answer and for static files; other routes and clients that accept nothing
/// get the bytes as they are.
#[tokio::test]
async fn a_route_with_compress_answers_gzip_or_brotli_when_the_client_accepts_it() {
    use std::io::Read;

    let app = AppDir::new(
        r#"
[app]
name = "squeeze"

[function.kitchen]
source = "kitchen.wasm"

[[gateway.route]]
route = "/z/..."
function = "kitchen"
rewrite = { strip_prefix = "/z", add_prefix = "/k" }
compress = true

[[gateway.route]]
route = "/k/..."
function = "kitchen"

[[gateway.route]]
route = "/web/..."
static = "web"
rewrite = { strip_prefix = "/web" }
compress = true
"#,
    );
    app.guest(updraft_test_support::guests::KITCHEN, "kitchen.wasm");
    let page = "<p>the same line, many times over</p>\n".repeat(200);
    app.write("web/index.html", &page);
    let server = crate::start(&app);
    let text: String = "a compressible line of text\n".repeat(300);

    let ask = async |path: &str, accept: Option<&str>| {
        let mut r = client().post(server.url(path)).body(text.clone());
        if path.starts_with("/web") {
            r = client().get(server.url(path));
        }
        if let Some(a) = accept {
            r = r.header("accept-encoding", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let encoding = r
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        (encoding, r.bytes().await.unwrap().to_vec())
    };
    let gunzip = |b: &[u8]| {
        let mut out = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut out)
            .unwrap();
        out
    };
    let unbrotli = |b: &[u8]| {
        let mut out = String::new();
        brotli_decompressor::Decompressor::new(b, 4096)
            .read_to_string(&mut out)
            .unwrap();
        out
    };

    let (enc, body) = ask("/z/echo", Some("gzip")).await;
    assert_eq!(enc.as_deref(), Some("gzip"));
    assert!(body.len() < text.len() / 4, "{} bytes", body.len());
    assert_eq!(gunzip(&body), text);

    let (enc, body) = ask("/z/echo", Some("br")).await;
    assert_eq!(enc.as_deref(), Some("br"));
    assert_eq!(unbrotli(&body), text);

    let (enc, body) = ask("/web/index.html", Some("gzip, deflate, br")).await;
    assert!(enc.is_some(), "static files are compressed too");
    let shown = if enc.as_deref() == Some("br") {
        unbrotli(&body)
    } else {
        gunzip(&body)
    };
    assert_eq!(shown, page);

    // A client that accepts nothing, and a route without `compress`, get the bytes.
    let (enc, body) = ask("/z/echo", None).await;
    assert_eq!((enc, body), (None, text.clone().into_bytes()));
    let (enc, body) = ask("/k/echo", Some("gzip")).await;
    assert_eq!((enc, body), (None, text.clone().into_bytes()));

    // `updraft ls` and the routes API name the policy.
    let (_, routes) = crate::get(&server, "/_updraft/api/v1/routes").await;
    assert!(routes.contains(r#""compress""#), "{routes}");
}

/// POSTs `body` (raw bytes, as JSON) to `path`; status, the invocation id and the body as JSON.
async fn post_raw(server: &Server, path: &str, body: &'static str) -> (u16, String, Value) {
    let r = client()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["updraft-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, id, json)
}

#[tokio::test]
async fn api_gateway_example_validates_bodies_and_queries_before_the_function_runs() {
    let (a, b) = (Instance::start("a").await, Instance::start("b").await);
    let (_dir, server) = start_example(&a, &b).await;

    // A product that matches the schema reaches the function.
    let (status, accepted, created) = post_raw(
        &server,
        "/v2/products",
        r#"{"name":"kite","price":25,"tags":["toy"]}"#,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["product"]["name"], "kite", "{created}");

    // Each mismatch is 400 naming the field, the schema and the invocation.
    let cases: [(&str, &str); 6] = [
        (r#"{"name":"kite","price":-1}"#, "/price"),
        (r#"{"name":"kite"}"#, "/price"),
        (r#"{"name":"","price":1}"#, "/name"),
        (r#"{"name":"kite","price":"cheap"}"#, "/price"),
        (r#"{"name":"kite","price":1,"tags":["ok",7]}"#, "/tags/1"),
        (r#"{"name":"kite","price":1,"colour":"red"}"#, ""),
    ];
    let mut refused = Vec::new();
    for (body, field) in cases {
        let (status, id, answer) = post_raw(&server, "/v2/products", body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert_eq!(answer["part"], "body", "{answer}");
        assert_eq!(answer["schema"], "schemas/product.json", "{answer}");
        assert_eq!(answer["invocation_id"], id.as_str(), "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("schemas/product.json"), "{error}");
        if !field.is_empty() {
            assert!(error.contains(&format!("`{field}`")), "{error}");
        }
        refused.push(id);
    }
    for (body, why) in [("name=kite", "not JSON"), ("", "empty")] {
        let (status, id, answer) = post_raw(&server, "/v2/products", body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(why), "{answer}");
        refused.push(id);
    }

    // Queries: values are read as the schema's properties ask (an integer, a boolean, a list).
    let listing = json(
        &server,
        "/v2/products?limit=10&in_stock=true&tag=a&tag=b",
        &[],
    )
    .await;
    assert!(listing["products"].is_array(), "{listing}");
    for (query, field) in [
        ("limit=ten", "/limit"),
        ("limit=0", "/limit"),
        ("in_stock=maybe", "/in_stock"),
        ("tag=a&tag=b&tag=c&tag=d", "/tag"),
        ("limit=1&limit=2", "/limit"),
    ] {
        let (status, headers, body) = send(
            &server,
            reqwest::Method::GET,
            &format!("/v2/products?{query}"),
            &[],
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["part"], "query", "{answer}");
        assert_eq!(answer["field"], field, "{query}: {answer}");
        refused.push(
            headers["updraft-invocation-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    // v1 has no schema: the same mismatching body reaches its function.
    let (status, _, answer) =
        post_raw(&server, "/v1/products", r#"{"name":"kite","price":-1}"#).await;
    assert_eq!(status, 201, "{answer}");

    // No refused request ran the function: the accepted one is recorded, none of them is.
    assert!(
        eventually(Duration::from_secs(20), async || {
            send(
                &server,
                reqwest::Method::GET,
                &format!("/_updraft/api/v1/invocations/{accepted}"),
                &[],
            )
            .await
            .0 == 200
        })
        .await,
        "the accepted POST was never recorded"
    );
    for id in &refused {
        let (status, _, body) = send(
            &server,
            reqwest::Method::GET,
            &format!("/_updraft/api/v1/invocations/{id}"),
            &[],
        )
        .await;
        assert_eq!(status, 404, "refused request {id} ran a function: {body}");
    }

    // The routes API lists both checks.
    let routes = json(&server, "/_updraft/api/v1/routes", &[]).await;
    let v2 = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "products-v2")
        .unwrap();
    let policies = v2["policies"].to_string();
    assert!(
        policies.contains("body_schema:schemas/product.json")
            && policies.contains("query_schema:schemas/list-query.json"),
        "{v2}"
    );
}

#[test]
fn a_broken_schema_stops_up_naming_route_and_file() {
    let dir = copy_example("api-gateway");
    for (content, why) in [
        (None, "cannot read schema `schemas/product.json`"),
        (
            Some("{\"type\":"),
            "schema `schemas/product.json` is not JSON",
        ),
        (
            Some("{\"type\": \"thing\"}"),
            "schema `schemas/product.json` is not a valid JSON Schema",
        ),
    ] {
        let file = dir.path().join("schemas/product.json");
        match content {
            None => {
                let _ = std::fs::remove_file(&file);
            }
            Some(text) => std::fs::write(&file, text).unwrap(),
        }
        let out = std::process::Command::new(bin())
            .args(["up", "--listen", "127.0.0.1:0"])
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(why), "{why}: {stderr}");
        assert!(stderr.contains("route `products-v2`"), "{stderr}");
    }
}

/// A route behind API keys with a daily quota of 5 per key.
const QUOTA_APP: &str = r#"[app]
name = "quota"
[function.hello]
source = "hello.wasm"
[gateway.auth.partners]
type = "api-key"
[gateway.limit.daily]
quota = "5/day"
by = "key"
[[gateway.route]]
name = "partners"
route = "/hello"
auth = ["partners"]
limit = "daily"
function = "hello"
"#;

async fn with_key(server: &Server, key: &str) -> (u16, HeaderMap, String) {
    send(
        server,
        reqwest::Method::GET,
        "/hello",
        &[("x-api-key", key)],
    )
    .await
}

#[tokio::test]
async fn a_daily_quota_counts_each_key_and_survives_a_restart() {
    let app = AppDir::new(QUOTA_APP);
    app.guest(updraft_test_support::guests::HELLO, "hello.wasm");
    let mut server = Server::start(bin(), app.path(), &[]);
    let a = create_key(&server, "a", &[]);
    let b = create_key(&server, "b", &[]);

    for left in (0..5).rev() {
        let (status, headers, body) = with_key(&server, &a).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers["x-quota-limit"], "5");
        assert_eq!(headers["x-quota-remaining"], left.to_string());
    }
    let (status, headers, body) = with_key(&server, &a).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("daily quota `daily` of 5 requests is used up; it starts again at 00:00 UTC"),
        "{body}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert_eq!(headers["x-quota-remaining"], "0");
    let (status, headers, _) = with_key(&server, &b).await;
    assert_eq!(status, 200, "another key has its own quota");
    assert_eq!(headers["x-quota-remaining"], "4");

    // A graceful restart keeps the day's counts (they are in the node's state).
    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).is_some(), "no exit");
    let server = Server::start(bin(), app.path(), &[]);
    let (status, _, body) = with_key(&server, &a).await;
    assert_eq!(
        status, 429,
        "key a is still used up after a restart: {body}"
    );
    let (status, headers, _) = with_key(&server, &b).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-quota-remaining"], "3");
    let metrics = crate::wait_metrics(
        &server,
        &["updraft_gateway_quota_exceeded_total{limit=\"daily\"} 1"],
    )
    .await;
    assert!(
        metrics.contains("updraft_gateway_quota_exceeded_total{limit=\"daily\"} 1"),
        "{metrics}"
    );
}
