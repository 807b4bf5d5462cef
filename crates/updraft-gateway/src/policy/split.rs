//! Weighted targets (a 90/10 canary): smooth weighted round robin, so any run of requests
//! splits as close to the weights as whole requests allow, optionally sticky by a cookie
//! the gateway sets or by a header's value.

use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use updraft_manifest::gateway::Sticky;

/// How a client keeps its target.
#[derive(Debug, Clone)]
enum StickyBy {
    Cookie(String),
    Header(HeaderName),
}

/// A route's choice among its targets.
#[derive(Debug)]
pub struct Split {
    weights: Vec<i64>,
    total: i64,
    current: Mutex<Vec<i64>>,
    sticky: Option<StickyBy>,
}

/// The chosen target, and the cookie that keeps the client on it.
#[derive(Debug)]
pub struct Pick {
    /// Index into the route's targets.
    pub index: usize,
    /// `Set-Cookie` to add to the response.
    pub set_cookie: Option<HeaderValue>,
}

impl Split {
    /// Targets with these weights (at least one above 0, checked by the manifest).
    pub fn new(weights: &[u32], sticky: Option<&Sticky>) -> Self {
        let weights: Vec<i64> = weights.iter().map(|w| i64::from(*w)).collect();
        Self {
            total: weights.iter().sum(),
            current: Mutex::new(vec![0; weights.len()]),
            weights,
            sticky: sticky.and_then(|s| match (&s.cookie, &s.header) {
                (Some(c), _) => Some(StickyBy::Cookie(c.clone())),
                (None, Some(h)) => HeaderName::from_bytes(h.as_bytes())
                    .ok()
                    .map(StickyBy::Header),
                (None, None) => None,
            }),
        }
    }

    /// Picks the target for a request with `headers`.
    pub fn pick(&self, headers: &HeaderMap) -> Pick {
        match &self.sticky {
            Some(StickyBy::Cookie(name)) => {
                if let Some(index) = cookie(headers, name)
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|i| self.weights.get(*i).is_some_and(|w| *w > 0))
                {
                    return Pick {
                        index,
                        set_cookie: None,
                    };
                }
                let index = self.next();
                Pick {
                    index,
                    set_cookie: HeaderValue::from_str(&format!(
                        "{name}={index}; Path=/; HttpOnly; SameSite=Lax"
                    ))
                    .ok(),
                }
            }
            Some(StickyBy::Header(name)) => match headers.get(name) {
                Some(value) => Pick {
                    index: self.by_hash(value.as_bytes()),
                    set_cookie: None,
                },
                None => Pick {
                    index: self.next(),
                    set_cookie: None,
                },
            },
            None => Pick {
                index: self.next(),
                set_cookie: None,
            },
        }
    }

    /// Smooth weighted round robin (nginx's): add each weight, take the largest, subtract
    /// the total from it.
    fn next(&self) -> usize {
        if self.weights.len() == 1 {
            return 0;
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut best = 0;
        for (i, w) in self.weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= self.total;
        best
    }

    /// The same value lands on the same target, in proportion to the weights.
    fn by_hash(&self, value: &[u8]) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        value.hash(&mut hasher);
        let mut point = (hasher.finish() % self.total.max(1) as u64) as i64;
        for (i, w) in self.weights.iter().enumerate() {
            if point < *w {
                return i;
            }
            point -= w;
        }
        0
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ninety_ten_is_exact_over_each_hundred() {
        let split = Split::new(&[90, 10], None);
        let mut counts = [0; 2];
        for _ in 0..1000 {
            counts[split.pick(&HeaderMap::new()).index] += 1;
        }
        assert_eq!(counts, [900, 100]);
    }

    #[test]
    fn sticky_cookie_keeps_the_target_and_bad_cookies_are_replaced() {
        let split = Split::new(
            &[1, 1],
            Some(&Sticky {
                cookie: Some("canary".into()),
                header: None,
            }),
        );
        let first = split.pick(&HeaderMap::new());
        let cookie = first.set_cookie.unwrap();
        assert!(
            cookie
                .to_str()
                .unwrap()
                .starts_with(&format!("canary={}", first.index))
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("a=b; canary={}", first.index).parse().unwrap(),
        );
        for _ in 0..10 {
            let again = split.pick(&headers);
            assert_eq!(again.index, first.index);
            assert!(again.set_cookie.is_none());
        }
        headers.insert(header::COOKIE, "canary=7".parse().unwrap());
        assert!(split.pick(&headers).set_cookie.is_some());
    }

    #[test]
    fn sticky_header_maps_a_value_to_one_target() {
        let split = Split::new(
            &[50, 50],
            Some(&Sticky {
                cookie: None,
                header: Some("x-user".into()),
            }),
        );
        let mut seen = [0; 2];
        for user in 0..200 {
            let mut headers = HeaderMap::new();
            headers.insert("x-user", user.to_string().parse().unwrap());
            let a = split.pick(&headers).index;
            assert_eq!(split.pick(&headers).index, a);
            seen[a] += 1;
        }
        assert!(seen[0] > 50 && seen[1] > 50, "{seen:?}");
    }
}
