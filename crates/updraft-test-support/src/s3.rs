//! A private S3-compatible server for tests: `moto_server` on 127.0.0.1 and a free port,
//! killed when dropped. It keeps everything in memory and accepts any access key.
//!
//! The server comes from, in order: `UPDRAFT_MOTO_SERVER` (a `moto_server` executable);
//! `target/tools/moto` (PyPI's `moto[server]` installed there with `pip install --target`
//! on first use, once, under a file lock, and run as `python3 -m moto.server`); a
//! `moto_server` on `PATH`. Conditional puts need moto 5.2 or newer: the install pins
//! [`MOTO_VERSION`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::Captured;
use crate::tools::{free_port, pip_install, tools_dir};

/// The moto release installed into the tools folder.
pub const MOTO_VERSION: &str = "5.2.1";
/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one request of ours (readiness, bucket creation) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A running private `moto_server`.
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    stdout: Captured,
    stderr: Captured,
}

/// How to run moto.
#[derive(Clone, Debug)]
enum Launcher {
    /// A `moto_server` executable.
    Bin(PathBuf),
    /// `python3 -m moto.server` with `PYTHONPATH` set to the tools folder.
    Module(PathBuf),
}

impl S3Server {
    /// Starts a server; panics (with its log) if it cannot.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`S3Server::start`], but returns what went wrong.
    pub fn try_start() -> Result<Self, String> {
        let launcher = launcher()?;
        let mut last = String::new();
        // A picked port can be taken by someone else before the server binds it: try again.
        for _ in 0..3 {
            match Self::spawn(&launcher, free_port()?) {
                Ok(server) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `http://127.0.0.1:PORT`, the endpoint to give an S3 client.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything the server logged.
    pub fn log(&self) -> String {
        format!("{}{}", self.stdout.text(), self.stderr.text())
    }

    /// Creates the bucket `name` (`PUT /<name>`).
    pub fn create_bucket(&self, name: &str) -> Result<(), String> {
        let (status, body) = request(self.port, "PUT", &format!("/{name}"))?;
        if status == 200 {
            Ok(())
        } else {
            Err(format!(
                "creating bucket `{name}` on moto answered {status}: {body}"
            ))
        }
    }

    /// Creates a bucket with a name not used before in this process and returns the name.
    pub fn new_bucket(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "updraft-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.create_bucket(&name)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        name
    }

    fn spawn(launcher: &Launcher, port: u16) -> Result<Self, String> {
        let mut cmd = match launcher {
            Launcher::Bin(bin) => Command::new(bin),
            Launcher::Module(path) => {
                let mut cmd = Command::new("python3");
                cmd.args(["-m", "moto.server"]).env("PYTHONPATH", path);
                cmd
            }
        };
        let port_text = port.to_string();
        let mut child = cmd
            .args(["-H", "127.0.0.1", "-p", &port_text])
            .env_remove("MOTO_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn moto ({launcher:?}): {e}"))?;
        let stdout = Captured::from_reader(child.stdout.take().ok_or("moto stdout")?);
        let stderr = Captured::from_reader(child.stderr.take().ok_or("moto stderr")?);
        let mut server = Self {
            child: None,
            port,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                server.stderr.wait_closed(Duration::from_secs(2));
                return Err(format!(
                    "moto_server exited with {status} before it answered\n{}",
                    server.log()
                ));
            }
            if request(port, "GET", "/").is_ok_and(|(status, _)| status == 200) {
                server.child = Some(child);
                return Ok(server);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "moto_server on port {port} did not answer within {START_TIMEOUT:?}\n{}",
                    server.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 request with an empty body: the status and the body's text.
fn request(port: u16, method: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        REQUEST_TIMEOUT,
    )
    .map_err(|e| format!("connect to moto on port {port}: {e}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send {method} {path}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("read the answer to {method} {path}: {e}"))?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{method} {path}: not an HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// How to run moto (see the module doc), found once per process.
fn launcher() -> Result<Launcher, String> {
    static LAUNCHER: OnceLock<Result<Launcher, String>> = OnceLock::new();
    LAUNCHER.get_or_init(find_launcher).clone()
}

fn installed(tools: &Path) -> bool {
    tools.join("moto").join("server.py").is_file()
}

fn runs(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn find_launcher() -> Result<Launcher, String> {
    if let Some(bin) = std::env::var_os("UPDRAFT_MOTO_SERVER") {
        let bin = PathBuf::from(bin);
        return if runs(&bin) {
            Ok(Launcher::Bin(bin))
        } else {
            Err(format!(
                "UPDRAFT_MOTO_SERVER={} does not run (`--help` failed)",
                bin.display()
            ))
        };
    }
    let tools = tools_dir("moto");
    if installed(&tools) {
        return Ok(Launcher::Module(tools));
    }
    let on_path = PathBuf::from("moto_server");
    if runs(&on_path) {
        return Ok(Launcher::Bin(on_path));
    }
    install(&tools)?;
    if installed(&tools) {
        Ok(Launcher::Module(tools))
    } else {
        Err(format!(
            "pip installed moto into {} but moto/server.py is not there",
            tools.display()
        ))
    }
}

/// Installs PyPI's `moto[server]` into `tools`, once across processes.
fn install(tools: &Path) -> Result<(), String> {
    pip_install(tools, &format!("moto[server]=={MOTO_VERSION}"), || {
        installed(tools)
    })
}
