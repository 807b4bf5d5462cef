//! The capability-escape suite (issue #9): one app whose functions try ways out of their
//! sandbox (files, environment, sockets, name lookup, outbound hosts, stores and databases,
//! topics and queues, variables, forged headers and trailers, oversized input, memory, CPU,
//! a storm of outbound requests, log floods). Each attempt is one that would work were its
//! check missing, and each must be denied, and logged where the platform logs denials.
//!
//! Every network target is on loopback: the local servers below (127.0.0.1, 127.0.0.2 and
//! ::1, all on ephemeral ports), `localhost`, or addresses that name 127.0.0.1. A broken deny
//! check sends nothing off this machine.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use updraft_test_support::{AppDir, Server, guests};

use crate::{client, eventually, start};

/// A secret only the `keeper` function may see, under every name it has.
const VAULT_KEY: &str = "hunter2-vault-key";
/// A value only `keeper` may read, in its kv store `vault` and its database `vault-db`.
const VAULT_GOLD: &str = "vault-gold-5e1d";

/// A loopback HTTP server that counts connections and records each request's target. It
/// answers `pong`, or for `/to/<url>` a 302 to `<url>`.
#[derive(Clone)]
struct Target {
    connections: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Target {
    fn serve(listener: TcpListener) -> Self {
        let target = Target {
            connections: Arc::default(),
            paths: Arc::default(),
        };
        let t = target.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                t.connections.fetch_add(1, Ordering::SeqCst);
                let paths = t.paths.clone();
                std::thread::spawn(move || answer(stream, &paths));
            }
        });
        target
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

fn answer(mut s: TcpStream, paths: &Mutex<Vec<String>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("<not http>")
        .to_owned();
    paths.lock().unwrap().push(path.clone());
    let reply = match path.strip_prefix("/to/") {
        Some(to) => format!(
            "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
        None => "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\npong".to_owned(),
    };
    let _ = s.write_all(reply.as_bytes());
}

/// Listeners on one port at 127.0.0.1, 127.0.0.2 and (where the machine has it) ::1.
fn same_port_listeners() -> (TcpListener, TcpListener, Option<TcpListener>) {
    for _ in 0..100 {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        let Ok(c) = TcpListener::bind(("127.0.0.2", port)) else {
            continue;
        };
        match TcpListener::bind(("::1", port)) {
            Ok(d) => return (a, c, Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            // No IPv6 loopback here: the ::1 attempt is still made and must still be denied.
            Err(_) => return (a, c, None),
        }
    }
    panic!("found no port free on 127.0.0.1, 127.0.0.2 and ::1 at once");
}

/// Attempts and denials, by category; what got through, with why.
#[derive(Default)]
struct Tally {
    by_category: BTreeMap<&'static str, (usize, usize)>,
    escapes: Vec<String>,
}

impl Tally {
    fn check(&mut self, category: &'static str, what: &str, denied: bool, detail: &str) {
        let entry = self.by_category.entry(category).or_default();
        entry.0 += 1;
        if denied {
            entry.1 += 1;
        } else {
            let detail: String = detail.chars().take(600).collect();
            self.escapes
                .push(format!("[{category}] {what} was not denied: {detail}"));
        }
    }

    fn attempted(&self) -> usize {
        self.by_category.values().map(|c| c.0).sum()
    }

    fn denied(&self) -> usize {
        self.by_category.values().map(|c| c.1).sum()
    }
}

/// One answer: status, body and invocation id.
struct Answer {
    status: u16,
    body: String,
    id: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    fn detail(&self) -> String {
        format!("{} {}", self.status, self.body)
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let r = request.send().await.expect("request");
    let status = r.status().as_u16();
    let id = r
        .headers()
        .get("updraft-invocation-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Answer {
        status,
        body: r.text().await.expect("body"),
        id,
    }
}

async fn call(server: &Server, path: &str) -> Answer {
    send(client().get(server.url(path))).await
}

async fn post(server: &Server, path: &str, body: impl Into<reqwest::Body>) -> Answer {
    send(client().post(server.url(path)).body(body)).await
}

/// Whether the server logs a line naming invocation `id` that contains `needle` (waiting up
/// to 10 s for the log to be read).
async fn logged(server: &Server, id: &str, needle: &str) -> bool {
    !id.is_empty()
        && eventually(Duration::from_secs(10), async || {
            server
                .stderr
                .text()
                .lines()
                .any(|l| l.contains(id) && l.contains(needle))
        })
        .await
}

/// The server's peak resident memory, in KiB.
fn peak_rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends `request` over a new connection to `server` and reads the answer to its end.
fn raw_http(server: &Server, request: &[u8]) -> String {
    let mut s = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

struct Ports {
    /// Allowed to `kitchen` and `escape` as `http://127.0.0.1:PORT`.
    a: u16,
    /// Allowed as `http://localhost:PORT`.
    l: u16,
    /// Not allowed.
    b: u16,
}

fn manifest(p: &Ports) -> String {
    let (a, l) = (p.a, p.l);
    format!(
        r#"
[app]
name = "escape"

[variables]
greeting = {{ default = "hello" }}
vault_key = {{ required = true, secret = true }}

[kv.cache]
[kv.vault]
[sql.orders]
migrations = "migrations/orders"
[sql.vault-db]
migrations = "migrations/vault"
[queue.jobs]
[queue.private]
[topic.news]
[topic.internal]

[async]
callback_hosts = ["http://127.0.0.1:{a}"]

[function.kitchen]
source = "kitchen.wasm"
kv = ["cache"]
sql = ["orders"]
enqueue = ["jobs"]
publish = ["news"]
allowed_outbound_hosts = ["http://127.0.0.1:{a}", "http://localhost:{l}"]
memory = "32MiB"
async = true
[function.kitchen.variables]
greeting = "{{{{ greeting }}}}"

[function.escape]
source = "escape.wasm"
kv = ["cache"]
allowed_outbound_hosts = ["http://127.0.0.1:{a}", "http://localhost:{l}"]
memory = "32MiB"
[function.escape.variables]
greeting = "{{{{ greeting }}}}"

[function.spin]
source = "kitchen.wasm"
timeout = "2s"

[function.keeper]
source = "kitchen.wasm"
kv = ["vault"]
sql = ["vault-db"]
enqueue = ["private"]
publish = ["internal"]
[function.keeper.variables]
vault_key = "{{{{ vault_key }}}}"

[[trigger.http]]
route = "/k/..."
function = "kitchen"

[[trigger.http]]
route = "/e/..."
function = "escape"

[[trigger.http]]
route = "/spin/..."
function = "spin"

[[trigger.http]]
route = "/keeper/..."
function = "keeper"
"#
    )
}

/// What every attempt needs.
struct Ctx {
    server: Server,
    app: AppDir,
    ports: Ports,
    /// 127.0.0.1:a (allowed).
    a: Target,
    /// 127.0.0.1:l (allowed by the name `localhost` only).
    l: Target,
    /// 127.0.0.1:b (not allowed).
    b: Target,
    /// 127.0.0.2:a (not allowed).
    c: Target,
    /// [::1]:a (not allowed), where the machine has IPv6 loopback.
    d: Option<Target>,
    /// A UDP socket at 127.0.0.1 that no datagram may reach.
    udp: UdpSocket,
}

#[tokio::test]
async fn a_guest_trying_every_way_out_is_denied_each_time() {
    let (a, c, d) = same_port_listeners();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let ports = Ports {
        a: a.local_addr().unwrap().port(),
        l: l.local_addr().unwrap().port(),
        b: b.local_addr().unwrap().port(),
    };
    let app = AppDir::new(&manifest(&ports));
    app.guest(guests::KITCHEN, "kitchen.wasm");
    app.guest(guests::ESCAPE, "escape.wasm");
    app.write(
        "migrations/orders/001_items.sql",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    );
    app.write(
        "migrations/vault/001_secrets.sql",
        format!("CREATE TABLE secrets (v TEXT); INSERT INTO secrets VALUES ('{VAULT_GOLD}');"),
    );
    app.write(".env", format!("UPDRAFT_VAR_VAULT_KEY={VAULT_KEY}\n"));
    let server = start(&app);
    let ctx = Ctx {
        server,
        app,
        ports,
        a: Target::serve(a),
        l: Target::serve(l),
        b: Target::serve(b),
        c: Target::serve(c),
        d: d.map(Target::serve),
        udp,
    };
    let started = Instant::now();
    controls(&ctx).await;
    let mut t = Tally::default();
    files(&ctx, &mut t).await;
    environment(&ctx, &mut t).await;
    sockets(&ctx, &mut t).await;
    name_lookup(&ctx, &mut t).await;
    outbound(&ctx, &mut t).await;
    stores(&ctx, &mut t).await;
    sql(&ctx, &mut t).await;
    messaging(&ctx, &mut t).await;
    headers(&ctx, &mut t).await;
    oversized(&ctx, &mut t).await;
    memory(&ctx, &mut t).await;
    cpu(&ctx, &mut t).await;
    storm(&ctx, &mut t).await;
    floods(&ctx, &mut t).await;
    let through = traffic_that_got_through(&ctx);

    for (category, (attempted, denied)) in &t.by_category {
        println!("  {category}: {attempted} attempted, {denied} denied");
    }
    println!(
        "capability escapes: {} attempted, {} denied ({:.1} s)",
        t.attempted(),
        t.denied(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        t.escapes.is_empty() && through.is_empty(),
        "{} escapes:\n{}\nnetwork traffic that got through:\n{}",
        t.escapes.len(),
        t.escapes.join("\n"),
        through.join("\n")
    );
    assert_eq!(t.attempted(), t.denied());
    assert!(t.attempted() >= 50, "only {} attempts", t.attempted());
    // Still serving after all of it.
    assert_eq!(call(&ctx.server, "/k/sleep?ms=1").await.status, 200);
}

/// What the functions may do works, so each denial below is the check's doing.
async fn controls(ctx: &Ctx) {
    let s = &ctx.server;
    let r = post(s, "/keeper/kv/set?store=vault&key=gold", VAULT_GOLD).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "ok"),
        "keeper writes its vault"
    );
    let r = call(s, "/keeper/env").await;
    assert_eq!(r.json()["env"]["vault_key"], VAULT_KEY, "{}", r.body);
    let r = post(
        s,
        "/keeper/sql/query?db=vault-db",
        json!({"sql": "SELECT v FROM secrets", "params": []}).to_string(),
    )
    .await;
    assert!(r.body.contains(VAULT_GOLD), "{}", r.detail());
    let r = post(s, "/keeper/publish?topic=internal&type=t.x", "x").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = post(s, "/keeper/enqueue?queue=private", "x").await;
    assert_eq!(r.status, 202, "{}", r.body);

    let r = post(s, "/k/kv/set?store=cache&key=mine", "v").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let r = post(
        s,
        "/k/sql/execute?db=orders",
        json!({"sql": "INSERT INTO items (name) VALUES ($1)", "params": ["tea"]}).to_string(),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, r#"{"changed":1}"#));
    let r = post(s, "/k/publish?topic=news&type=t.x", "x").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = post(s, "/k/enqueue?queue=jobs", "x").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = call(s, "/k/env").await;
    assert_eq!(r.json()["env"]["greeting"], "hello", "{}", r.body);

    // Outbound to the allowed hosts, by the names the manifest gives.
    let (pa, pl) = (ctx.ports.a, ctx.ports.l);
    let r = call(s, &format!("/k/fetch?url=http://127.0.0.1:{pa}/")).await;
    assert_eq!((r.status, r.body.as_str()), (200, "upstream 200: pong"));
    let r = call(s, &format!("/k/fetch?url=http://localhost:{pl}/")).await;
    assert_eq!((r.status, r.body.as_str()), (200, "upstream 200: pong"));

    // Limits: just under each is fine.
    let r = post(
        s,
        &format!("/k/kv/set?store=cache&key={}", "k".repeat(1024)),
        "v",
    )
    .await;
    assert_eq!(r.status, 200, "a 1 KiB key: {}", r.body);
    let r = post(s, "/k/kv/set?store=cache&key=big", vec![b'v'; 1 << 20]).await;
    assert_eq!(r.status, 200, "a 1 MiB value: {}", r.body);
    let r = call(s, "/e/get-many?store=cache&key=big&copies=4").await;
    assert_eq!(r.json()["denied"], false, "get-many of 4 MiB: {}", r.body);
    assert_eq!(
        call(s, "/k/alloc?mb=8").await.body,
        "allocated 8 MiB\n",
        "8 MiB of 32"
    );
    let r = call(s, "/e/grow?pages=1").await;
    assert_eq!(r.json()["grown"], true, "{}", r.body);
}

/// Each probe a guest route answered with (`[{"what", "denied", "detail"}]`), counted;
/// `extra` must also hold for a probe to count as denied.
fn count_probes(
    t: &mut Tally,
    category: &'static str,
    answer: &Answer,
    mut extra: impl FnMut(&str, &str) -> bool,
) -> usize {
    let probes = answer.json();
    let probes = probes
        .as_array()
        .unwrap_or_else(|| panic!("{}", answer.body));
    for p in probes {
        let what = p["what"].as_str().unwrap();
        let detail = p["detail"].to_string();
        let denied = p["denied"] == true && extra(what, &detail);
        t.check(category, what, denied, &detail);
    }
    probes.len()
}

async fn files(ctx: &Ctx, t: &mut Tally) {
    let app = ctx.app.path().display().to_string();
    let outside = tempfile::tempdir().unwrap();
    let tmp = outside.path().join("escaped");
    let r = call(
        &ctx.server,
        &format!("/e/files?app={app}&tmp={}", tmp.display()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let app = ctx.app.path();
    let noted = logged(&ctx.server, &r.id, "file system access denied").await;
    let n = count_probes(t, "files", &r, |what, _| {
        noted
            && match what {
                "write a file in a host folder" => !tmp.exists(),
                "write a file in the app" => !app.join("escaped.txt").exists(),
                "create a folder in the app" => !app.join("escaped").exists(),
                _ => true,
            }
    });
    assert!(n >= 14, "{}", r.body);
    // The kitchen looks at `/` too.
    let r = call(&ctx.server, "/k/env").await;
    t.check(
        "files",
        "kitchen lists /",
        r.json()["root_entries"].is_null(),
        &r.body,
    );
}

async fn environment(ctx: &Ctx, t: &mut Tally) {
    let r = call(&ctx.server, "/k/env").await;
    let seen = r.json();
    let env = seen["env"].as_object().unwrap();
    let config = seen["config"].as_object().unwrap();
    t.check(
        "environment",
        "std::env::vars beyond the declared `greeting`",
        env.keys().eq(["greeting"]),
        &r.body,
    );
    t.check(
        "environment",
        "wasi:config get-all beyond the declared `greeting`",
        config.keys().eq(["greeting"]),
        &r.body,
    );
    // The server process has PATH, HOME and UPDRAFT_LOG (set by the harness); keeper's
    // secret is in `.env` and given to keeper only.
    let keys = "greeting,PATH,HOME,UPDRAFT_LOG,vault_key,VAULT_KEY,UPDRAFT_VAR_VAULT_KEY";
    let r = call(&ctx.server, &format!("/e/config?keys={keys}")).await;
    let seen = r.json();
    assert_eq!(seen["get"]["greeting"], "hello", "{}", r.body);
    assert_eq!(seen["env_get"]["greeting"], "hello", "{}", r.body);
    for key in keys.split(',').skip(1) {
        let noted = logged(&ctx.server, &r.id, &format!("variable `{key}` denied")).await;
        t.check(
            "variables",
            &format!("wasi:config get `{key}`"),
            seen["get"][key].is_null() && noted,
            &r.body,
        );
        t.check(
            "environment",
            &format!("std::env::var `{key}`"),
            seen["env_get"][key].is_null(),
            &r.body,
        );
    }
    t.check(
        "environment",
        "command-line arguments of the host",
        seen["args"].as_array().is_some_and(Vec::is_empty),
        &r.body,
    );
    t.check(
        "variables",
        "another function's secret anywhere in what a function sees",
        !r.body.contains(VAULT_KEY),
        &r.body,
    );
}

async fn sockets(ctx: &Ctx, t: &mut Tally) {
    let pa = ctx.ports.a;
    let udp = ctx.udp.local_addr().unwrap();
    let r = call(
        &ctx.server,
        &format!("/e/sockets?tcp=127.0.0.1:{pa}&tcp6=[::1]:{pa}&udp={udp}"),
    )
    .await;
    // Raw wasi:sockets must be refused as access-denied, std's calls as PermissionDenied:
    // the refusal, not a missing implementation; and each kind logged.
    let tcp_noted = logged(&ctx.server, &r.id, "tcp socket denied").await;
    let udp_noted = logged(&ctx.server, &r.id, "udp socket denied").await;
    let n = count_probes(t, "sockets", &r, |what, detail| {
        let noted = if what.contains("udp") || what.contains("UDP") {
            udp_noted
        } else {
            tcp_noted
        };
        if !noted {
            false
        } else if what.starts_with("create") {
            detail.contains("access-denied")
        } else {
            detail.contains("PermissionDenied")
        }
    });
    assert_eq!(n, 8, "{}", r.body);
    let mut buf = [0u8; 64];
    t.check(
        "sockets",
        "a datagram reaching the loopback UDP socket",
        matches!(ctx.udp.recv_from(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a datagram arrived",
    );
}

async fn name_lookup(ctx: &Ctx, t: &mut Tally) {
    let names = ["localhost", "127.0.0.1", "::1", "127.0.0.2"];
    let r = call(&ctx.server, &format!("/e/lookup?names={}", names.join(","))).await;
    let mut noted = true;
    for name in names {
        noted &= logged(
            &ctx.server,
            &r.id,
            &format!("name lookup of `{name}` denied"),
        )
        .await;
    }
    // wasmtime refuses a lookup as a permanent resolver failure, which std reports as such.
    let n = count_probes(t, "name lookup", &r, |what, detail| {
        if !noted {
            false
        } else if what.starts_with("ip-name-lookup") {
            detail.contains("permanent-resolver-failure")
        } else {
            detail.contains("Non-recoverable")
        }
    });
    assert_eq!(n, 5, "{}", r.body);
}

/// `scheme://authority` of `url`, as a denial logs it.
fn authority(url: &str) -> &str {
    let after_scheme = url.find("://").unwrap() + 3;
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

async fn outbound(ctx: &Ctx, t: &mut Tally) {
    let (pa, pl, pb) = (ctx.ports.a, ctx.ports.l, ctx.ports.b);
    let attempts = [
        ("another port", format!("http://127.0.0.1:{pb}/")),
        (
            "another loopback address, same port",
            format!("http://127.0.0.2:{pa}/"),
        ),
        ("IPv6 loopback, same port", format!("http://[::1]:{pa}/")),
        (
            "the allowed address, IPv4-mapped",
            format!("http://[::ffff:127.0.0.1]:{pa}/"),
        ),
        (
            "the allowed address, as a decimal number",
            format!("http://2130706433:{pa}/"),
        ),
        (
            "the allowed address, in hex",
            format!("http://0x7f000001:{pa}/"),
        ),
        (
            "the allowed address, shortened",
            format!("http://127.1:{pa}/"),
        ),
        (
            "a name for the allowed address",
            format!("http://localhost:{pa}/"),
        ),
        (
            "the IP literal of an allowed name",
            format!("http://127.0.0.1:{pl}/"),
        ),
        ("another scheme", format!("https://127.0.0.1:{pa}/")),
        (
            "another scheme for an allowed name",
            format!("https://localhost:{pl}/"),
        ),
        (
            "the allowed host on its default port",
            "http://127.0.0.1/".to_owned(),
        ),
        (
            "userinfo: allowed@other",
            format!("http://127.0.0.1:{pa}@127.0.0.1:{pb}/"),
        ),
        (
            "userinfo: allowed-name@other",
            format!("http://localhost:{pl}@127.0.0.2:{pa}/"),
        ),
    ];
    for (what, url) in &attempts {
        let r = call(&ctx.server, &format!("/k/fetch?url={url}")).await;
        let needle = format!("outbound request to `{}` denied", authority(url));
        let denied = r.status == 502
            && r.body.starts_with("fetch failed")
            && !r.body.contains("pong")
            && logged(&ctx.server, &r.id, &needle).await;
        t.check(
            "outbound http",
            &format!("{what} ({url})"),
            denied,
            &r.detail(),
        );
    }

    // Redirects: the platform does not follow one for the guest, and a guest that follows
    // one by hand is checked again at the next hop.
    let r = call(
        &ctx.server,
        &format!("/k/fetch?url=http://127.0.0.1:{pa}/to/http://127.0.0.1:{pb}/"),
    )
    .await;
    t.check(
        "outbound http",
        "a redirect followed by the platform",
        r.body == "upstream 302: ",
        &r.detail(),
    );
    for to in [
        format!("http://127.0.0.1:{pb}/"),
        format!("http://127.0.0.2:{pa}/"),
        format!("https://127.0.0.1:{pa}/"),
    ] {
        let r = call(
            &ctx.server,
            &format!("/e/follow?url=http://127.0.0.1:{pa}/to/{to}"),
        )
        .await;
        let trail = r.json();
        let needle = format!("outbound request to `{}` denied", authority(&to));
        let denied = trail[0]["status"] == 302
            && trail[1]["url"] == to.as_str()
            && trail[1]["error"].is_string()
            && trail.as_array().is_some_and(|h| h.len() == 2)
            && logged(&ctx.server, &r.id, &needle).await;
        t.check(
            "outbound http",
            &format!("a redirect from an allowed host to {to}, followed by the guest"),
            denied,
            &r.detail(),
        );
    }
}

async fn stores(ctx: &Ctx, t: &mut Tally) {
    let s = &ctx.server;
    for (store, error, log) in [
        (
            "vault",
            "AccessDenied",
            "may not open kv store `vault`; add it to the function's `kv = [...]`",
        ),
        ("nope", "NoSuchStore", "kv store `nope` is not declared"),
        ("Vault", "NoSuchStore", "kv store `Vault` is not declared"),
        (
            "cache/../vault",
            "NoSuchStore",
            "kv store `cache/../vault` is not declared",
        ),
    ] {
        let r = call(s, &format!("/k/kv/get?store={store}&key=gold")).await;
        let denied = r.status == 403
            && r.body.contains(error)
            && !r.body.contains(VAULT_GOLD)
            && logged(s, &r.id, log).await;
        t.check(
            "kv",
            &format!("open kv store `{store}`"),
            denied,
            &r.detail(),
        );
    }
    // Keys of one store are invisible and untouchable from another.
    let r = call(s, "/k/kv/list?store=cache&prefix=").await;
    t.check(
        "kv",
        "list another store's keys",
        r.status == 200 && !r.body.split(',').any(|k| k == "gold"),
        &r.detail(),
    );
    let r = call(s, "/k/kv/get?store=cache&key=gold").await;
    t.check(
        "kv",
        "read another store's key by name",
        r.status == 404,
        &r.detail(),
    );
    let r = post(s, "/k/kv/set?store=cache&key=gold", "overwritten").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(s, "/keeper/kv/get?store=vault&key=gold").await;
    t.check(
        "kv",
        "overwrite another store's key",
        r.body == VAULT_GOLD,
        &r.detail(),
    );
}

async fn sql(ctx: &Ctx, t: &mut Tally) {
    let s = &ctx.server;
    let query = json!({"sql": "SELECT v FROM secrets", "params": []}).to_string();
    for (db, error, log) in [
        (
            "vault-db",
            "AccessDenied",
            "may not use sql database `vault-db`",
        ),
        (
            "nope",
            "NoSuchDatabase",
            "sql database `nope` is not declared",
        ),
    ] {
        let r = post(s, &format!("/k/sql/query?db={db}"), query.clone()).await;
        let denied = r.status == 403
            && r.body.contains(error)
            && !r.body.contains(VAULT_GOLD)
            && logged(s, &r.id, log).await;
        t.check("sql", &format!("open database `{db}`"), denied, &r.detail());
    }
    let app = ctx.app.path();
    let state = app.join(".updraft/state.db");
    let vault = app.join(".updraft/sql/vault-db.db");
    assert!(vault.is_file(), "{}", vault.display());
    let made = app.join("escape.db");
    let copy = app.join("copy.db");
    let statements = [
        (
            format!("ATTACH DATABASE '{}' AS p", state.display()),
            "`ATTACH` is refused",
        ),
        (
            format!("ATTACH DATABASE '{}' AS v", vault.display()),
            "`ATTACH` is refused",
        ),
        (
            format!("ATTACH DATABASE '{}' AS e", made.display()),
            "`ATTACH` is refused",
        ),
        (
            "SELECT load_extension('/tmp/evil')".to_owned(),
            "`load_extension` is refused",
        ),
        (
            "PRAGMA journal_mode = DELETE".to_owned(),
            "`PRAGMA journal_mode` is refused",
        ),
        (
            "PRAGMA writable_schema = ON".to_owned(),
            "`PRAGMA writable_schema` is refused",
        ),
        (
            "PRAGMA temp_store_directory = '/tmp'".to_owned(),
            "`PRAGMA temp_store_directory` is refused",
        ),
        ("BEGIN".to_owned(), "`BEGIN` is refused"),
        ("COMMIT".to_owned(), "`COMMIT` is refused"),
        ("SAVEPOINT a".to_owned(), "`SAVEPOINT` is refused"),
    ];
    for (statement, refusal) in &statements {
        for op in ["execute", "query"] {
            let body = json!({"sql": statement, "params": []}).to_string();
            let r = post(s, &format!("/k/sql/{op}?db=orders"), body).await;
            let denied = (400..500).contains(&r.status)
                && r.body.contains(refusal)
                && logged(s, &r.id, refusal).await;
            t.check("sql", &format!("{op} `{statement}`"), denied, &r.detail());
        }
    }
    // VACUUM INTO attaches its target, which the attach limit refuses (SQLite's own error,
    // not the authorizer's, so nothing is logged).
    for op in ["execute", "query"] {
        let body = json!({"sql": format!("VACUUM INTO '{}'", copy.display()), "params": []});
        let r = post(s, &format!("/k/sql/{op}?db=orders"), body.to_string()).await;
        t.check(
            "sql",
            &format!("{op} `VACUUM INTO`"),
            (400..500).contains(&r.status) && !copy.exists(),
            &r.detail(),
        );
    }
    assert!(!made.exists(), "ATTACH created {}", made.display());
    // The vault database and the platform's state are as they were.
    let r = post(s, "/keeper/sql/query?db=vault-db", query).await;
    assert!(r.body.contains(VAULT_GOLD), "{}", r.detail());
    let r = call(s, "/k/kv/get?store=cache&key=mine").await;
    assert_eq!((r.status, r.body.as_str()), (200, "v"));
}

async fn messaging(ctx: &Ctx, t: &mut Tally) {
    let s = &ctx.server;
    for (path, error, log) in [
        (
            "publish?topic=internal&type=t.x",
            "AccessDenied",
            "may not publish to `internal`",
        ),
        (
            "publish?topic=nope&type=t.x",
            "NoSuchTopic",
            "topic `nope` is not declared",
        ),
        (
            "enqueue?queue=private",
            "AccessDenied",
            "may not enqueue to `private`",
        ),
        (
            "enqueue?queue=nope",
            "NoSuchQueue",
            "queue `nope` is not declared",
        ),
        (
            "enqueue?queue=jobs.dlq",
            "NoSuchQueue",
            "queue `jobs.dlq` is not declared",
        ),
    ] {
        let r = post(s, &format!("/k/{path}"), "x").await;
        let denied = r.status == 400 && r.body.contains(error) && logged(s, &r.id, log).await;
        t.check("topics and queues", path, denied, &r.detail());
    }
}

async fn headers(ctx: &Ctx, t: &mut Tally) {
    let s = &ctx.server;
    let forged = [
        "updraft-invocation-id",
        "updraft-route",
        "updraft-path-info",
        "updraft-param-id",
        "updraft-client-addr",
        "updraft-key-id",
        "updraft-claim-sub",
    ];
    let mut request = client().get(s.url("/k/headers"));
    for h in forged {
        request = request.header(h, "forged");
    }
    let r = send(request).await;
    let seen = r.json();
    assert_eq!(seen["headers"]["updraft-invocation-id"], r.id.as_str());
    for h in forged {
        t.check(
            "forged headers",
            &format!("a client's `{h}` header"),
            seen["headers"][h] != "forged",
            &r.body,
        );
    }
    // Trailers, on a chunked request; an ordinary trailer gets through.
    let answer = raw_http(
        s,
        b"POST /e/trailers HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\
          trailer: updraft-key-id, updraft-invocation-id, x-plain\r\nconnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\nupdraft-key-id: forged\r\nupdraft-invocation-id: forged\r\n\
          x-plain: kept\r\n\r\n",
    );
    let seen: Value = answer
        .find('{')
        .zip(answer.rfind('}'))
        .and_then(|(i, j)| serde_json::from_str(&answer[i..=j]).ok())
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(seen["trailers"]["x-plain"], "kept", "{answer}");
    assert_eq!(seen["body_bytes"], 5, "{answer}");
    for h in ["updraft-key-id", "updraft-invocation-id"] {
        t.check(
            "forged headers",
            &format!("a client's `{h}` trailer"),
            seen["trailers"].get(h).is_none(),
            &answer,
        );
    }
    // Outbound authority is never taken from a request: a callback must be declared.
    let (pa, pb) = (ctx.ports.a, ctx.ports.b);
    for callback in [
        format!("http://127.0.0.1:{pb}/"),
        format!("http://127.0.0.1:{pa}@127.0.0.1:{pb}/"),
    ] {
        let r = send(
            client()
                .post(s.url("/k/echo"))
                .header("prefer", "respond-async")
                .header("callback-url", &callback)
                .body("x"),
        )
        .await;
        t.check(
            "forged headers",
            &format!("a `Callback-URL: {callback}`"),
            r.status == 400 && r.body.contains("callback_hosts"),
            &r.detail(),
        );
    }
}

async fn oversized(ctx: &Ctx, t: &mut Tally) {
    let s = &ctx.server;
    let long = "k".repeat(1025);
    for (what, r) in [
        (
            "kv set of a 1025-byte key",
            post(s, &format!("/k/kv/set?store=cache&key={long}"), "v").await,
        ),
        (
            "kv compare-and-swap of a 1025-byte key",
            call(s, &format!("/k/kv/cas?store=cache&key={long}&new=v")).await,
        ),
        (
            "kv increment of a 1025-byte key",
            call(s, &format!("/k/kv/incr?store=cache&key={long}")).await,
        ),
    ] {
        t.check(
            "oversized",
            what,
            r.status == 400 && r.body.contains("over the limit of 1024 bytes"),
            &r.detail(),
        );
    }
    let over = vec![b'v'; (1 << 20) + 1];
    let r = post(s, "/k/kv/set?store=cache&key=huge", over.clone()).await;
    t.check(
        "oversized",
        "kv value of 1 MiB + 1 byte",
        r.status == 400 && r.body.contains("over the limit of 1048576 bytes"),
        &r.detail(),
    );
    let r = post(s, "/k/publish?topic=news&type=t.x", over.clone()).await;
    t.check(
        "oversized",
        "event of 1 MiB + 1 byte, published",
        r.status == 400 && r.body.contains("TooLarge"),
        &r.detail(),
    );
    let r = post(s, "/k/enqueue?queue=jobs", over).await;
    t.check(
        "oversized",
        "event of 1 MiB + 1 byte, enqueued",
        r.status == 400 && r.body.contains("TooLarge"),
        &r.detail(),
    );
    let r = post(s, "/k/enqueue?queue=jobs&delay_ms=1296000000", "x").await;
    t.check(
        "oversized",
        "enqueue delayed 15 days",
        r.status == 400 && r.body.contains("over the limit of 14 days"),
        &r.detail(),
    );
    let r = post(s, "/k/count", vec![b'x'; 11 << 20]).await;
    t.check(
        "oversized",
        "request body of 11 MiB",
        r.status == 413,
        &r.detail(),
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..11).map(|_| Ok(vec![b'x'; 1 << 20])).collect();
    let chunked = client()
        .post(s.url("/k/count"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The server may answer before reading the whole upload, and close the connection.
    let (denied, detail) = match chunked {
        Ok(r) => (r.status() == 413, r.status().to_string()),
        Err(e) => (true, e.to_string()),
    };
    t.check(
        "oversized",
        "chunked request body of 11 MiB",
        denied,
        &detail,
    );
    let r = send(
        client()
            .get(s.url("/k/headers"))
            .header("x-big", "a".repeat(70 << 10)),
    )
    .await;
    t.check(
        "oversized",
        "request headers of 70 KiB",
        r.status == 431,
        &r.detail(),
    );
}

async fn memory(ctx: &Ctx, t: &mut Tally) {
    let s = &ctx.server;
    let r = call(s, "/k/alloc?mb=4096").await;
    t.check(
        "memory",
        "allocate 4 GiB in a 32 MiB function",
        r.status == 500 && r.body.contains("exceeded its memory limit of 32 MiB"),
        &r.detail(),
    );
    let r = call(s, "/e/grow?pages=2048").await;
    t.check(
        "memory",
        "memory.grow by 128 MiB in a 32 MiB function",
        r.status == 200 && r.json()["grown"] == false,
        &r.detail(),
    );
    // A few bytes of repeated keys asking the host for 1000 copies of a 1 MiB value.
    let before = peak_rss_kib(s);
    let r = call(s, "/e/get-many?store=cache&key=big&copies=1000").await;
    let grew = peak_rss_kib(s).saturating_sub(before);
    t.check(
        "memory",
        "kv get-many of 1000 copies of a 1 MiB value (host memory)",
        r.status == 200
            && r.json()["denied"] == true
            && r.body.contains("memory limit")
            && grew < 256 << 10,
        &format!("{} (host peak grew {grew} KiB)", r.detail()),
    );
    // Exiting ends the instance, not the server.
    let r = call(s, "/e/exit").await;
    t.check(
        "process",
        "exit the process",
        r.status == 500 && call(s, "/_updraft/healthz").await.status == 200,
        &r.detail(),
    );
}

async fn cpu(ctx: &Ctx, t: &mut Tally) {
    let url = ctx.server.url("/spin/spin");
    let spinner = tokio::spawn(async move { send(client().get(url)).await });
    // Others are answered while it spins.
    let r = call(&ctx.server, "/k/sleep?ms=1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = spinner.await.unwrap();
    t.check(
        "cpu",
        "an endless loop in a function with a 2 s timeout",
        r.status == 504 && r.body.contains("timeout of 2s"),
        &r.detail(),
    );
}

/// Occurrences of `needle` in the server's log.
fn log_count(server: &Server, needle: &str) -> usize {
    server.stderr.text().matches(needle).count()
}

async fn storm(ctx: &Ctx, t: &mut Tally) {
    let pb = ctx.ports.b;
    let needle = format!("outbound request to `http://127.0.0.1:{pb}` denied");
    let before = log_count(&ctx.server, &needle);
    let mut storms = Vec::new();
    for _ in 0..4 {
        let url = ctx
            .server
            .url(&format!("/e/storm?url=http://127.0.0.1:{pb}/storm&n=100"));
        storms.push(tokio::spawn(async move { send(client().get(url)).await }));
    }
    let mut failed = 0;
    let mut details = Vec::new();
    for s in storms {
        let r = s.await.unwrap();
        failed += r.json()["failed"].as_u64().unwrap_or(0);
        details.push(r.detail());
    }
    let all_logged = eventually(Duration::from_secs(10), async || {
        log_count(&ctx.server, &needle) >= before + 400
    })
    .await;
    t.check(
        "outbound storm",
        "400 concurrent requests to a host not allowed (4 invocations × 100)",
        failed == 400 && all_logged && ctx.b.connections() == 0,
        &details.join("\n"),
    );
}

async fn floods(ctx: &Ctx, t: &mut Tally) {
    let s = &ctx.server;
    for (what, query) in [
        ("16 MiB of lines on stdout and stderr", "kib=16384"),
        (
            "16 MiB without a newline on stdout and stderr",
            "kib=16384&no_newlines=1",
        ),
    ] {
        let before = s.stderr.text().len();
        let r = call(s, &format!("/e/flood?{query}")).await;
        let noted = logged(s, &r.id, "log output over 1024 KiB dropped").await;
        let grew = s.stderr.text().len() - before;
        let others = call(s, "/k/sleep?ms=1").await.status;
        t.check(
            "floods",
            what,
            r.status == 200 && noted && grew < 4 << 20 && others == 200,
            &format!("{} (log grew {grew} bytes, others {others})", r.detail()),
        );
    }
    // Denials log the names they refuse: 80 names of 256 KiB must not make 20 MiB of log.
    let before = s.stderr.text().len();
    let r = call(s, "/e/deny-flood?n=20&kib=256").await;
    let seen = r.json();
    let all_logged = eventually(Duration::from_secs(10), async || {
        s.stderr
            .text()
            .lines()
            .filter(|l| l.contains(&r.id))
            .count()
            >= 80
    })
    .await;
    let grew = s.stderr.text().len() - before;
    t.check(
        "floods",
        "80 denials of 256 KiB names (kv, sql, topic, queue)",
        seen["tried"] == 80 && seen["allowed"] == 0 && all_logged && grew < 1 << 20,
        &format!("{} (log grew {grew} bytes)", r.detail()),
    );
}

/// What reached the loopback servers that should not have: allowed are the two controls,
/// the kitchen's redirect and the first hop of each of the guest's three redirects; nothing
/// else, by any name, on any port or address.
fn traffic_that_got_through(ctx: &Ctx) -> Vec<String> {
    let mut wrong = Vec::new();
    let a = ctx.a.paths();
    if ctx.a.connections() != 5 || !a.iter().all(|p| p == "/" || p.starts_with("/to/")) {
        wrong.push(format!(
            "{} connections reached the allowed port instead of 5: {a:?}",
            ctx.a.connections()
        ));
    }
    if ctx.l.connections() != 1 {
        wrong.push(format!(
            "{} connections reached the port allowed as `localhost` instead of 1: {:?}",
            ctx.l.connections(),
            ctx.l.paths()
        ));
    }
    let others = [
        ("127.0.0.1 on another port", Some(&ctx.b)),
        ("127.0.0.2", Some(&ctx.c)),
        ("::1", ctx.d.as_ref()),
    ];
    for (what, target) in others {
        if let Some(target) = target
            && target.connections() > 0
        {
            wrong.push(format!(
                "{} connections reached {what}: {:?}",
                target.connections(),
                target.paths()
            ));
        }
    }
    wrong
}

/// What a guest creates through `wasi:http/types` (header maps, outgoing requests with long
/// methods or authorities) is host memory outside the function's linear memory: it is
/// charged to a budget of the function's `memory` limit, so a 32 MiB function cannot make the
/// host hold hundreds of MiB (before the budget: 4,000 maps of 100 KiB took the host from 73
/// to 477 MB in 0.1 s). Past the budget the invocation ends as a memory-limit failure that
/// says what it was doing.
#[tokio::test]
async fn wasi_http_resources_are_bounded_by_the_memory_limit() {
    let app = AppDir::new(
        r#"
[app]
name = "resources"

[function.escape]
source = "escape.wasm"
memory = "32MiB"

[[trigger.http]]
route = "/e/..."
function = "escape"
"#,
    );
    app.guest(guests::ESCAPE, "escape.wasm");
    let server = start(&app);
    for (what, path) in [
        (
            "2,000 header fields of 100 KiB",
            "/e/fields?n=2000&kib=100&mode=fields",
        ),
        (
            "50 outgoing requests with a 4 MiB method",
            "/e/fields?n=50&kib=4096&mode=method",
        ),
    ] {
        let before = peak_rss_kib(&server);
        let r = call(&server, path).await;
        let grew = peak_rss_kib(&server).saturating_sub(before);
        eprintln!("{what}: the host's peak grew {grew} KiB");
        assert!(
            grew < 64 << 10,
            "{what}: the host's peak grew {grew} KiB for a 32 MiB function ({})",
            r.detail()
        );
        assert_eq!(r.status, 500, "{what}: {}", r.detail());
        assert!(
            logged(
                &server,
                &r.id,
                "exceeded its memory limit of 32 MiB in host memory held through wasi:http"
            )
            .await,
            "{what}: the failure names the budget: {}",
            server.stderr.text()
        );
    }
}
