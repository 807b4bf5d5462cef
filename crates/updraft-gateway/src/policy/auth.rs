//! `auth = ["<label>", …]` on a route: API keys and JWTs (DESIGN §9); any one listed label
//! lets a request in. A key is `ud_<id>_<secret>`, the secret 256 random bits, stored only
//! as its SHA-256; it is shown once, when made, may be scoped to route names and may expire.
//! JWTs are checked by [`super::jwt`]. The verified identity reaches the target as
//! `updraft-key-id` or `updraft-claim-<name>` (the edge sets them after stripping every client
//! `updraft-*` header).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower::{Layer, Service};

use super::BoxFuture;
use crate::{Body, error_response};

/// A stored API key: everything but its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    /// The public part (`ud_<id>_…`).
    pub id: String,
    /// What it is for (`partner-a`).
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// Route names it may call; empty means every route that takes API keys.
    pub routes: Vec<String>,
    /// When it was made (Unix seconds).
    pub created_at: u64,
    /// When it stops working (Unix seconds).
    pub expires_at: Option<u64>,
    /// Revoked keys stay listed, and refused.
    pub revoked: bool,
}

/// Where the node keeps API keys.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The key with this id.
    async fn key(&self, id: &str) -> Result<Option<ApiKey>, String>;
}

/// Who a request is, once a route's auth let it in; in the request's extensions.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The API key's id, for a key.
    pub key_id: Option<String>,
    /// A JWT's claims, as header values.
    pub claims: Vec<(String, String)>,
    /// What a limit `by = "key"` counts: `key:<id>` or `jwt:<sub>`.
    pub subject: String,
}

/// A new key: its id, and the whole token to hand out once.
pub fn new_key() -> std::io::Result<(String, String, String)> {
    let mut bytes = [0u8; 38];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    let id = hex(&bytes[..6]);
    let secret = hex(&bytes[6..]);
    let token = format!("ud_{id}_{secret}");
    Ok((id, hash_secret(&secret), token))
}

/// SHA-256 of `secret`, hex.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The longest token looked at; anything longer is refused unread.
const MAX_TOKEN: usize = 256;

/// Puts auth checks in front of a route.
#[derive(Clone)]
pub struct AuthLayer {
    /// The route's name (keys are scoped to names).
    pub route: String,
    /// The node's keys, when a listed label is `api-key`.
    pub keys: Option<Arc<dyn KeyStore>>,
    /// The listed `jwt` labels.
    pub jwts: Vec<Arc<super::jwt::JwtVerifier>>,
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

/// A route behind API keys.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, B> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone is ready to be called (tower's "take the ready one" rule).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let layer = self.layer.clone();
        let token = presented(&req).map(str::to_owned);
        Box::pin(async move {
            match check(&layer, token.as_deref()).await {
                Ok(identity) => {
                    req.extensions_mut().insert(identity);
                    inner.call(req).await
                }
                Err(refused) => Ok(*refused),
            }
        })
    }
}

fn refuse(status: StatusCode, message: &str) -> Box<Response<Body>> {
    let mut r = error_response(status, message, None);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"updraft\""),
        );
    }
    Box::new(r)
}

/// The token a request carries: `x-api-key`, else `Authorization: Bearer`.
fn presented<B>(req: &Request<B>) -> Option<&str> {
    if let Some(v) = req.headers().get("x-api-key") {
        return v.to_str().ok();
    }
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn check(layer: &AuthLayer, token: Option<&str>) -> Result<Identity, Box<Response<Body>>> {
    let route = &layer.route;
    let Some(token) = token else {
        let how = match (&layer.keys, layer.jwts.is_empty()) {
            (Some(_), true) => {
                "an API key; send it as `x-api-key: ud_…` or `Authorization: Bearer ud_…`"
            }
            (None, false) => "a JWT; send it as `Authorization: Bearer <token>`",
            _ => "an API key (`x-api-key: ud_…`) or a JWT (`Authorization: Bearer <token>`)",
        };
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            &format!("route `{route}` needs {how}"),
        ));
    };
    if !token.starts_with("ud_") || layer.keys.is_none() {
        return check_jwt(layer, token).await;
    }
    check_key(layer, token).await
}

async fn check_jwt(layer: &AuthLayer, token: &str) -> Result<Identity, Box<Response<Body>>> {
    let mut why = format!("route `{}` takes no JWTs", layer.route);
    for verifier in &layer.jwts {
        match verifier.verify(token).await {
            Ok((claims, sub)) => {
                return Ok(Identity {
                    key_id: None,
                    subject: format!("jwt:{}", sub.unwrap_or_default()),
                    claims,
                });
            }
            Err(refused) => why = refused.0,
        }
    }
    Err(refuse(StatusCode::UNAUTHORIZED, &why))
}

async fn check_key(layer: &AuthLayer, token: &str) -> Result<Identity, Box<Response<Body>>> {
    let route = &layer.route;
    let Some(keys) = &layer.keys else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "this route takes no API keys",
        ));
    };
    let malformed = || {
        refuse(
            StatusCode::UNAUTHORIZED,
            "the API key is malformed; keys look like `ud_<id>_<secret>`, as `updraft keys create` prints them",
        )
    };
    if token.len() > MAX_TOKEN {
        return Err(malformed());
    }
    let Some((id, secret)) = token
        .strip_prefix("ud_")
        .and_then(|rest| rest.split_once('_'))
        .filter(|(id, secret)| is_hex(id) && is_hex(secret))
    else {
        return Err(malformed());
    };
    let key = match keys.key(id).await {
        Ok(Some(key)) => key,
        Ok(None) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                &format!("API key `{id}` is not known"),
            ));
        }
        Err(e) => {
            let mut r = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot read API keys: {e}"),
                None,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(Box::new(r));
        }
    };
    if !constant_time_eq(hash_secret(secret).as_bytes(), key.hash.as_bytes()) {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            &format!("API key `{id}` is not known"),
        ));
    }
    if key.revoked {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            &format!("API key `{id}` is revoked"),
        ));
    }
    if let Some(at) = key.expires_at
        && now_secs() >= at
    {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            &format!("API key `{id}` has expired"),
        ));
    }
    if !key.routes.is_empty() && !key.routes.iter().any(|r| r == route) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "API key `{id}` may not call route `{route}`; it may call {}",
                key.routes.join(", ")
            ),
        ));
    }
    Ok(Identity {
        subject: format!("key:{}", key.id),
        key_id: Some(key.id),
        claims: Vec::new(),
    })
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_are_distinct_and_match_their_hash() {
        let (id, hash, token) = new_key().unwrap();
        let (id2, _, token2) = new_key().unwrap();
        assert_ne!(id, id2);
        assert_ne!(token, token2);
        let secret = token.strip_prefix(&format!("ud_{id}_")).unwrap();
        assert_eq!(secret.len(), 64, "256 bits");
        assert_eq!(hash_secret(secret), hash);
    }
}
