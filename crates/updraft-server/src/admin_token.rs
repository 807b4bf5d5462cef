//! The admin token: needed for `/_updraft/api/v1` unless the gateway listens on loopback
//! under `updraft up`. From `UPDRAFT_ADMIN_TOKEN`, else `.updraft/admin-token` (created on
//! first start with mode 0600).

use std::io::Read;
use std::path::Path;

use anyhow::Context;

/// The token, and whether it was created just now (so it should be shown once).
pub fn load_or_create(state_dir: &Path) -> anyhow::Result<(String, bool)> {
    if let Ok(token) = std::env::var("UPDRAFT_ADMIN_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok((token.trim().to_owned(), false));
    }
    let path = state_dir.join("admin-token");
    if let Ok(token) = std::fs::read_to_string(&path)
        && !token.trim().is_empty()
    {
        return Ok((token.trim().to_owned(), false));
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom to make an admin token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(state_dir)?;
    write_private(&path, &token).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok((token, true))
}

fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")
}
