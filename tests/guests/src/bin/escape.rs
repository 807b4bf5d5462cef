//! A test function that tries the ways out of its sandbox the kitchen guest cannot:
//! files and preopens, sockets, name lookup, `wasi:config`, raw memory growth, host-side
//! allocations, following redirects, storms of outbound requests, request trailers, stdout
//! floods, floods of denials and exiting. Each route answers JSON; a list of probes is
//! `[{"what": …, "denied": bool, "detail": …}]`, where `denied` is only true when the
//! operation failed (had the sandbox let it through, it would have worked).

use std::collections::BTreeMap;
use std::io::Write;

use wstd::__internal::wasip2 as p2;
use wstd::http::body::util::BodyExt;
use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

wit_bindgen::generate!({
    path: "../../wit",
    world: "updraft:platform/imports",
    generate_all,
});

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
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
    let arg = |k: &str| query.get(k).cloned().unwrap_or_default();
    let num = |k: &str, d: u64| query.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    match op.as_str() {
        "/files" => json(&files(&arg("app"), &arg("tmp"))),
        "/sockets" => json(&sockets(&arg("tcp"), &arg("tcp6"), &arg("udp"))),
        "/lookup" => json(&lookup(&arg("names"))),
        "/config" => json(&config(&arg("keys"))),
        "/grow" => {
            let pages = usize::try_from(num("pages", 1)).unwrap_or(usize::MAX);
            let before = core::arch::wasm32::memory_size::<0>();
            let result = core::arch::wasm32::memory_grow::<0>(pages);
            json(&serde_json::json!({
                "pages_before": before,
                "grown": result != usize::MAX,
            }))
        }
        "/fields" => json(&fields(num("n", 1), num("kib", 1), &arg("mode"))),
        "/deny-flood" => json(&deny_flood(num("n", 1), num("kib", 1))),
        "/get-many" => json(&get_many(&arg("store"), &arg("key"), num("copies", 1))),
        "/follow" => json(&follow(&arg("url"), num("hops", 5)).await),
        "/storm" => json(&storm(&arg("url"), num("n", 10)).await),
        "/trailers" => {
            let headers: Vec<String> = req.headers().keys().map(|k| k.to_string()).collect();
            let collected = req.into_body().into_boxed_body().collect().await?;
            let trailers: BTreeMap<String, String> = collected
                .trailers()
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            json(&serde_json::json!({
                "headers": headers,
                "trailers": trailers,
                "body_bytes": collected.to_bytes().len(),
            }))
        }
        "/flood" => {
            let total = num("kib", 1024) << 10;
            let line: Vec<u8> = if query.contains_key("no_newlines") {
                vec![b'x'; 4096]
            } else {
                let mut l = vec![b'x'; 4095];
                l.push(b'\n');
                l
            };
            let mut written = 0u64;
            let mut out = std::io::stdout();
            let mut err = std::io::stderr();
            while written < total {
                if out.write_all(&line).is_err() || err.write_all(&line).is_err() {
                    break;
                }
                written += line.len() as u64;
            }
            let _ = out.flush();
            text(
                StatusCode::OK,
                format!("flooded {written} bytes on each stream\n"),
            )
        }
        "/exit" => std::process::exit(3),
        other => text(StatusCode::NOT_FOUND, format!("escape has no `{other}`\n")),
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

/// One probe: `denied` when `result` is an error.
fn probe<T: std::fmt::Debug, E: std::fmt::Debug>(
    what: &str,
    result: Result<T, E>,
) -> serde_json::Value {
    match result {
        Ok(v) => {
            let detail: String = format!("{v:?}").chars().take(200).collect();
            serde_json::json!({ "what": what, "denied": false, "detail": detail })
        }
        Err(e) => serde_json::json!({ "what": what, "denied": true, "detail": format!("{e:?}") }),
    }
}

/// Files: the host's, the app's (by absolute path under `app`), a new one at `tmp`, the
/// working directory and its parent, and every preopen there is.
fn files(app: &str, tmp: &str) -> serde_json::Value {
    use std::fs;
    let mut out = vec![
        probe("read /etc/passwd", fs::read_to_string("/etc/passwd")),
        probe("read /proc/self/environ", fs::read("/proc/self/environ")),
        probe("list /", fs::read_dir("/").map(|d| d.count())),
        probe("list .", fs::read_dir(".").map(|d| d.count())),
        probe("list ..", fs::read_dir("..").map(|d| d.count())),
        probe("read ./updraft.toml", fs::read("updraft.toml")),
        probe("read ../updraft.toml", fs::read("../updraft.toml")),
        probe(
            "read the app's .updraft/state.db",
            fs::read(format!("{app}/.updraft/state.db")),
        ),
        probe(
            "read the app's updraft.toml",
            fs::read(format!("{app}/updraft.toml")),
        ),
        probe("read the app's .env", fs::read(format!("{app}/.env"))),
        probe("write a file in a host folder", fs::write(tmp, b"escaped")),
        probe(
            "write a file in the app",
            fs::write(format!("{app}/escaped.txt"), b"escaped"),
        ),
        probe(
            "create a folder in the app",
            fs::create_dir(format!("{app}/escaped")),
        ),
    ];
    // Preopens are the only way WASI hands out a directory: there must be none. Had there
    // been any, each would be tried for the host's files.
    let preopens = p2::filesystem::preopens::get_directories();
    let names: Vec<String> = preopens.iter().map(|(_, name)| name.clone()).collect();
    out.push(serde_json::json!({
        "what": "get preopened directories",
        "denied": preopens.is_empty(),
        "detail": names,
    }));
    for (dir, name) in &preopens {
        use p2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
        out.push(probe(
            &format!("open etc/passwd under preopen `{name}`"),
            dir.open_at(
                PathFlags::empty(),
                "etc/passwd",
                OpenFlags::empty(),
                DescriptorFlags::READ,
            ),
        ));
    }
    serde_json::Value::Array(out)
}

/// Sockets: raw `wasi:sockets` creation of every kind, then the same through std (which a
/// typical guest would use): connect to `tcp` (`127.0.0.1:PORT`) and `tcp6` (`[::1]:PORT`),
/// listen, and send a datagram to `udp` (`127.0.0.1:PORT`).
fn sockets(tcp: &str, tcp6: &str, udp: &str) -> serde_json::Value {
    use p2::sockets::network::IpAddressFamily;
    use p2::sockets::{tcp_create_socket, udp_create_socket};
    let kind = |e: std::io::Error| format!("{:?}: {e}", e.kind());
    serde_json::json!([
        probe(
            "create a TCP/IPv4 socket",
            tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4).map(drop)
        ),
        probe(
            "create a TCP/IPv6 socket",
            tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv6).map(drop)
        ),
        probe(
            "create a UDP/IPv4 socket",
            udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4).map(drop)
        ),
        probe(
            "create a UDP/IPv6 socket",
            udp_create_socket::create_udp_socket(IpAddressFamily::Ipv6).map(drop)
        ),
        probe(
            &format!("TCP connect to {tcp}"),
            std::net::TcpStream::connect(tcp).map(drop).map_err(kind)
        ),
        probe(
            &format!("TCP connect to {tcp6}"),
            std::net::TcpStream::connect(tcp6).map(drop).map_err(kind)
        ),
        probe(
            "TCP listen on 127.0.0.1:0",
            std::net::TcpListener::bind("127.0.0.1:0")
                .map(drop)
                .map_err(kind)
        ),
        probe(
            &format!("UDP send to {udp}"),
            std::net::UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.send_to(b"escaped", udp))
                .map_err(kind)
        ),
    ])
}

/// Name lookup of each comma-separated name (all of them loopback names or addresses),
/// through `wasi:sockets/ip-name-lookup`, and of each name through std.
fn lookup(names: &str) -> serde_json::Value {
    use std::net::ToSocketAddrs;
    let network = p2::sockets::instance_network::instance_network();
    let mut out = Vec::new();
    for name in names.split(',').filter(|n| !n.is_empty()) {
        let resolved =
            p2::sockets::ip_name_lookup::resolve_addresses(&network, name).and_then(|stream| {
                let mut addresses = Vec::new();
                loop {
                    match stream.resolve_next_address() {
                        Ok(Some(a)) => addresses.push(format!("{a:?}")),
                        Ok(None) => return Ok(addresses),
                        Err(p2::sockets::network::ErrorCode::WouldBlock) => {
                            stream.subscribe().block()
                        }
                        Err(e) => return Err(e),
                    }
                }
            });
        out.push(probe(&format!("ip-name-lookup `{name}`"), resolved));
        if name.parse::<std::net::IpAddr>().is_ok() {
            // std parses an address itself; only a name makes it ask the resolver.
            continue;
        }
        out.push(probe(
            &format!("std lookup `{name}`"),
            (name, 80)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>())
                .map_err(|e| format!("{:?}: {e}", e.kind())),
        ));
    }
    serde_json::Value::Array(out)
}

/// `wasi:config/store` `get` of each comma-separated key, `get-all`, and the environment.
fn config(keys: &str) -> serde_json::Value {
    let get: BTreeMap<&str, Option<String>> = keys
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| (k, wasi::config::store::get(k).ok().flatten()))
        .collect();
    let all: BTreeMap<String, String> = wasi::config::store::get_all()
        .map(|all| all.into_iter().collect())
        .unwrap_or_default();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let env_get: BTreeMap<&str, Option<String>> = keys
        .split(',')
        .filter(|k| !k.is_empty())
        .map(|k| (k, std::env::var(k).ok()))
        .collect();
    serde_json::json!({
        "get": get,
        "get_all": all,
        "env": env,
        "env_get": env_get,
        "args": std::env::args().collect::<Vec<_>>(),
    })
}

/// Host-side allocations the guest's memory limit does not see, all held until the answer:
/// `n` header maps of one `kib` KiB field (`mode=fields`), or `n` outgoing requests whose
/// method is `kib` KiB long (`mode=method`).
fn fields(n: u64, kib: u64, mode: &str) -> serde_json::Value {
    use p2::http::types::{Fields, Method, OutgoingRequest};
    let size = usize::try_from(kib << 10).unwrap_or(0);
    let entries = [("x-bomb".to_owned(), vec![b'a'; size])];
    let method = Method::Other("X".repeat(size));
    let mut held_fields = Vec::new();
    let mut held_requests = Vec::new();
    let mut error = None;
    for _ in 0..n {
        if mode == "method" {
            let request = OutgoingRequest::new(Fields::new());
            if request.set_method(&method).is_err() {
                error = Some("set-method refused".to_owned());
                break;
            }
            held_requests.push(request);
        } else {
            match Fields::from_list(&entries) {
                Ok(f) => held_fields.push(f),
                Err(e) => {
                    error = Some(format!("{e:?}"));
                    break;
                }
            }
        }
    }
    let made = held_fields.len() + held_requests.len();
    serde_json::json!({ "made": made, "error": error })
}

/// Fetches `url`, following redirects by hand for up to `hops` answers.
async fn follow(url: &str, hops: u64) -> serde_json::Value {
    let mut url = url.to_owned();
    let mut trail = Vec::new();
    for _ in 0..hops {
        let request = match Request::get(url.as_str()).body(Body::empty()) {
            Ok(r) => r,
            Err(e) => {
                trail.push(serde_json::json!({ "url": url, "error": format!("{e:?}") }));
                break;
            }
        };
        match Client::new().send(request).await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = response
                    .body_mut()
                    .str_contents()
                    .await
                    .map(str::to_owned)
                    .unwrap_or_default();
                trail.push(serde_json::json!({ "url": url, "status": status, "body": body }));
                match location {
                    Some(next) if (300..400).contains(&status) => url = next,
                    _ => break,
                }
            }
            Err(e) => {
                trail.push(serde_json::json!({ "url": url, "error": format!("{e:?}") }));
                break;
            }
        }
    }
    serde_json::Value::Array(trail)
}

/// `n` outbound requests to `url`, all in flight at once.
async fn storm(url: &str, n: u64) -> serde_json::Value {
    let mut pending = Vec::new();
    for _ in 0..n {
        let url = url.to_owned();
        pending.push(Box::pin(async move {
            let request = Request::get(url.as_str()).body(Body::empty())?;
            let mut response = Client::new().send(request).await?;
            let body = response.body_mut().str_contents().await?.to_owned();
            Ok::<_, Error>(body)
        }));
    }
    let mut results: Vec<Option<Result<String, Error>>> = (0..n).map(|_| None).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, fut) in results.iter_mut().zip(pending.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => *slot = Some(r),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    let failed = results.iter().filter(|r| matches!(r, Some(Err(_)))).count();
    let answered: Vec<&String> = results
        .iter()
        .filter_map(|r| r.as_ref().and_then(|r| r.as_ref().ok()))
        .collect();
    serde_json::json!({ "sent": n, "failed": failed, "answered": answered })
}

/// `wasi:keyvalue/batch.get-many` of one key `copies` times: a few bytes of keys in guest
/// memory asking the host to read (and hold) the key's value once per copy.
fn get_many(store: &str, key: &str, copies: u64) -> serde_json::Value {
    use wasi::keyvalue::{batch, store as kv};
    let result = kv::open(store).and_then(|bucket| {
        let keys: Vec<String> = (0..copies).map(|_| key.to_owned()).collect();
        batch::get_many(&bucket, &keys).map(|values| {
            values
                .iter()
                .map(|v| v.as_ref().map_or(0, |(_, value)| value.len()))
                .sum::<usize>()
        })
    });
    probe("get-many", result)
}

/// Opens a kv store, a sql database, a topic and a queue `n` times each under a name of
/// `kib` KiB that the app does not declare: each is denied, and each denial is logged.
fn deny_flood(n: u64, kib: u64) -> serde_json::Value {
    use updraft::platform::messaging::{EnqueueOptions, enqueue, publish};
    use updraft::platform::types::Event;
    let name = "n".repeat(usize::try_from(kib << 10).unwrap_or(0));
    let event = Event {
        id: String::new(),
        source: String::new(),
        type_: "escape.flood".to_owned(),
        subject: None,
        time: None,
        datacontenttype: None,
        data: Vec::new(),
        extensions: Vec::new(),
    };
    let options = EnqueueOptions {
        delay_ms: None,
        idempotency_key: None,
    };
    let mut allowed = 0;
    for _ in 0..n {
        allowed += u64::from(wasi::keyvalue::store::open(&name).is_ok())
            + u64::from(updraft::platform::sql::Connection::open(&name).is_ok())
            + u64::from(publish(&name, &event).is_ok())
            + u64::from(enqueue(&name, &event, &options).is_ok());
    }
    serde_json::json!({ "tried": n * 4, "allowed": allowed })
}
