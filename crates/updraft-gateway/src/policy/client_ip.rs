//! Who the client is: the peer address, or the first untrusted address of `x-forwarded-for`
//! when the peer is a trusted proxy (`[gateway] trusted_proxies`).

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use updraft_manifest::gateway::parse_cidr;

/// The client of a request, put in its extensions before the route's stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The proxies whose `x-forwarded-for` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// From `[gateway] trusted_proxies` (already checked by the manifest).
    pub fn new(list: &[String]) -> Self {
        Self(list.iter().filter_map(|s| parse_cidr(s)).collect())
    }

    /// Whether `ip` is one of the proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|(net, len)| in_net(ip, canonical(*net), *len))
    }

    /// The client: walking `x-forwarded-for` from the right, the first address that is not a
    /// trusted proxy; the peer itself when it is not trusted.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientIp {
        let mut client = peer.ip();
        if !self.trusts(client) {
            return ClientIp(client);
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        for hop in hops.into_iter().rev() {
            client = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        ClientIp(client)
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(trusted: &[&str], peer: &str, xff: Option<&str>) -> String {
        let proxies =
            TrustedProxies::new(&trusted.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut headers = HeaderMap::new();
        if let Some(x) = xff {
            headers.insert("x-forwarded-for", x.parse().unwrap());
        }
        proxies
            .client(format!("{peer}:1000").parse().unwrap(), &headers)
            .0
            .to_string()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        assert_eq!(client(&[], "10.0.0.1", Some("1.2.3.4")), "10.0.0.1");
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.1", Some("1.2.3.4")),
            "1.2.3.4"
        );
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "10.0.0.1",
                Some("6.6.6.6, 1.2.3.4, 10.0.0.7")
            ),
            "1.2.3.4",
            "a client cannot spoof by prepending"
        );
        assert_eq!(client(&["10.0.0.0/8"], "10.0.0.1", None), "10.0.0.1");
        assert_eq!(
            client(&["127.0.0.1"], "127.0.0.2", Some("1.2.3.4")),
            "127.0.0.2"
        );
        assert_eq!(
            client(&["::1"], "[::1]", Some("2001:db8::1")),
            "2001:db8::1"
        );
    }
}
