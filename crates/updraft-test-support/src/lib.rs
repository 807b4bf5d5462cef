//! Test-only support: the guest components from `tests/guests` (built by `build.rs` for
//! `wasm32-wasip2`), helpers that run the real `updraft` binary on real sockets, and a
//! private `nats-server` ([`NatsServer`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod mosquitto;
pub mod nats;
pub mod postgres;
pub mod s3;
mod tools;
pub use mosquitto::Mosquitto;
pub use nats::NatsServer;
pub use postgres::Postgres;

/// Paths of the built guest components.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// A core (non-component) wasm module: the 8-byte header of an empty module.
pub const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// A `producers` custom section naming `tool` (version 0.19.3) under `processed-by`, as
/// componentize-js writes one (`tool` = `ComponentizeJS`); appended to a module or a
/// component, it is that binary's own producers section.
pub fn producers_section(tool: &str) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.push(u8::try_from(s.len()).expect("a short name"));
        out.extend_from_slice(s.as_bytes());
    }
    let mut payload = Vec::new();
    string(&mut payload, "producers");
    payload.push(1); // one field
    string(&mut payload, "processed-by");
    payload.push(1); // one value
    string(&mut payload, tool);
    string(&mut payload, "0.19.3");
    let mut section = vec![0, u8::try_from(payload.len()).expect("a short section")];
    section.extend(payload);
    section
}

/// A temporary app folder.
pub struct AppDir {
    dir: tempfile::TempDir,
}

impl AppDir {
    /// A new folder with `manifest` as its `updraft.toml`.
    pub fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("updraft.toml"), manifest).expect("write manifest");
        Self { dir }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` at `rel`, creating folders.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// Copies a built guest into the app as `rel`.
    pub fn guest(&self, guest: &str, rel: &str) -> PathBuf {
        let bytes = std::fs::read(guest).expect("read guest");
        self.write(rel, bytes)
    }
}

/// Output collected from a child's pipe by a background thread.
#[derive(Clone, Default)]
pub struct Captured {
    text: Arc<Mutex<String>>,
    /// Set once the pipe reached its end (every writer closed it).
    closed: Arc<AtomicBool>,
}

impl Captured {
    fn spawn(
        reader: impl std::io::Read + Send + 'static,
        tx: Option<std::sync::mpsc::Sender<String>>,
    ) -> Self {
        let captured = Captured::default();
        let buf = captured.text.clone();
        let closed = captured.closed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = &tx {
                    let _ = tx.send(line.clone());
                }
                if let Ok(mut b) = buf.lock() {
                    b.push_str(&line);
                    b.push('\n');
                }
            }
            closed.store(true, Ordering::Release);
        });
        captured
    }

    /// Collects everything `reader` produces from now on.
    pub fn from_reader(reader: impl std::io::Read + Send + 'static) -> Self {
        Self::spawn(reader, None)
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.text.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Waits until the pipe has ended and everything in it has been read, up to `timeout`.
    /// After the child exits its last lines may still be in the pipe: a loaded machine can
    /// take a while to schedule the reader thread.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.closed.load(Ordering::Acquire) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `needle` has been read, up to `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// A running `updraft up`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// What it printed on stdout.
    pub stdout: Captured,
    /// What it logged on stderr.
    pub stderr: Captured,
}

/// How long `Server::start` waits for `listening on`.
const START_LIMIT: Duration = Duration::from_secs(600);
/// How long, after a child exited, its pipes may take to be read to their end.
const PIPE_DRAIN_LIMIT: Duration = Duration::from_secs(10);

impl Server {
    /// Runs `bin up DIR --listen 127.0.0.1:0 EXTRA…` and waits until it listens.
    pub fn start(bin: &str, dir: &Path, extra: &[&str]) -> Self {
        Self::try_start(bin, dir, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Server::start`], with extra environment variables.
    pub fn start_with_env(bin: &str, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::try_start_with_env(bin, dir, extra, env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Server::start`], but returns what went wrong instead of panicking.
    pub fn try_start(bin: &str, dir: &Path, extra: &[&str]) -> Result<Self, String> {
        Self::try_start_with_env(bin, dir, extra, &[])
    }

    fn try_start_with_env(
        bin: &str,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut child = Command::new(bin)
            .arg("up")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("UPDRAFT_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {bin}: {e}"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = Captured::spawn(child.stdout.take().expect("stdout"), Some(tx));
        let stderr = Captured::spawn(child.stderr.take().expect("stderr"), None);
        // `up` may first run a project's cargo build: a cold build of an example crate takes
        // minutes on a loaded 2-core CI machine. A process that fails exits, and that is
        // noticed at once, so the long limit only bounds a hang.
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        return Ok(Self {
                            child,
                            base: url.trim().to_owned(),
                            stdout,
                            stderr,
                        });
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        // The error is the last thing it wrote: read the pipes to their end.
                        stdout.wait_closed(PIPE_DRAIN_LIMIT);
                        stderr.wait_closed(PIPE_DRAIN_LIMIT);
                        return Err(format!(
                            "updraft up exited with {status} before listening\nstdout:\n{}\nstderr:\n{}",
                            stdout.text(),
                            stderr.text()
                        ));
                    }
                    if left.is_zero() {
                        let _ = child.kill();
                        return Err(format!(
                            "updraft up did not listen within {} s\nstderr:\n{}",
                            START_LIMIT.as_secs(),
                            stderr.text()
                        ));
                    }
                }
            }
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`libc::SIGTERM`, …).
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with a pid we spawned and still own.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory of the process in KiB, from `/proc`.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `bin ARGS…` to completion with a time limit.
pub fn run(bin: &str, args: &[&str], timeout: Duration) -> Output {
    run_with_env(bin, args, &[], timeout)
}

/// [`run`] with extra environment variables.
pub fn run_with_env(bin: &str, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn updraft");
    let stdout = Captured::spawn(child.stdout.take().expect("stdout"), None);
    let stderr = Captured::spawn(child.stderr.take().expect("stderr"), None);
    let end = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!(
                "`updraft {}` did not finish within {timeout:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // What it wrote last may still be in the pipes: read them to their end (bounded, in case
    // a grandchild inherited them and keeps them open).
    stdout.wait_closed(PIPE_DRAIN_LIMIT);
    stderr.wait_closed(PIPE_DRAIN_LIMIT);
    Output {
        status,
        stdout: stdout.text().into_bytes(),
        stderr: stderr.text().into_bytes(),
    }
}
