//! `[gateway.auth.<label>] type = "jwt"`: bearer tokens signed by an identity provider,
//! checked against a JWKS (a file, or an https URL fetched with a bounded time, cached, and
//! fetched again on an unknown `kid` at most once a minute). Accepted: the algorithms the
//! label lists (HS256, RS256, ES256, EdDSA, …); `alg: none`, a `crit` header, an algorithm
//! the key is not for, and tokens over 8 KiB are refused. Verified claims reach the target as
//! `updraft-claim-<name>`: strings as they are, anything else as compact JSON.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use updraft_manifest::gateway::AuthDecl;

/// The longest token read.
pub const MAX_TOKEN: usize = 8 * 1024;
/// An unknown `kid` fetches a URL's JWKS again at most this often.
const REFETCH_EVERY: Duration = Duration::from_secs(60);
/// How long fetching a JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default clock leeway for `exp` and `nbf`.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Where the keys come from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Url(http::Uri),
}

struct Key {
    key: DecodingKey,
    /// The JWK's `alg`, when it names one: the only algorithm it verifies.
    alg: Option<Algorithm>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, std::sync::Arc<Key>>,
    /// Keys without a `kid`, tried in order.
    anonymous: Vec<std::sync::Arc<Key>>,
    fetched: Option<Instant>,
}

/// One JWT label's checks.
pub struct JwtVerifier {
    label: String,
    issuer: Option<String>,
    audience: Option<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    required: Vec<String>,
    source: Source,
    keys: RwLock<Keys>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("label", &self.label)
            .finish()
    }
}

/// Why a token is refused (the message never holds the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl JwtVerifier {
    /// From its declaration; a JWKS file is read now (relative to `app_dir`), a URL's is
    /// fetched on first use.
    pub fn new(label: &str, decl: &AuthDecl, app_dir: &std::path::Path) -> Result<Self, String> {
        let jwks = decl
            .jwks
            .as_deref()
            .ok_or_else(|| format!("`[gateway.auth.{label}]` has no `jwks`"))?;
        let source = if jwks.starts_with("https://") || jwks.starts_with("http://") {
            Source::Url(
                jwks.parse()
                    .map_err(|e| format!("`{jwks}` is not a URL: {e}"))?,
            )
        } else {
            Source::File(app_dir.join(jwks))
        };
        let algorithms = decl
            .algorithms
            .iter()
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|_| format!("`{a}` is not a JWT algorithm"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let verifier = Self {
            label: label.to_owned(),
            issuer: decl.issuer.clone(),
            audience: decl.audience.clone(),
            algorithms,
            leeway: decl.leeway.map_or(DEFAULT_LEEWAY, |d| d.0),
            required: decl.required_claims.clone(),
            source,
            keys: RwLock::new(Keys::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
        };
        if let Source::File(path) = &verifier.source {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read JWKS `{}`: {e}", path.display()))?;
            verifier.install(&text)?;
        }
        Ok(verifier)
    }

    /// Replaces the keys with a JWKS document's.
    fn install(&self, text: &str) -> Result<(), String> {
        let set: JwkSet =
            serde_json::from_str(text).map_err(|e| format!("the JWKS is not valid: {e}"))?;
        let mut keys = Keys {
            fetched: Some(Instant::now()),
            ..Keys::default()
        };
        for jwk in &set.keys {
            // Keys this build cannot use (an unknown curve) are skipped, not fatal.
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            let key = std::sync::Arc::new(Key { key, alg });
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), key);
                }
                None => keys.anonymous.push(key),
            }
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// Fetches a URL's JWKS when it was never fetched, or (`force`) when the last
    /// fetch is older than the refetch interval.
    async fn refresh(&self, force: bool) {
        let Source::Url(uri) = &self.source else {
            return;
        };
        let _one_at_a_time = self.fetch_lock.lock().await;
        let fetched = self.keys.read().unwrap_or_else(|e| e.into_inner()).fetched;
        let due = match fetched {
            None => true,
            Some(at) => force && at.elapsed() >= REFETCH_EVERY,
        };
        if !due {
            return;
        }
        match fetch(uri).await {
            Ok(text) => {
                if let Err(e) = self.install(&text) {
                    tracing::warn!(auth = %self.label, "JWKS from `{uri}`: {e}");
                }
            }
            Err(e) => {
                tracing::warn!(auth = %self.label, "cannot fetch JWKS `{uri}`: {e}");
                // Count the attempt, so a down IdP is not asked on every request.
                let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
                keys.fetched = Some(Instant::now());
            }
        }
    }

    fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Option<std::sync::Arc<Key>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            None => keys
                .anonymous
                .iter()
                .find(|k| k.alg.is_none_or(|a| a == alg))
                .cloned(),
        }
    }

    /// Checks `token`; returns its claims as `(name, header value)` pairs, and its `sub`.
    pub async fn verify(
        &self,
        token: &str,
    ) -> Result<(Vec<(String, String)>, Option<String>), Refused> {
        let refuse = |why: &str| Err(Refused(why.to_owned()));
        if token.len() > MAX_TOKEN {
            return refuse("the token is over 8 KiB");
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return refuse("the token is malformed: a JWT has three parts separated by `.`");
        }
        let header: Map<String, Value> = match base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        {
            Some(h) => h,
            None => return refuse("the token's header is not base64url JSON"),
        };
        let alg_text = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg_text.eq_ignore_ascii_case("none") || alg_text.is_empty() {
            return refuse("unsigned tokens (`alg: none`) are refused");
        }
        if header.contains_key("crit") {
            return refuse("the token has a `crit` header this gateway does not understand");
        }
        let Ok(alg) = alg_text.parse::<Algorithm>() else {
            return refuse("the token's algorithm is not supported");
        };
        if !self.algorithms.contains(&alg) {
            return Err(Refused(format!(
                "algorithm `{alg_text}` is not accepted by auth `{}`",
                self.label
            )));
        }
        let kid = header.get("kid").and_then(Value::as_str);
        self.refresh(false).await;
        let key = match self.key_for(kid, alg) {
            Some(k) => k,
            None => {
                self.refresh(true).await;
                match self.key_for(kid, alg) {
                    Some(k) => k,
                    None => {
                        return refuse("the token is signed by a key this gateway does not know");
                    }
                }
            }
        };
        if key.alg.is_some_and(|a| a != alg) {
            return refuse("the token's algorithm is not the one its key is for");
        }
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| Refused(describe(&e)))?;
        for name in &self.required {
            if !data.claims.contains_key(name) {
                return Err(Refused(format!(
                    "the token lacks the required claim `{name}`"
                )));
            }
        }
        let sub = data
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let claims = data
            .claims
            .into_iter()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (name.to_ascii_lowercase(), text)
            })
            .collect();
        Ok((claims, sub))
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the token has expired".to_owned(),
        K::ImmatureSignature => "the token is not valid yet (`nbf`)".to_owned(),
        K::InvalidIssuer => "the token's issuer is not the expected one".to_owned(),
        K::InvalidAudience => "the token's audience is not the expected one".to_owned(),
        K::InvalidSignature => "the token's signature does not verify".to_owned(),
        K::InvalidAlgorithm => "the token's algorithm does not match its key".to_owned(),
        K::MissingRequiredClaim(c) => format!("the token lacks the required claim `{c}`"),
        _ => "the token is malformed".to_owned(),
    }
}

async fn fetch(uri: &http::Uri) -> Result<String, String> {
    use http_body_util::BodyExt;
    let client = super::upstream::plain_client().map_err(|e| e.to_string())?;
    let req = http::Request::get(uri.clone())
        .body(crate::full(bytes::Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(FETCH_TIMEOUT, async {
        let r = client.request(req).await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("it answered {}", r.status()));
        }
        let body = http_body_util::Limited::new(r.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(body.to_bytes())
    })
    .await
    .map_err(|_| format!("no answer within {}s", FETCH_TIMEOUT.as_secs()))??;
    String::from_utf8(response.to_vec()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use updraft_manifest::gateway::AuthKind;

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
    const ISS: &str = "https://id.example.com/";
    const AUD: &str = "shop";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn verifier(required: &[&str]) -> JwtVerifier {
        let decl = AuthDecl {
            kind: AuthKind::Jwt,
            jwks: Some("jwks.json".into()),
            issuer: Some(ISS.into()),
            audience: Some(AUD.into()),
            algorithms: ["RS256", "ES256", "EdDSA", "HS256"]
                .map(String::from)
                .to_vec(),
            leeway: Some(updraft_manifest::HumanDuration(Duration::from_secs(5))),
            required_claims: required.iter().map(|s| s.to_string()).collect(),
        };
        JwtVerifier::new("spa", &decl, std::path::Path::new(FIXTURES)).unwrap()
    }

    fn now() -> i64 {
        crate::policy::auth::now_secs() as i64
    }

    fn claims() -> Value {
        json!({ "iss": ISS, "aud": AUD, "sub": "u-1", "exp": now() + 600, "nbf": now() - 10,
                "email": "a@example.com", "admin": true, "n": 7, "roles": ["a", "b"], "org": { "id": 1 } })
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture("ec.pem")).unwrap(),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&fixture("ed25519.pem")).unwrap(),
            _ => EncodingKey::from_secret(&fixture("hs256.secret")),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &key).unwrap()
    }

    fn b64(v: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    /// A token with this header and claims and a signature of garbage.
    fn raw(header: &Value, claims: &Value) -> String {
        format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes()),
            b64(b"not a signature")
        )
    }

    fn with(f: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut c = claims();
        if let Value::Object(m) = &mut c {
            f(m);
        }
        c
    }

    fn swap_segment(token: &str, i: usize, value: &str) -> String {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[i] = value.to_owned();
        parts.join(".")
    }

    #[tokio::test]
    async fn each_algorithm_verifies_and_claims_become_header_values() {
        let v = verifier(&["sub"]);
        for (alg, kid) in [
            (Algorithm::RS256, "rsa-1"),
            (Algorithm::ES256, "ec-1"),
            (Algorithm::EdDSA, "ed-1"),
            (Algorithm::HS256, "hs-1"),
        ] {
            let (claims, sub) = v
                .verify(&sign(alg, Some(kid), &claims()))
                .await
                .unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
            assert_eq!(sub.as_deref(), Some("u-1"));
            let get = |n: &str| claims.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            assert_eq!(get("email"), Some("a@example.com"));
            assert_eq!(get("admin"), Some("true"));
            assert_eq!(get("n"), Some("7"));
            assert_eq!(get("roles"), Some("[\"a\",\"b\"]"));
            assert_eq!(get("org"), Some("{\"id\":1}"));
        }
    }

    #[tokio::test]
    async fn forty_bad_tokens_are_each_refused_without_echoing_them() {
        let v = verifier(&["sub"]);
        let good = sign(Algorithm::RS256, Some("rsa-1"), &claims());
        let other_rsa = {
            let key = EncodingKey::from_rsa_pem(&fixture("other-rsa.pem")).unwrap();
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some("rsa-1".into());
            encode(&h, &claims(), &key).unwrap()
        };
        let hs_with_rsa_public = |kid: Option<&str>| {
            let key = EncodingKey::from_secret(&fixture("rsa-public.pem"));
            let mut h = Header::new(Algorithm::HS256);
            h.kid = kid.map(str::to_owned);
            encode(&h, &claims(), &key).unwrap()
        };
        let tampered = swap_segment(
            &good,
            1,
            &b64(with(|m| {
                m.insert("sub".into(), json!("admin"));
            })
            .to_string()
            .as_bytes()),
        );
        let es_token_called_rs = {
            let t = sign(Algorithm::ES256, Some("ec-1"), &claims());
            swap_segment(
                &t,
                0,
                &b64(json!({"alg": "RS256", "kid": "ec-1"})
                    .to_string()
                    .as_bytes()),
            )
        };
        let rs_kid_on_oct = swap_segment(
            &good,
            0,
            &b64(json!({"alg": "RS256", "kid": "hs-1"})
                .to_string()
                .as_bytes()),
        );
        let c = claims();
        let cases: Vec<(&str, String)> = vec![
            ("empty", String::new()),
            ("one segment", "abc".into()),
            ("two segments", "a.b".into()),
            ("four segments", "a.b.c.d".into()),
            ("five segments (JWE)", "a.b.c.d.e".into()),
            ("bad base64 header", "!!!.e30.sig".into()),
            ("header not JSON", format!("{}.e30.sig", b64(b"hello"))),
            ("alg none", raw(&json!({"alg": "none"}), &c)),
            ("alg None", raw(&json!({"alg": "None"}), &c)),
            ("alg NONE", raw(&json!({"alg": "NONE"}), &c)),
            ("alg nOnE", raw(&json!({"alg": "nOnE"}), &c)),
            (
                "alg none with empty signature",
                format!(
                    "{}.{}.",
                    b64(json!({"alg":"none"}).to_string().as_bytes()),
                    b64(c.to_string().as_bytes())
                ),
            ),
            ("alg missing", raw(&json!({"typ": "JWT"}), &c)),
            ("alg unknown", raw(&json!({"alg": "HS999"}), &c)),
            (
                "alg lowercase",
                raw(&json!({"alg": "rs256", "kid": "rsa-1"}), &c),
            ),
            (
                "alg not accepted",
                raw(&json!({"alg": "HS384", "kid": "hs-1"}), &c),
            ),
            (
                "crit header",
                raw(
                    &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}),
                    &c,
                ),
            ),
            ("oversized", format!("{good}{}", "A".repeat(MAX_TOKEN))),
            (
                "expired",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.insert("exp".into(), json!(now() - 60));
                    }),
                ),
            ),
            (
                "not yet valid",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.insert("nbf".into(), json!(now() + 600));
                    }),
                ),
            ),
            (
                "wrong issuer",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.insert("iss".into(), json!("https://evil.example/"));
                    }),
                ),
            ),
            (
                "issuer without its slash",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.insert("iss".into(), json!("https://id.example.com"));
                    }),
                ),
            ),
            (
                "missing issuer",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.remove("iss");
                    }),
                ),
            ),
            (
                "wrong audience",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.insert("aud".into(), json!("other"));
                    }),
                ),
            ),
            (
                "audience list without ours",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.insert("aud".into(), json!(["a", "b"]));
                    }),
                ),
            ),
            (
                "missing audience",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.remove("aud");
                    }),
                ),
            ),
            (
                "missing exp",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.remove("exp");
                    }),
                ),
            ),
            (
                "exp not a number",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.insert("exp".into(), json!("tomorrow"));
                    }),
                ),
            ),
            (
                "missing required sub",
                sign(
                    Algorithm::RS256,
                    Some("rsa-1"),
                    &with(|m| {
                        m.remove("sub");
                    }),
                ),
            ),
            ("unknown kid", sign(Algorithm::RS256, Some("rsa-9"), &c)),
            ("no kid, no anonymous key", sign(Algorithm::RS256, None, &c)),
            ("signed by another key", other_rsa),
            ("tampered payload", tampered),
            (
                "payload not JSON",
                swap_segment(&good, 1, &b64(b"not json")),
            ),
            ("empty signature", swap_segment(&good, 2, "")),
            (
                "garbage signature",
                swap_segment(&good, 2, &b64(b"garbage")),
            ),
            ("signature not base64", swap_segment(&good, 2, "***")),
            (
                "HS256 signed with the RSA public key, RSA kid",
                hs_with_rsa_public(Some("rsa-1")),
            ),
            (
                "HS256 signed with the RSA public key, HS kid",
                hs_with_rsa_public(Some("hs-1")),
            ),
            (
                "HS256 signed with the RSA public key, no kid",
                hs_with_rsa_public(None),
            ),
            ("ES256 token relabelled RS256", es_token_called_rs),
            ("RS256 alg on the oct key", rs_kid_on_oct),
            ("leading space", format!(" {good}")),
        ];
        assert!(cases.len() >= 40, "{}", cases.len());
        for (name, token) in &cases {
            match v.verify(token).await {
                Ok(_) => panic!("`{name}` was accepted"),
                Err(Refused(why)) => {
                    assert!(
                        token.len() < 12 || !why.contains(token.as_str()),
                        "`{name}` echoes the token: {why}"
                    );
                }
            }
        }
        // The reason names what is wrong.
        for (name, expected) in [
            ("alg nOnE", "`alg: none`"),
            ("crit header", "`crit`"),
            ("oversized", "8 KiB"),
            ("expired", "has expired"),
            ("not yet valid", "not valid yet"),
            ("wrong issuer", "issuer"),
            ("wrong audience", "audience"),
            ("missing exp", "`exp`"),
            ("missing required sub", "`sub`"),
            ("unknown kid", "does not know"),
            ("signed by another key", "signature does not verify"),
            ("tampered payload", "signature does not verify"),
            ("alg not accepted", "not accepted"),
            ("HS256 signed with the RSA public key, RSA kid", "algorithm"),
            ("ES256 token relabelled RS256", "algorithm"),
        ] {
            let token = &cases.iter().find(|(n, _)| *n == name).unwrap().1;
            let why = v.verify(token).await.unwrap_err().0;
            assert!(why.contains(expected), "`{name}`: {why}");
        }
        assert!(v.verify(&good).await.is_ok(), "the control token passes");
    }

    #[test]
    fn a_missing_jwks_file_says_which() {
        let decl = AuthDecl {
            kind: AuthKind::Jwt,
            jwks: Some("nope.json".into()),
            issuer: None,
            audience: None,
            algorithms: vec!["RS256".into()],
            leeway: None,
            required_claims: vec![],
        };
        let e = JwtVerifier::new("spa", &decl, std::path::Path::new(FIXTURES)).unwrap_err();
        assert!(
            e.contains("cannot read JWKS") && e.contains("nope.json"),
            "{e}"
        );
    }
}
