//! Names on NATS: tokens for stream, bucket and subject parts, and the order-preserving
//! escaping of kv keys.

use crate::StoreError;

/// Escapes `s` into `[A-Za-z0-9_]`: other bytes become `_` and two uppercase hex digits (and
/// `_` itself is escaped), so the mapping is one-to-one and the result is a valid stream name,
/// bucket name and subject token. `-` never appears in a token, so it can join them.
pub(crate) fn token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            push_hex(&mut out, '_', b);
        }
    }
    out
}

/// [`token`], refusing the empty string; `what` names the thing in the error.
pub(crate) fn nonempty_token(what: &str, s: &str) -> Result<String, StoreError> {
    if s.is_empty() {
        return Err(StoreError::Invalid(format!(
            "a {what} name may not be empty"
        )));
    }
    Ok(token(s))
}

fn push_hex(out: &mut String, marker: char, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(marker);
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// Escapes a kv key into the NATS key alphabet without `.` (so a key is one subject token),
/// keeping byte order: for any keys `a < b`, `escape_key(a) < escape_key(b)`, and a prefix
/// escapes to a prefix.
///
/// `/`, `0-9`, `A-Z` and `a-y` stand for themselves. Every other byte becomes a marker and two
/// uppercase hex digits, the marker chosen by where the byte sorts among the kept ones:
/// `-` below `/` (bytes up to 0x2E), `=` between `9` and `A`, `_` between `Z` and `a`, and
/// `z` from `z` (0x7A) up. Each code is ordered like its byte and none is a prefix of another,
/// so concatenations compare like the keys.
pub(crate) fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'/' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'y' => out.push(char::from(b)),
            0x00..=0x2E => push_hex(&mut out, '-', b),
            0x3A..=0x40 => push_hex(&mut out, '=', b),
            0x5B..=0x60 => push_hex(&mut out, '_', b),
            _ => push_hex(&mut out, 'z', b),
        }
    }
    out
}

/// Reverses [`escape_key`]; `None` for a name it did not produce.
pub(crate) fn unescape_key(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' | b'=' | b'_' | b'z' => {
                let hex = escaped.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let key = String::from_utf8(out).ok()?;
    (escape_key(&key) == escaped).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_one_to_one_and_plain() {
        assert_eq!(token("shop"), "shop");
        assert_eq!(token("a_b"), "a_5Fb");
        assert_eq!(token("a.b"), "a_2Eb");
        assert_eq!(token("a-b"), "a_2Db");
        assert!(nonempty_token("queue", "").is_err());
        for s in ["orders.all", "ünï", "a b", "x/y"] {
            assert!(
                token(s)
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            );
        }
    }

    #[test]
    fn escaping_keeps_order_and_round_trips() {
        let mut keys = crate::conformance::kv::awkward_key_set();
        keys.extend(
            [
                "", "-", "/", "=", "_", "z", "y", "{", "~", "\u{7f}", "é", "a-", "a/", "a0",
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        );
        // Every single byte value that is valid UTF-8 on its own, and pairs of them.
        let singles: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        for a in &singles {
            keys.push(a.clone());
            for b in singles.iter().step_by(7) {
                keys.push(format!("{a}{b}"));
            }
        }
        for k in &keys {
            let e = escape_key(k);
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b)),
                "{k:?} -> {e:?}"
            );
            assert_eq!(unescape_key(&e).as_deref(), Some(k.as_str()), "{k:?}");
        }
        let mut by_key = keys.clone();
        by_key.sort();
        by_key.dedup();
        let mut by_escaped = by_key.clone();
        by_escaped.sort_by_key(|k| escape_key(k));
        assert_eq!(by_key, by_escaped);
        for w in by_key.windows(2) {
            if w[1].starts_with(w[0].as_str()) {
                assert!(escape_key(&w[1]).starts_with(&escape_key(&w[0])));
            }
        }
        assert_eq!(unescape_key("-4"), None);
        assert_eq!(unescape_key("zZZ"), None);
    }
}
