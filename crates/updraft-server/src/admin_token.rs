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
        keep_private(&path)?;
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

/// Makes an existing token file readable by its owner only, as a new one is.
fn keep_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            "`{}` was readable by others (mode {:o}); it is now 0600",
            path.display(),
            mode & 0o777
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make `{}` private (chmod 600)", path.display()))?;
    }
    Ok(())
}

/// Whether `given` is `token`, in time that does not depend on where they differ.
pub fn matches(given: &str, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    // Equal-length digests, compared without an early exit.
    let (a, b) = (Sha256::digest(given), Sha256::digest(token));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
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
