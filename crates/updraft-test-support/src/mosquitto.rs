//! A private Mosquitto MQTT broker for tests: 127.0.0.1 on a free port, persistence on in
//! its own folder, killed when dropped.
//!
//! The binary comes from `UPDRAFT_MOSQUITTO`, `/usr/sbin/mosquitto` (Debian's `mosquitto`
//! package, which `scripts/test` installs when missing) or `PATH`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::free_port;

/// How long a start may take before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running private broker.
pub struct Mosquitto {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    /// A second listener with TLS (a self-signed certificate for 127.0.0.1), if asked for.
    tls_port: Option<u16>,
    bin: PathBuf,
}

fn binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("UPDRAFT_MOSQUITTO") {
        return Ok(PathBuf::from(p));
    }
    let debian = PathBuf::from("/usr/sbin/mosquitto");
    if debian.is_file() {
        return Ok(debian);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "no `mosquitto` found: install Debian's `mosquitto` package (scripts/test does) or set UPDRAFT_MOSQUITTO".to_owned()
        })
}

impl Mosquitto {
    /// Starts a broker; panics if it cannot.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A broker that also listens with TLS ([`Mosquitto::tls_url`]), its certificate a
    /// self-signed one for 127.0.0.1 ([`Mosquitto::certificate`]), made with `openssl`.
    pub fn start_with_tls() -> Self {
        Self::try_start_with(true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Mosquitto::start`], but returns what went wrong.
    pub fn try_start() -> Result<Self, String> {
        Self::try_start_with(false)
    }

    fn try_start_with(tls: bool) -> Result<Self, String> {
        let mut broker = Self {
            child: None,
            dir: tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?,
            port: 0,
            tls_port: None,
            bin: binary()?,
        };
        if tls {
            broker.make_certificate()?;
        }
        let mut last = String::new();
        // A picked port can be taken before the broker binds it: try again.
        for _ in 0..3 {
            broker.port = free_port()?;
            if tls {
                broker.tls_port = Some(free_port()?);
            }
            match broker.spawn() {
                Ok(()) => return Ok(broker),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// `mqtt://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtts://127.0.0.1:PORT` of the TLS listener ([`Mosquitto::start_with_tls`]).
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("mqtts://127.0.0.1:{p}"))
    }

    /// The TLS listener's certificate (PEM), to trust.
    pub fn certificate(&self) -> PathBuf {
        self.dir.path().join("broker.pem")
    }

    fn make_certificate(&self) -> Result<(), String> {
        let dir = self.dir.path();
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            // A leaf, not a CA: webpki refuses a CA certificate as a server's own.
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(dir.join("broker.key"))
            .arg("-out")
            .arg(dir.join("broker.pem"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run openssl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "openssl could not make a certificate: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// What the broker logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker the way an operator restarts it (SIGTERM: it saves its
    /// persistence file) and starts it again on the same port and folder.
    pub fn restart(&mut self) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) with a pid we spawned and still own.
            unsafe {
                libc::kill(i32::try_from(child.id()).unwrap_or(0), libc::SIGTERM);
            }
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let config = dir.join("mosquitto.conf");
        // As root it would switch to the `mosquitto` user, who cannot write our folder.
        // SAFETY: geteuid(2) has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root\n"
        } else {
            ""
        };
        let tls = match self.tls_port {
            Some(port) => format!(
                "listener {port} 127.0.0.1\ncertfile {dir}/broker.pem\nkeyfile {dir}/broker.key\ncafile {dir}/broker.pem\n",
                dir = dir.display()
            ),
            None => String::new(),
        };
        std::fs::write(
            &config,
            format!(
                "{user}listener {port} 127.0.0.1\n\
                 allow_anonymous true\n\
                 persistence true\n\
                 persistence_location {dir}/\n\
                 autosave_interval 1\n\
                 max_queued_messages 0\n\
                 max_inflight_messages 1000\n\
                 log_dest file {dir}/mosquitto.log\n\
                 log_type error\nlog_type warning\nlog_type notice\nlog_type information\nlog_type subscribe\n\
                 {tls}",
                port = self.port,
                dir = dir.display()
            ),
        )
        .map_err(|e| format!("write {}: {e}", config.display()))?;
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        let end = Instant::now() + START_TIMEOUT;
        while Instant::now() < end {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "mosquitto exited with {status} at start:\n{}",
                    self.log()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "mosquitto did not listen within {START_TIMEOUT:?}:\n{}",
            self.log()
        ))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
