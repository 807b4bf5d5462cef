//! What every client command shares: where the server is, the token, the output format,
//! and turning API errors into messages.

use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;
use updraft_server::api::AppInfo;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// One JSON document (or one per line for streams).
    Json,
}

/// Options of every command that talks to a running updraft.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The updraft to talk to.
    #[arg(
        long,
        env = "UPDRAFT_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Admin token, needed when the server does not listen on loopback.
    #[arg(long, env = "UPDRAFT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub output: Output,
    /// The app to talk about (default: the only app the server hosts).
    #[arg(long, env = "UPDRAFT_APP", global = true)]
    pub app: Option<String>,
}

/// A client of one app's admin API (`/_updraft/api/v1/apps/<app>`).
pub struct Client {
    base: String,
    app: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// Connects to the server and settles which app the command is about.
    pub async fn connect(args: &ClientArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot set up the HTTP client")?;
        let mut client = Self {
            base: args.server.trim_end_matches('/').to_owned(),
            app: args.app.clone().unwrap_or_default(),
            token: args.token.clone(),
            http,
        };
        if client.app.is_empty() {
            client.app = client.only_app().await?;
        }
        Ok(client)
    }

    /// The app a node hosts, when it hosts one.
    async fn only_app(&self) -> anyhow::Result<String> {
        let url = format!("{}/_updraft/api/v1/apps", self.base);
        let req = self.authorized(self.http.get(&url));
        let apps: Vec<AppInfo> = check(self.send(req).await?)
            .await?
            .json()
            .await
            .with_context(|| format!("unexpected answer from `{url}`"))?;
        match apps.as_slice() {
            [one] => Ok(one.name.clone()),
            [] => anyhow::bail!("no app runs on `{}`", self.base),
            many => anyhow::bail!(
                "`{}` hosts several apps ({}); pick one with `--app` (or `UPDRAFT_APP`)",
                self.base,
                many.iter()
                    .map(|a| format!("`{}`", a.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn authorized(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/_updraft/api/v1/apps/{}{path}", self.base, self.app)
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.authorized(self.http.request(method, self.url(path)))
    }

    /// Sends `req`; connection failures become a message about the server.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        req.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach updraft at `{}`: {e}; start it with `updraft up`, or point `--server` (or `UPDRAFT_SERVER`) at it",
                self.base
            )
        })
    }

    /// GETs `path` and decodes JSON; API errors become their message.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(self.request(reqwest::Method::GET, path)).await?;
        let response = check(response).await?;
        response
            .json()
            .await
            .with_context(|| format!("unexpected answer from `{}`", self.url(path)))
    }
}

/// Turns an error answer of the API into an error carrying its message.
pub async fn check(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or(text);
    anyhow::bail!("{message} (HTTP {})", status.as_u16())
}
