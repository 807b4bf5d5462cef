//! Serving: routes, params, headers, static assets, streaming, variables, logs, endpoints.

use std::time::{Duration, Instant};

use futures::StreamExt;
use updraft_test_support::{AppDir, guests};

use crate::{client, get, kitchen_app, start};

#[tokio::test]
async fn hello_example_manifest_serves_params_and_greeting() {
    let app = AppDir::new(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/hello/updraft.toml"
        ))
        .unwrap(),
    );
    // The example's component is built by its own build command; here a same-shaped guest
    // stands in at its `source` path so this test does not depend on building the example.
    app.guest(guests::HELLO, "target/wasm32-wasip2/release/hello.wasm");
    let server = crate::start_no_build(&app);
    let (status, body) = get(&server, "/hello").await;
    assert_eq!((status, body.as_str()), (200, "Hello, World!\n"));
    let r = client().get(server.url("/hello/bob")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("updraft-invocation-id"));
    let (status, body) = get(&server, "/nope").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no route matches `GET /nope`"), "{body}");
    let r = client().post(server.url("/hello")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let stdout = server.stdout.text();
    assert!(
        stdout.contains("/hello/:name"),
        "routes are printed: {stdout}"
    );
}

#[tokio::test]
async fn function_sees_updraft_headers_and_clients_cannot_forge_them() {
    let app = kitchen_app(
        r#"
[[trigger.http]]
route = "/users/:user_id/files/..."
function = "kitchen"
"#,
    );
    let server = start(&app);
    let r = client()
        .get(server.url("/k/headers?x=1"))
        .header("updraft-invocation-id", "forged")
        .header("updraft-key-id", "forged")
        .header("updraft-param-user_id", "forged")
        .send()
        .await
        .unwrap();
    let real_id = r.headers()["updraft-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let seen: serde_json::Value = r.json().await.unwrap();
    let h = &seen["headers"];
    assert_eq!(h["updraft-invocation-id"], real_id.as_str());
    assert_ne!(real_id, "forged");
    assert!(h.get("updraft-key-id").is_none(), "{seen}");
    assert!(h.get("updraft-param-user_id").is_none(), "{seen}");
    assert_eq!(h["updraft-route"], "/k/...");
    assert_eq!(h["updraft-path-info"], "/headers");
    assert!(
        h["updraft-client-addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        seen["uri"].as_str().unwrap().ends_with("/k/headers?x=1"),
        "{seen}"
    );

    // Params and the wildcard remainder, percent-decoded for the params.
    let r = client()
        .get(server.url("/users/j%C3%B6rg/files/a/b.txt"))
        .send()
        .await
        .unwrap();
    // The kitchen dispatches on path-info, so this answers 404 from the guest with its op.
    let body = r.text().await.unwrap();
    assert!(body.contains("/a/b.txt"), "{body}");
}

#[tokio::test]
async fn static_spa_with_index_fallback_and_function_routes_first() {
    let app = kitchen_app(
        r#"
[[trigger.http]]
route = "/..."
static = "web"
"#,
    );
    app.write("web/index.html", "<h1>spa</h1>");
    app.write("web/assets/app.js", "console.log(1)");
    let server = start(&app);
    let (s, body) = get(&server, "/").await;
    assert_eq!((s, body.as_str()), (200, "<h1>spa</h1>"));
    let r = client()
        .get(server.url("/assets/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let (s, body) = get(&server, "/orders/42/edit").await;
    assert_eq!(
        (s, body.as_str()),
        (200, "<h1>spa</h1>"),
        "deep links get index.html"
    );
    let (s, body) = get(&server, "/k/sleep?ms=1").await;
    assert_eq!(
        (s, body.as_str()),
        (200, "slept\n"),
        "the function route wins over `/...`"
    );
    let r = client().post(server.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 405, "static routes answer GET and HEAD");
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let app = kitchen_app("");
    let server = start(&app);
    // Request: a chunked upload of 2 MiB in 64 KiB pieces comes back byte for byte.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..32u8).map(|i| Ok(vec![i; 64 * 1024])).collect();
    let expected: Vec<u8> = chunks
        .iter()
        .flat_map(|c| c.as_ref().unwrap().clone())
        .collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = client()
        .post(server.url("/k/echo"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), expected);

    // Response: the first chunk arrives long before the last is written.
    let started = Instant::now();
    let r = client()
        .get(server.url("/k/stream?chunks=5&ms=300"))
        .send()
        .await
        .unwrap();
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    let mut rest = first.to_vec();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let total = started.elapsed();
    assert!(String::from_utf8_lossy(&rest).contains("chunk 4"));
    // The other four chunks take 1.2 s after the first: it came well before the end (timed
    // from the end, not the start, which a loaded machine can delay).
    assert!(
        first_at + Duration::from_millis(600) < total,
        "first chunk after {first_at:?} of {total:?}"
    );
    assert!(
        total >= Duration::from_millis(1400),
        "whole stream took {total:?}"
    );
}

#[tokio::test]
async fn functions_see_only_declared_variables_and_no_filesystem() {
    let app = kitchen_app(
        r#"
[variables]
api_key = { required = true, secret = true }
greeting = { default = "hello" }
unused = { default = "never shown" }

[function.kitchen.variables]
api_key = "{{ api_key }}"
message = "{{ greeting }}, world"
"#,
    );
    app.write(".env", "UPDRAFT_VAR_API_KEY=s3cret-from-dotenv\n");
    let server = start(&app);
    let (s, body) = get(&server, "/k/env").await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let expected =
        serde_json::json!({ "api_key": "s3cret-from-dotenv", "message": "hello, world" });
    assert_eq!(
        v["env"], expected,
        "environment has exactly the declared variables"
    );
    assert_eq!(
        v["config"], expected,
        "wasi:config has exactly the declared variables"
    );
    assert!(v["root_entries"].is_null(), "no filesystem: {body}");
    assert!(
        !server.stderr.text().contains("s3cret"),
        "secrets never reach the logs"
    );
}

#[tokio::test]
async fn guest_output_is_logged_with_the_invocation_id() {
    let app = kitchen_app("");
    let server = start(&app);
    let r = client().get(server.url("/k/log")).send().await.unwrap();
    let id = r.headers()["updraft-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(r.status(), 200);
    let logged = crate::logged_line(&server, &format!("to stdout from {id}")).await;
    assert!(logged.contains(&format!("invocation={id}")), "{logged}");
    assert!(logged.contains("function=kitchen"), "{logged}");
    // The stderr line is logged right after the stdout one but may reach the pipe later.
    assert!(
        server
            .stderr
            .wait_for(&format!("to stderr from {id}"), Duration::from_secs(5)),
        "{}",
        server.stderr.text()
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = kitchen_app("");
    let server = start(&app);
    let (s, body) = get(&server, "/_updraft/healthz").await;
    assert_eq!((s, body.contains("ok")), (200, true), "{body}");
    let (s, body) = get(&server, "/_updraft/readyz").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"functions\":1"), "{body}");
    get(&server, "/k/sleep?ms=1").await;
    get(&server, "/k/trap").await;
    let ok = r#"updraft_invocations_total{function="kitchen",trigger="http",outcome="ok"} 1"#;
    let error = r#"updraft_invocations_total{function="kitchen",trigger="http",outcome="error"} 1"#;
    let m = crate::wait_metrics(&server, &[ok, error]).await;
    assert!(
        m.contains(
            r#"updraft_invocations_total{function="kitchen",trigger="http",outcome="ok"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains(
            r#"updraft_invocations_total{function="kitchen",trigger="http",outcome="error"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains("updraft_invocation_duration_seconds_bucket{function=\"kitchen\""),
        "{m}"
    );
    assert!(
        m.contains("updraft_cold_starts_total{function=\"kitchen\"} 1"),
        "{m}"
    );
    let (s, body) = get(&server, "/_updraft/nothing").await;
    assert_eq!(s, 404, "{body}");
}

#[tokio::test]
async fn the_hello_example_builds_and_serves_from_a_clean_copy() {
    let dir = crate::copy_example("hello");
    // `updraft up` runs the example's own build command (cargo, wasm32-wasip2) first.
    let server = updraft_test_support::Server::start(crate::bin(), dir.path(), &[]);
    // Build output goes to stderr, a different pipe from the listening line that `start` waits for.
    assert!(
        server
            .stderr
            .wait_for("built `hello`", Duration::from_secs(5)),
        "{}",
        server.stderr.text()
    );
    let (s, body) = get(&server, "/hello/updraft").await;
    assert_eq!((s, body.as_str()), (200, "Hello, updraft!\n"));
}

#[tokio::test]
async fn static_folders_subdirectories_and_encoded_names() {
    let app = kitchen_app(
        r#"
[[trigger.http]]
route = "/app/..."
static = "web"

[[trigger.http]]
route = "/app/api"
function = "kitchen"
"#,
    );
    app.write("web/index.html", "root index");
    app.write("web/docs/index.html", "docs index");
    app.write("web/my photo.txt", "spaced");
    app.write("web/100%.txt", "percent");
    let server = start(&app);
    assert_eq!(
        get(&server, "/app/docs/").await,
        (200, "docs index".to_owned())
    );
    // No trailing slash: a redirect that keeps the mount point, then the page.
    assert_eq!(
        get(&server, "/app/docs").await,
        (200, "docs index".to_owned())
    );
    assert_eq!(
        get(&server, "/app/my%20photo.txt").await,
        (200, "spaced".to_owned())
    );
    assert_eq!(
        get(&server, "/app/100%25.txt").await,
        (200, "percent".to_owned())
    );
    assert_eq!(get(&server, "/app").await, (200, "root index".to_owned()));
    // Hidden files are never served, however the path is written.
    app.write("web/.env", "SECRET=1");
    app.write("web/.git/config", "secret");
    for hidden in [
        "/app/.env",
        "/app/%2eenv",
        "/app/%2Egit/config",
        "/app/.git/config",
        "/app/docs/../.env",
        "/app/docs/%2e%2e/.env",
    ] {
        let (s, body) = get(&server, hidden).await;
        assert_eq!(s, 404, "{hidden}: {body}");
        assert!(
            !body.contains("secret") && !body.contains("SECRET"),
            "{hidden}: {body}"
        );
    }
    // An exact route beats the wildcard that would also match it.
    let (s, body) = get(&server, "/app/api").await;
    assert_eq!(s, 404, "the kitchen answers (no path-info op): {body}");
    assert!(body.contains("kitchen has no"), "{body}");
}

/// A self-signed certificate for `localhost` and 127.0.0.1, made with `openssl`.
fn self_signed(app: &AppDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (app.path().join("cert.pem"), app.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // A leaf, not a CA: webpki refuses a CA certificate as a server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Sends one HTTP/1.1 GET over TLS, trusting only `ca`; returns the whole answer.
async fn https_get(addr: &str, ca: &std::path::Path, path: &str) -> std::io::Result<String> {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await?;
    Ok(answer)
}

#[tokio::test]
async fn tls_serves_functions_and_the_admin_api_over_https() {
    let app = kitchen_app("");
    let (cert, key) = self_signed(&app);
    let server = updraft_test_support::Server::start(
        crate::bin(),
        app.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let addr = server.base.trim_start_matches("https://").to_owned();
    let answer = https_get(&addr, &cert, "/k/headers").await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(r#""uri":"https://"#),
        "the function sees https: {answer}"
    );
    let answer = https_get(&addr, &cert, "/_updraft/healthz").await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Nothing is served in clear on the TLS port.
    let plain = client()
        .get(format!("http://{addr}/k/headers"))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()),
        "plain HTTP was served on the TLS port"
    );
    // And the listener is still up after a client that never finishes its handshake.
    let _silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert!(
        https_get(&addr, &cert, "/k/headers")
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}

#[test]
fn tls_files_that_do_not_fit_are_refused_with_the_file() {
    let app = kitchen_app("");
    let (cert, _) = self_signed(&app);
    app.write("not-a-key.pem", "hello");
    let out = updraft_test_support::run(
        crate::bin(),
        &[
            "up",
            app.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            app.path().join("not-a-key.pem").to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot read the TLS key")
            && err.contains("not-a-key.pem")
            && err.contains("--tls-key"),
        "{err}"
    );
}

/// What the host offers, read here independently of updraft's own probe: no swap and a
/// kernel of 6.7 or later (`PAGEMAP_SCAN`) mean only dirtied pages are reset.
fn expected_memory_reset() -> &'static str {
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swaps.lines().skip(1).any(|l| !l.trim().is_empty()) {
        return "no dirty-page scan: swap is on";
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) >= (6, 7) {
        "memory reset: only the pages an instance dirtied (PAGEMAP_SCAN)"
    } else {
        "no dirty-page scan: the kernel does not offer the PAGEMAP_SCAN ioctl"
    }
}

#[tokio::test]
async fn up_and_the_metrics_say_how_the_engine_resets_memory() {
    let app = kitchen_app("");
    let server = start(&app);
    let out = server.stdout.text();
    let engine = out
        .lines()
        .find(|l| l.starts_with("engine: "))
        .unwrap_or_else(|| panic!("`up` names its engine settings:\n{out}"));
    assert!(
        engine.starts_with("engine: pooling allocator, up to 1000 instances of at most 128 MiB"),
        "{engine}"
    );
    let expected = expected_memory_reset();
    assert!(
        engine.contains(expected),
        "expected `{expected}` in: {engine}"
    );

    assert_eq!(get(&server, "/k/echo").await.0, 200);
    let metrics = crate::wait_metrics(&server, &["updraft_invocations_total"]).await;
    let dirty = if engine.contains("only the pages an instance dirtied") {
        "updraft_engine_dirty_page_reset 1"
    } else {
        "updraft_engine_dirty_page_reset 0"
    };
    for line in [
        dirty,
        "updraft_engine_pooling 1",
        "updraft_engine_max_instances 1000",
        "updraft_instances ",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(line)),
            "no `{line}` in:\n{metrics}"
        );
    }
}
