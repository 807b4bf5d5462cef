//! Malformed HTTP gets a 4xx or a closed connection, never a 5xx that no guest produced.
//!
//! Seeded random mutations of valid HTTP/1.1 requests (byte flips, insertions, deletions,
//! duplicated and garbled header lines, bad chunked encoding, bad `Content-Length`, odd
//! methods, paths, hosts and versions, percent-escapes) go over raw TCP to a hello
//! function. Each answer must be a 4xx, a closed connection, or the hello guest's own 2xx
//! answer. The seed is printed; `UPDRAFT_MALFORMED_SEED=<n>` replays a run, and every failure
//! names its case number and the exact bytes sent.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use updraft_test_support::{AppDir, guests};

use crate::start;

/// How many mutated requests a run sends.
const CASES: usize = 10_000;
/// The seed of a run unless `UPDRAFT_MALFORMED_SEED` says otherwise.
const SEED: u64 = 0x5eed_0009_f022;
/// Connections in flight at once.
const WORKERS: usize = 24;
/// What the hello guest answers.
const HELLO: &[u8] = b"Hello, World!\n";

/// splitmix64: small, seedable, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// The valid requests mutations start from.
fn valid_requests(host: &str) -> Vec<Vec<u8>> {
    vec![
        format!(
            "GET /hello/world?x=1&y=%20z HTTP/1.1\r\nHost: {host}\r\nUser-Agent: malformed-test\r\nAccept: */*\r\n\r\n"
        )
        .into_bytes(),
        format!(
            "POST /hello/world HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
        )
        .into_bytes(),
        format!(
            "PUT /files/a%2Fb/c.txt HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        .into_bytes(),
        format!(
            "DELETE /hello/%C3%A9t%C3%A9 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"
        )
        .into_bytes(),
    ]
}

const INTERESTING: &[u8] = b"\0\x01\x7f\x80\xff \t\r\n:;,%/?#@\"'\\<>[]{}|^`~=&+*0129azAZ";
const METHODS: &[&str] = &[
    "",
    "get",
    "GE T",
    "G\0ET",
    "FOO",
    "HEAD",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PATCH",
    "PRI",
    "M-SEARCH",
    "GET\t",
    "\u{e9}T\u{e9}",
    "POST,GET",
    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
];
const TARGETS: &[&str] = &[
    "*",
    "",
    "/",
    "//",
    "///a//b//",
    "/../../etc/passwd",
    "/hello/..%2F..%2Fetc",
    "http://127.0.0.1/hello",
    "http://evil.example:99999/x",
    "http://[::1/x",
    "127.0.0.1:80",
    "/%",
    "/%z",
    "/%zz",
    "/%00",
    "/%0d%0a",
    "/%ff%fe%fd",
    "/hello/%2F",
    "/hello/%",
    "/a b",
    "/a\tb",
    "/?#",
    "/hello#frag",
    "/hello?%%%",
    "/hello?a=\u{e9}",
    "/_updraft",
    "/_updraft/../hello",
    "/_updraft/nope",
    "/hello/:name",
    "/files/...",
    "/\u{e9}\u{e9}",
    "/hello\0",
];
const HOSTS: &[&str] = &[
    "",
    "a b",
    "127.0.0.1:",
    "127.0.0.1:99999",
    "127.0.0.1:-1",
    "127.0.0.1:8o8o",
    "[::1",
    "::1",
    "user@127.0.0.1",
    "127.0.0.1/x",
    "127.0.0.1?q",
    "127.0.0.1#f",
    "h\u{e9}st",
    "%41",
    "\"quoted\"",
    "a,b",
    "localhost, localhost",
    ".",
    "-",
];
const VERSIONS: &[&str] = &[
    "HTTP/1.0",
    "HTTP/2.0",
    "HTTP/1.2",
    "HTTP/0.9",
    "http/1.1",
    "HTTP/1.11",
    "HTTP/",
    "HTTP/1",
    "HTTP/3.0",
    "",
];
const LENGTHS: &[&str] = &[
    "-1",
    "abc",
    "1 1",
    "5, 6",
    "11, 11",
    "11,11",
    "+11",
    " 11 ",
    "0x0b",
    "99999999999999999999",
    "18446744073709551615",
    "0",
    "100",
    "1",
    "",
    "11\0",
];
const CHUNK_BODIES: &[&str] = &[
    "zz\r\nhello\r\n0\r\n\r\n",
    "-5\r\nhello\r\n0\r\n\r\n",
    "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "5\r\nhello0\r\n\r\n",
    "5\nhello\n0\n\n",
    "5;ext=1\r\nhello\r\n0;x\r\n\r\n",
    "5\r\nhello\r\n0\r\nX-Trailer: y\r\nupdraft-invocation-id: forged\r\n\r\n",
    "5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
    "3\r\nhello\r\n0\r\n\r\n",
    "7\r\nhello\r\n0\r\n\r\n",
    "5\r\nhello\r\n",
    "0\r\n",
    "\r\n\r\n",
    "5 \r\nhello\r\n0\r\n\r\n",
    " 5\r\nhello\r\n0\r\n\r\n",
    "0000000000000000000005\r\nhello\r\n0\r\n\r\n",
];
const HEADER_LINES: &[&str] = &[
    "Content-Length: 3",
    "Content-Length: 99999999",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, gzip",
    "Transfer-Encoding: identity",
    "Host: other.example",
    "Host: a b",
    "Expect: 100-continue",
    "Expect: fancy",
    "Connection: upgrade\r\nUpgrade: websocket",
    "Connection: close, keep-alive",
    "Prefer: respond-async",
    "Prefer: respond-async\r\nCallback-Url: http://127.0.0.1:1/cb",
    "Content-Type: application/cloudevents+json",
    "updraft-invocation-id: forged",
    "updraft-param-name: forged",
    "X-Empty:",
    "X-Tab:\tvalue",
    "X-Obs-Fold: a\r\n b",
    "X-High: \u{e9}\u{e9}",
    "X-Ctl: a\x01b",
    ": no-name",
    "No-Colon",
    "Space Name: x",
    "Trailing-Space : x",
    "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// Splits a request into its head lines (without line ends) and the body after the blank line.
fn split(req: &[u8]) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
    let end = req.windows(4).position(|w| w == b"\r\n\r\n")?;
    let lines = req[..end]
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    Some((lines, req[end + 4..].to_vec()))
}

fn join(lines: &[Vec<u8>], body: &[u8]) -> Vec<u8> {
    let mut out = lines.join(&b"\r\n"[..]);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// Replaces the `index`th space-separated part of the request line.
fn replace_request_line_part(lines: &mut [Vec<u8>], index: usize, with: &[u8]) {
    let Some(first) = lines.first_mut() else {
        return;
    };
    let mut parts: Vec<Vec<u8>> = first
        .splitn(3, |b| *b == b' ')
        .map(<[u8]>::to_vec)
        .collect();
    if let Some(p) = parts.get_mut(index) {
        *p = with.to_vec();
    }
    *first = parts.join(&b' ');
}

/// Sets (or adds) a header's value.
fn set_header(lines: &mut Vec<Vec<u8>>, name: &str, value: &[u8]) {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut line = format!("{name}: ").into_bytes();
    line.extend_from_slice(value);
    match lines
        .iter()
        .skip(1)
        .position(|l| l.to_ascii_lowercase().starts_with(prefix.as_bytes()))
    {
        Some(i) => lines[i + 1] = line,
        None => lines.push(line),
    }
}

/// One mutation of `req`. Structural mutations fall back to byte-level ones when the request
/// no longer has the shape they need.
fn mutate(req: &mut Vec<u8>, rng: &mut Rng) {
    let op = rng.below(16);
    if op >= 6
        && let Some((mut lines, mut body)) = split(req)
    {
        match op {
            6 => {
                // Duplicate a header line, as is or with another value.
                if lines.len() > 1 {
                    let i = 1 + rng.below(lines.len() - 1);
                    let mut dup = lines[i].clone();
                    if rng.chance(2)
                        && let Some(colon) = dup.iter().position(|b| *b == b':')
                    {
                        dup.truncate(colon + 1);
                        dup.extend_from_slice(b" ");
                        dup.extend_from_slice(rng.pick(LENGTHS).as_bytes());
                    }
                    let at = 1 + rng.below(lines.len());
                    lines.insert(at.min(lines.len()), dup);
                }
            }
            7 => {
                // Garble a header line.
                if lines.len() > 1 {
                    let i = 1 + rng.below(lines.len() - 1);
                    let line = &mut lines[i];
                    match rng.below(6) {
                        0 => line.retain(|b| *b != b':'),
                        1 => {
                            if let Some(c) = line.iter().position(|b| *b == b':') {
                                line.insert(c, b' ');
                            }
                        }
                        2 => line.insert(0, b' '),
                        3 => line.extend_from_slice(b"\r\n\tfolded"),
                        4 => *line = line.to_ascii_uppercase(),
                        _ => line.extend_from_slice(b"\r"),
                    }
                }
            }
            8 => {
                let extra = rng.pick(HEADER_LINES).as_bytes().to_vec();
                let at = 1 + rng.below(lines.len());
                lines.insert(at.min(lines.len()), extra);
            }
            9 => set_header(&mut lines, "Content-Length", rng.pick(LENGTHS).as_bytes()),
            10 => {
                set_header(&mut lines, "Transfer-Encoding", b"chunked");
                body = rng.pick(CHUNK_BODIES).as_bytes().to_vec();
            }
            11 => replace_request_line_part(&mut lines, 0, rng.pick(METHODS).as_bytes()),
            12 => {
                let target = if rng.chance(4) {
                    // A long path, within and over what servers usually take.
                    let n = [100, 2_000, 9_000, 70_000][rng.below(4)];
                    format!("/hello/{}", "a".repeat(n)).into_bytes()
                } else {
                    rng.pick(TARGETS).as_bytes().to_vec()
                };
                replace_request_line_part(&mut lines, 1, &target);
            }
            13 => {
                // Percent-escapes, valid and not, into the target.
                if let Some(first) = lines.first_mut()
                    && let Some(slash) = first.iter().position(|b| *b == b'/')
                {
                    let at = slash + 1 + rng.below(first.len() - slash);
                    let escape: Vec<u8> = match rng.below(4) {
                        0 => format!("%{:02X}", rng.below(256)).into_bytes(),
                        1 => format!("%{:02x}", rng.below(256)).into_bytes(),
                        2 => b"%".to_vec(),
                        _ => vec![b'%', *rng.pick(INTERESTING), *rng.pick(INTERESTING)],
                    };
                    let at = at.min(first.len());
                    first.splice(at..at, escape);
                }
            }
            14 => {
                if rng.chance(3) {
                    lines.retain(|l| !l.to_ascii_lowercase().starts_with(b"host:"));
                } else {
                    set_header(&mut lines, "Host", rng.pick(HOSTS).as_bytes());
                }
            }
            _ => replace_request_line_part(&mut lines, 2, rng.pick(VERSIONS).as_bytes()),
        }
        *req = join(&lines, &body);
        return;
    }
    if req.is_empty() {
        req.push(*rng.pick(INTERESTING));
        return;
    }
    let at = rng.below(req.len());
    match op % 6 {
        0 => req[at] ^= 1 << rng.below(8),
        1 => req[at] = *rng.pick(INTERESTING),
        2 => {
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    if rng.chance(2) {
                        *rng.pick(INTERESTING)
                    } else {
                        rng.next() as u8
                    }
                })
                .collect();
            req.splice(at..at, bytes);
        }
        3 => {
            let n = 1 + rng.below(8);
            req.drain(at..(at + n).min(req.len()));
        }
        4 => {
            // Line ends: bare LF or bare CR in place of one CRLF.
            if let Some(i) = req.windows(2).skip(at).position(|w| w == b"\r\n") {
                let i = at + i;
                if rng.chance(2) {
                    req.remove(i);
                } else {
                    req.remove(i + 1);
                }
            }
        }
        _ => {
            // Truncation.
            req.truncate(at);
        }
    }
}

/// A request built from one of the valid ones with 1 to 4 mutations.
fn case(seed: u64, index: usize, host: &str) -> Vec<u8> {
    let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut req = rng.pick(&valid_requests(host)).clone();
    for _ in 0..1 + rng.below(4) {
        mutate(&mut req, &mut rng);
    }
    req
}

/// What came back for one request.
#[derive(Debug)]
enum Answer {
    /// The server closed (or reset) the connection without a response.
    Closed,
    /// A response: its status, head and de-chunked body, and whether the request's method
    /// (`HEAD`, `CONNECT`) means it has none.
    Response {
        status: u16,
        head: String,
        body: Vec<u8>,
        bodiless: bool,
    },
    /// Neither a response nor a close, even after the client half-closed.
    Hung,
}

/// Reads into `buf` until `done(buf)` holds; a close or the `deadline` first is the answer.
fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    done: impl Fn(&[u8]) -> bool,
) -> Result<(), Answer> {
    let mut chunk = [0u8; 16 * 1024];
    while !done(buf) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Answer::Hung);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) => return Err(Answer::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Answer::Hung);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(Answer::Closed),
        }
    }
    Ok(())
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Reads a complete response head into `buf`. A server still waiting for more of the request
/// (a body shorter than announced) gets a half-close after `patience`, so it sees the end.
fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>, patience: Duration) -> Result<(), Answer> {
    let head = read_until(s, buf, Instant::now() + patience, |b| head_end(b).is_some());
    if !matches!(head, Err(Answer::Hung)) {
        return head;
    }
    let _ = s.shutdown(Shutdown::Write);
    read_until(s, buf, Instant::now() + Duration::from_secs(20), |b| {
        head_end(b).is_some()
    })
}

/// A chunked body's data once its last chunk arrived.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return raw.windows(2).any(|w| w == b"\r\n").then_some(out);
        }
        if raw.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Sends `req` on a new connection and reads the first final response, half-closing after
/// `patience` without one.
fn exchange(addr: SocketAddr, req: &[u8], patience: Duration) -> Answer {
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => panic!("cannot connect to {addr}: {e}"),
    };
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // A server that answered and closed early may refuse the rest: read what it said.
    let _ = s.write_all(req);
    // A head ends with an empty line (lines end in CRLF or LF). A request cut short before
    // that makes the server wait for more: half-close at once so it sees the end. (Not
    // otherwise: hyper drops a request in flight when its client half-closes.)
    let head_complete =
        req.windows(2).any(|w| w == b"\n\n") || req.windows(3).any(|w| w == b"\n\r\n");
    if !head_complete {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut buf = Vec::new();
    let mut head = read_head(&mut s, &mut buf, patience);
    loop {
        if let Err(answer) = head {
            return answer;
        }
        let end = head_end(&buf).unwrap();
        let head_text = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status: u16 = head_text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response head: {head_text:?}"));
        if (100..200).contains(&status) {
            // 100 Continue: the final response follows.
            buf.drain(..end);
            head = read_head(&mut s, &mut buf, patience);
            continue;
        }
        let lower = head_text.to_ascii_lowercase();
        let length: Option<usize> = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok());
        let chunked = lower
            .lines()
            .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
        let method_has_no_body = {
            let start = req.iter().position(|b| !b"\r\n".contains(b)).unwrap_or(0);
            let m = &req[start..];
            m.starts_with(b"HEAD ") || m.starts_with(b"CONNECT ")
        };
        let mut body_raw = buf.split_off(end);
        let deadline = Instant::now() + Duration::from_secs(20);
        let body = if status == 204 || status == 304 || method_has_no_body {
            Vec::new()
        } else if let Some(n) = length {
            let _ = read_until(&mut s, &mut body_raw, deadline, |b| b.len() >= n);
            body_raw.truncate(n);
            body_raw
        } else if chunked {
            let _ = read_until(&mut s, &mut body_raw, deadline, |b| dechunk(b).is_some());
            dechunk(&body_raw).unwrap_or(body_raw)
        } else {
            let _ = read_until(&mut s, &mut body_raw, deadline, |_| false);
            body_raw
        };
        return Answer::Response {
            status,
            head: head_text,
            body,
            bodiless: method_has_no_body,
        };
    }
}

/// Whether `answer` is one the gateway may give: a 4xx, a closed connection, or the hello
/// guest's own 2xx.
fn acceptable(answer: &Answer) -> bool {
    match answer {
        Answer::Closed => true,
        Answer::Hung => false,
        Answer::Response {
            status,
            body,
            bodiless,
            ..
        } => match status {
            400..=499 => true,
            // `Prefer: respond-async` is accepted for the guest to run later.
            202 if body.starts_with(b"{\"invocation_id\"") => {
                String::from_utf8_lossy(body).contains("\"status\":\"queued\"")
            }
            200..=299 => body == HELLO || (*bodiless && body.is_empty()),
            _ => false,
        },
    }
}

/// The last `n` bytes of `text`, at a character boundary.
fn tail(text: &str, n: usize) -> &str {
    let mut from = text.len().saturating_sub(n);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    &text[from..]
}

fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[test]
fn malformed_requests_get_a_4xx_or_a_close_never_a_5xx_no_guest_made() {
    let seed = std::env::var("UPDRAFT_MALFORMED_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    println!(
        "malformed HTTP: seed {seed} (replay with UPDRAFT_MALFORMED_SEED={seed}), {CASES} cases"
    );
    let app = AppDir::new(
        r#"
[app]
name = "malformed"

[function.hello]
source = "hello.wasm"

[[trigger.http]]
route = "/hello/:name"
function = "hello"

[[trigger.http]]
route = "/..."
function = "hello"
"#,
    );
    app.guest(guests::HELLO, "hello.wasm");
    let server = start(&app);
    let host = server.base.trim_start_matches("http://").to_owned();
    let addr: SocketAddr = host.parse().unwrap();

    // The unmutated requests are answered by the guest: the harness reads answers right.
    for req in valid_requests(&host) {
        let answer = exchange(addr, &req, Duration::from_secs(60));
        assert!(
            matches!(&answer, Answer::Response { status: 200, body, .. } if body == HELLO),
            "valid request {:?} got {answer:?}",
            escaped(&req)
        );
    }

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let tally = Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= CASES {
                        break;
                    }
                    let req = case(seed, i, &host);
                    // A half-close makes hyper drop a request in flight, so on a slow machine
                    // some answers become closes: never a false failure.
                    let answer = exchange(addr, &req, Duration::from_secs(3));
                    let kind = match &answer {
                        Answer::Closed => "closed".to_owned(),
                        Answer::Hung => "hung".to_owned(),
                        Answer::Response { status, .. } => status.to_string(),
                    };
                    *tally.lock().unwrap().entry(kind).or_default() += 1;
                    if !acceptable(&answer) {
                        let shown = match &answer {
                            Answer::Response { head, body, .. } => {
                                format!("{head}{}", String::from_utf8_lossy(body))
                            }
                            other => format!("{other:?}"),
                        };
                        failures.lock().unwrap().push(format!(
                            "case #{i}: sent {:?}\n  got: {shown}",
                            escaped(&req)
                        ));
                    }
                }
            });
        }
    });
    let tally = tally.into_inner().unwrap();
    println!(
        "malformed HTTP: {CASES} cases in {:.1} s; answers: {tally:?}",
        started.elapsed().as_secs_f64()
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {CASES} mutated requests (seed {seed}) got an answer that is neither a 4xx, a close, nor the guest's:\n{}\n\nserver log:\n{}",
        failures.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        tail(&server.stderr.text(), 8_000)
    );
}
