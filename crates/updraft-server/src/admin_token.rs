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

/// How long a dashboard login lasts.
pub const SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// The dashboard's session cookie value for a login at `now_s` (seconds since the epoch):
/// `<expiry>.<HMAC-SHA256(token, expiry)>`. Nothing is stored: a new token ends every
/// session.
pub fn session(token: &str, now_s: u64) -> String {
    use hmac::Mac;
    let expiry = now_s + SESSION_LIFETIME.as_secs();
    format!(
        "{expiry}.{}",
        hex(&session_mac(token, expiry).finalize().into_bytes())
    )
}

/// Whether `value` is a session made with `token` that has not expired at `now_s`.
pub fn session_valid(token: &str, value: &str, now_s: u64) -> bool {
    use hmac::Mac;
    let Some((expiry, mac)) = value.split_once('.') else {
        return false;
    };
    let (Ok(expiry), Some(mac)) = (expiry.parse::<u64>(), unhex(mac)) else {
        return false;
    };
    expiry > now_s && session_mac(token, expiry).verify_slice(&mac).is_ok()
}

fn session_mac(token: &str, expiry: u64) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    // HMAC takes a key of any length.
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(b"updraft-session:");
    mac.update(expiry.to_string().as_bytes());
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod session_tests {
    use super::*;

    #[test]
    fn sessions_verify_with_their_token_until_they_expire() {
        let s = session("tok", 1_000);
        assert!(session_valid("tok", &s, 1_000));
        assert!(!session_valid("other", &s, 1_000), "a new token ends it");
        assert!(!session_valid(
            "tok",
            &s,
            1_000 + SESSION_LIFETIME.as_secs()
        ));
        let forged = s.replacen(&s[..4], "9999", 1);
        assert!(
            !session_valid("tok", &forged, 1_000),
            "the expiry is signed"
        );
        for junk in ["", ".", "12", "x.y", "1.zz"] {
            assert!(!session_valid("tok", junk, 0), "{junk}");
        }
    }
}
