//! API keys for `[gateway.auth.<label>] type = "api-key"`: made (the token shown once),
//! listed (never the secret) and revoked. Stored hashed in the node's state.

use updraft_gateway::policy::auth::{self, ApiKey, KeyStore};

use super::*;

/// The kv namespace the keys live in.
pub(crate) const KEYS_NAMESPACE: &str = "gateway-keys";

/// Keys in a kv namespace, by id, as JSON, with the ones the gateway checked kept in memory
/// for a few seconds, so a request does not read the state store. This node's own changes
/// (a new or revoked key) drop the cached entry at once.
pub(crate) struct KvKeys {
    pub(crate) store: Arc<dyn updraft_store::KvStore>,
    cache: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
}

/// A key (or its absence) and when it was read.
type Cached = (std::time::Instant, Option<ApiKey>);

/// How long a checked key (or its absence) is believed without reading the store again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; past it the cache starts over (ids are random, so no order helps).
const KEY_CACHE_MAX: usize = 10_000;

impl KvKeys {
    pub(crate) fn new(store: Arc<dyn updraft_store::KvStore>) -> Self {
        Self {
            store,
            cache: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Forgets what is cached about `id`.
    pub(crate) fn forget(&self, id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// The key as stored, past the cache.
    pub(crate) async fn read(&self, id: &str) -> Result<Option<ApiKey>, String> {
        match self.store.get(id).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("key `{id}` is stored unreadable: {e}")),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl KeyStore for KvKeys {
    async fn key(&self, id: &str) -> Result<Option<ApiKey>, String> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .filter(|(at, _)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(_, key)| key.clone());
        if let Some(key) = cached {
            return Ok(key);
        }
        let key = self.read(id).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(id.to_owned(), (std::time::Instant::now(), key.clone()));
        Ok(key)
    }
}

/// What to make.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewKey {
    /// What it is for (`partner-a`).
    pub name: String,
    /// Route names it may call (`[[gateway.route]] name`); empty or absent: every route that
    /// takes API keys.
    #[serde(default)]
    pub routes: Vec<String>,
    /// How long it works (`30d`, `12h`); forever when absent.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A key as listed: everything but its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyInfo {
    /// Its id (`ud_<id>_…`).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// Route names it may call; empty: every route that takes API keys.
    pub routes: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, if it expires.
    pub expires_at: Option<u64>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A key just made: the only time its token is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The whole key to hand out: `ud_<id>_<secret>`.
    pub key: String,
    /// What is stored.
    pub info: KeyInfo,
}

impl From<ApiKey> for KeyInfo {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            routes: k.routes,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked: k.revoked,
        }
    }
}

#[utoipa::path(post, path = "/_updraft/api/v1/apps/{app}/keys", params(("app" = String, Path, description = "the app's name")), request_body = NewKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ApiError)))]
pub(super) async fn create_key(
    Extension(state): Extension<Arc<AppState>>,
    Json(new): Json<NewKey>,
) -> Response {
    let keyed: Vec<&str> = state.keyed_routes();
    if let Some(unknown) = new.routes.iter().find(|r| !keyed.contains(&r.as_str())) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!(
                "route `{unknown}` takes no API keys; name a `[[gateway.route]]` with `auth`: {}",
                if keyed.is_empty() {
                    "this app has none".to_owned()
                } else {
                    keyed.join(", ")
                }
            ),
        );
    }
    let expires_at = match new.expires_in.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) => Some(auth::now_secs() + d.as_secs().max(1)),
        Some(Err(e)) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("`expires_in` is not a duration ({e}); write one like \"30d\" or \"12h\""),
            );
        }
    };
    let (id, hash, token) = match auth::new_key() {
        Ok(k) => k,
        Err(e) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot make a key: {e}"),
            );
        }
    };
    let key = ApiKey {
        id: id.clone(),
        name: new.name,
        hash,
        routes: new.routes,
        created_at: auth::now_secs(),
        expires_at,
        revoked: false,
    };
    if let Err(e) = store(&state, &key).await {
        return e;
    }
    (
        StatusCode::CREATED,
        Json(CreatedKey {
            key: token,
            info: key.into(),
        }),
    )
        .into_response()
}

async fn store(state: &AppState, key: &ApiKey) -> Result<(), Response> {
    let bytes = serde_json::to_vec(key)
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let stored = state.keys.store.set(&key.id, &bytes).await.map_err(|e| {
        api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot store the key: {e}"),
        )
    });
    state.keys.forget(&key.id);
    stored
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/keys", params(("app" = String, Path, description = "the app's name")),
    responses((status = 200, body = [KeyInfo])))]
pub(super) async fn keys(Extension(state): Extension<Arc<AppState>>) -> Response {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    // Bounded: 100 pages of 1,000 keys.
    for _ in 0..100 {
        let page = match state.keys.store.list("", cursor.as_deref(), 1000).await {
            Ok(p) => p,
            Err(e) => return api_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
        for id in &page.keys {
            if let Ok(Some(k)) = state.keys.read(id).await {
                all.push(KeyInfo::from(k));
            }
        }
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Json(all).into_response()
}

#[utoipa::path(delete, path = "/_updraft/api/v1/apps/{app}/keys/{id}", params(("app" = String, Path, description = "the app's name"), ("id" = String, Path, description = "the key's id")),
    responses((status = 200, body = KeyInfo), (status = 404, body = ApiError)))]
pub(super) async fn revoke_key(
    Extension(state): Extension<Arc<AppState>>,
    Path(id): Path<String>,
) -> Response {
    let id = id
        .strip_prefix("ud_")
        .map_or(id.as_str(), |rest| rest.split('_').next().unwrap_or(rest))
        .to_owned();
    match state.keys.read(&id).await {
        Ok(Some(mut key)) => {
            key.revoked = true;
            if let Err(e) = store(&state, &key).await {
                return e;
            }
            Json(KeyInfo::from(key)).into_response()
        }
        Ok(None) => api_error(
            StatusCode::NOT_FOUND,
            format!("API key `{id}` does not exist; `updraft keys ls` lists the keys"),
        ),
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}
