//! Value types that parse from manifest strings: durations, sizes, outbound hosts, templates.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration written like `"30s"`, `"500ms"` or `"5m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            format!("`{s}` is not a duration ({e}); write it like \"30s\", \"500ms\" or \"5m\"")
        })?;
        if d.is_zero() {
            return Err(format!(
                "`{s}` is zero; give a positive duration like \"30s\""
            ));
        }
        Ok(Self(d))
    }
}

/// A size in bytes written like `"128MiB"`, `"10MB"` or `"65536"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad =
            || format!("`{s}` is not a size; write it like \"128MiB\", \"10MB\" or \"65536\"");
        let num: f64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            _ => return Err(bad()),
        };
        let bytes = num * mult as f64;
        if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
            return Err(bad());
        }
        Ok(Self(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
            write!(f, "{} GiB", b >> 30)
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", b >> 20)
        } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
            write!(f, "{} KiB", b >> 10)
        } else {
            write!(f, "{b} B")
        }
    }
}

/// One entry of `allowed_outbound_hosts`: `scheme://host[:port]`.
///
/// `scheme` is `http`, `https` or `*`; `host` is a name, an IP, `*` (any host) or
/// `*.example.com` (any subdomain); `port` is a number or `*` and defaults to the scheme's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
    any_port: bool,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    SubdomainOf(String),
    Exact(String),
}

impl AllowedHost {
    /// Whether a request to `scheme://host:port` is allowed by this entry.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme = scheme.to_ascii_lowercase();
        if let Some(s) = &self.scheme
            && *s != scheme
        {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::SubdomainOf(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            HostPattern::Exact(h) => *h == host,
        };
        if !host_ok {
            return false;
        }
        if self.any_port {
            return true;
        }
        let wanted = self.port.or_else(|| default_port(&scheme));
        wanted == Some(port)
    }

    /// The entry as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The default port for a URL scheme.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl std::str::FromStr for AllowedHost {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "`{s}` is not an outbound host ({why}); write it like \"https://api.example.com\", \"http://127.0.0.1:8080\" or \"https://*.example.com\""
            )
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("missing `scheme://`"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "*" => None,
            "http" => Some("http".to_owned()),
            "https" => Some("https".to_owned()),
            other => return Err(bad(&format!("scheme `{other}` is not http, https or *"))),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(bad("a host may not have a path"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("bad port"))?;
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(bad("`*` may only stand for a whole label at the front"));
            }
            HostPattern::SubdomainOf(suffix.to_owned())
        } else if host.contains('*') {
            return Err(bad("`*` may only stand for a whole label at the front"));
        } else {
            HostPattern::Exact(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            )
        };
        let (port, any_port) = match port {
            None => {
                if scheme.is_none() {
                    return Err(bad("with scheme `*`, give a port or `:*`"));
                }
                (None, false)
            }
            Some("*") => (None, true),
            Some(p) => (Some(p.parse::<u16>().map_err(|_| bad("bad port"))?), false),
        };
        Ok(Self {
            scheme,
            host,
            port,
            any_port,
            text: s.to_owned(),
        })
    }
}

/// Splits `host[:port]`, keeping `[v6]` literals whole.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, rest) = s.split_at(end + 1);
        return match rest.strip_prefix(':') {
            Some(p) => Some((host, Some(p))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p))),
        None => Some((s, None)),
    }
}

/// A function variable's value: literal text with `{{ name }}` placeholders for app variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePart {
    Literal(String),
    Variable(String),
}

impl Template {
    /// The app variables this template refers to.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Variable(v) => Some(v.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    /// Fills in the placeholders; `lookup` must know every variable (validation ensures it).
    pub fn render(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(s) => out.push_str(s),
                TemplatePart::Variable(v) => out.push_str(
                    &lookup(v).ok_or_else(|| format!("app variable `{v}` has no value"))?,
                ),
            }
        }
        Ok(out)
    }
}

impl std::str::FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(TemplatePart::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("`{s}` opens `{{{{` without a closing `}}}}`"))?;
            let name = after[..end].trim();
            if !is_variable_name(name) {
                return Err(format!(
                    "`{{{{ {name} }}}}` in `{s}` is not a variable name; use lowercase letters, digits and `_`"
                ));
            }
            parts.push(TemplatePart::Variable(name.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }
}

/// App variable names: lowercase letters, digits and `_`, starting with a letter.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

macro_rules! deserialize_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(de::Error::custom)
            }
        }
    )*};
}
deserialize_from_str!(HumanDuration, AllowedHost, Template);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) if n > 0 => Ok(Self(n)),
            Raw::Int(_) => Err(de::Error::custom("a size must be positive")),
            Raw::Text(s) => s.parse().map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!("128MiB".parse::<ByteSize>().unwrap().0, 128 << 20);
        assert_eq!("10MB".parse::<ByteSize>().unwrap().0, 10_000_000);
        assert_eq!("64 KiB".parse::<ByteSize>().unwrap().0, 64 << 10);
        assert!("lots".parse::<ByteSize>().is_err());
        assert!("0".parse::<ByteSize>().is_err());
    }

    #[test]
    fn hosts_match() {
        let h: AllowedHost = "https://api.example.com".parse().unwrap();
        assert!(h.allows("https", "api.example.com", 443));
        assert!(!h.allows("http", "api.example.com", 80));
        assert!(!h.allows("https", "api.example.com", 8443));
        let h: AllowedHost = "http://127.0.0.1:*".parse().unwrap();
        assert!(h.allows("http", "127.0.0.1", 41234));
        let h: AllowedHost = "https://*.example.com".parse().unwrap();
        assert!(h.allows("https", "a.b.example.com", 443));
        assert!(!h.allows("https", "example.com", 443));
        assert!(!h.allows("https", "badexample.com", 443));
        let h: AllowedHost = "http://[::1]:8080".parse().unwrap();
        assert!(h.allows("http", "[::1]", 8080));
        assert!("ftp://x".parse::<AllowedHost>().is_err());
        assert!("https://x.com/path".parse::<AllowedHost>().is_err());
        assert!("*://x.com".parse::<AllowedHost>().is_err());
    }

    #[test]
    fn templates_render() {
        let t: Template = "say {{ greeting }}, {{name}}!".parse().unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), ["greeting", "name"]);
        let out = t
            .render(|v| Some(if v == "greeting" { "hi" } else { "bob" }.to_owned()))
            .unwrap();
        assert_eq!(out, "say hi, bob!");
        assert!("{{ Bad-Name }}".parse::<Template>().is_err());
        assert!("{{ open".parse::<Template>().is_err());
    }
}
