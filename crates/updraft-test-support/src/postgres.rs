//! A private PostgreSQL server for tests: `initdb` into its own temporary folder, the
//! `postgres` server on a free port of 127.0.0.1 (never the machine's own cluster), password
//! authentication over TCP, stopped when dropped.
//!
//! The binaries come from `UPDRAFT_PG_BIN` (a folder), the newest
//! `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql` package, which `scripts/test`
//! installs when missing) or `PATH`. `initdb` refuses to run as root, so as root the server's
//! files belong to the `postgres` user and its processes run as that user.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::free_port;

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The superuser's password (the server listens on 127.0.0.1 only).
const PASSWORD: &str = "updraft-test";

/// A running private server.
pub struct Postgres {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    /// The user and group the server runs as (None: the current ones).
    owner: Option<(u32, u32)>,
    /// Whether it takes TLS connections (a self-signed certificate for 127.0.0.1).
    tls: bool,
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("UPDRAFT_PG_BIN") {
        return Ok(PathBuf::from(p));
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    debian.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(newest) = debian.pop() {
        return Ok(newest);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("postgres").is_file() && d.join("initdb").is_file())
        .ok_or_else(|| {
            "no PostgreSQL server binaries found: install Debian's `postgresql` package (scripts/test does) or set UPDRAFT_PG_BIN to the folder holding `initdb` and `postgres`".to_owned()
        })
}

/// As root: the `postgres` user's uid and gid, from `/etc/passwd`.
fn postgres_owner() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| format!("read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"postgres") && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .map(Some)
        .ok_or_else(|| {
            "running as root, and there is no `postgres` user for the test server (initdb refuses root): install Debian's `postgresql` package".to_owned()
        })
}

impl Postgres {
    /// Starts a server; panics if it cannot.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A server that also takes TLS connections, its certificate a self-signed one for
    /// 127.0.0.1 ([`Postgres::certificate`]), made with `openssl`.
    pub fn start_with_tls() -> Self {
        Self::try_start_with(true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Postgres::start`], but returns what went wrong.
    pub fn try_start() -> Result<Self, String> {
        Self::try_start_with(false)
    }

    fn try_start_with(tls: bool) -> Result<Self, String> {
        let mut server = Self {
            child: None,
            dir: tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?,
            port: 0,
            bin: bin_dir()?,
            owner: postgres_owner()?,
            tls,
        };
        server.init()?;
        if tls {
            server.make_certificate()?;
        }
        let mut last = String::new();
        // A picked port can be taken before the server binds it: try again.
        for _ in 0..3 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command.stdin(Stdio::null());
        command
    }

    fn init(&self) -> Result<(), String> {
        let root = self.dir.path();
        let pwfile = root.join("pwfile");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| format!("write pwfile: {e}"))?;
        if let Some((uid, gid)) = self.owner {
            for path in [root, pwfile.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", path.display()))?;
            }
        }
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "--encoding=UTF8", "--locale=C"])
            .output()
            .map_err(|e| format!("run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// The TLS certificate (PEM) to trust ([`Postgres::start_with_tls`]).
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    fn make_certificate(&self) -> Result<(), String> {
        let dir = self.dir.path();
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            // A leaf, not a CA: webpki refuses a CA certificate as a server's own.
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(dir.join("server.key"))
            .arg("-out")
            .arg(dir.join("server.pem"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run openssl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "openssl could not make a certificate: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // The server refuses a key others can read.
        let key = dir.join("server.key");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", key.display()))?;
        if let Some((uid, gid)) = self.owner {
            for file in ["server.key", "server.pem"] {
                std::os::unix::fs::chown(dir.join(file), Some(uid), Some(gid))
                    .map_err(|e| format!("chown {file}: {e}"))?;
            }
        }
        Ok(())
    }

    /// `postgres://postgres:<password>@127.0.0.1:PORT/<database>`
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The same without the password (give it in `UPDRAFT_SQL_<LABEL>_PASSWORD`).
    pub fn url_without_password(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The superuser's password.
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding `pgbench`, `psql` and the server.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Creates an empty database `name` (one per test keeps tests apart).
    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `sql` in `database` with `psql`; returns its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-d")
            .arg(self.url(database))
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql `{sql}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Stops the server (fast shutdown: open connections are cut); [`Postgres::resume`]
    /// starts it again on the same port with the same data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) with a pid we spawned and still own.
            unsafe {
                libc::kill(i32::try_from(child.id()).unwrap_or(0), libc::SIGINT);
            }
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped server again on the same port.
    pub fn resume(&mut self) -> Result<(), String> {
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join("postgres.log"))
            .map_err(|e| format!("create postgres.log: {e}"))?;
        if let Some((uid, gid)) = self.owner {
            let _ = std::os::unix::fs::chown(
                self.dir.path().join("postgres.log"),
                Some(uid),
                Some(gid),
            );
        }
        let stderr = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut command = self.command("postgres");
        if self.tls {
            let dir = self.dir.path();
            command
                .args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    dir.join("server.pem").display()
                ))
                .arg("-c")
                .arg(format!("ssl_key_file={}", dir.join("server.key").display()));
        }
        let mut child = command
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A test server: durable enough for a killed client, not for a power cut.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.join("postgres").display()))?;
        let end = Instant::now() + START_TIMEOUT;
        while Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "postgres exited with {status} at start:\n{}",
                    self.log()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.ready() {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "postgres did not accept connections within {START_TIMEOUT:?}:\n{}",
            self.log()
        ))
    }

    /// Whether the server answers queries (it listens before recovery ends).
    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
