//! Static SPA assets: files from a folder, with `index.html` for paths that name no file.
//!
//! Hidden names (`.env`, `.git/`, `.updraft/`: any path segment starting with `.`, however
//! it is encoded) are never served: they answer 404.

use std::path::{Path, PathBuf};

use http::header::LOCATION;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::body::{Body, BoxError, error_response};

/// A folder served under a route.
#[derive(Debug, Clone)]
pub struct StaticSite {
    dir: PathBuf,
    service: ServeDir<ServeFile>,
}

impl StaticSite {
    /// Serves `dir`; it must exist.
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "static folder `{}` does not exist; build your site into it or fix `static`",
                    dir.display()
                ),
            ));
        }
        let index = dir.join("index.html");
        let service = ServeDir::new(dir)
            .append_index_html_on_directories(true)
            .fallback(ServeFile::new(index));
        Ok(Self {
            dir: dir.to_path_buf(),
            service,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Answers `req` with the file at `raw_path_info`: the route's wildcard remainder exactly
    /// as it arrived (still percent-encoded, trailing `/` kept).
    pub async fn serve<B>(&self, req: Request<B>, raw_path_info: &str) -> Response<Body>
    where
        B: Send + 'static,
    {
        if names_hidden_file(raw_path_info) {
            return error_response(
                StatusCode::NOT_FOUND,
                "hidden files (names starting with `.`) are never served",
                None,
            );
        }
        let (mut parts, _body) = req.into_parts();
        let full_path = parts.uri.path().to_owned();
        // Where the route is mounted, for redirects ServeDir makes relative to the folder.
        let mount = full_path
            .strip_suffix(raw_path_info)
            .unwrap_or("")
            .to_owned();
        let path = if raw_path_info.is_empty() {
            "/"
        } else {
            raw_path_info
        };
        let path_and_query = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        parts.uri = Uri::try_from(path_and_query).unwrap_or_else(|_| Uri::from_static("/"));
        let req = Request::from_parts(parts, http_body_util::Empty::<bytes::Bytes>::new());
        let mut response = match self.service.clone().oneshot(req).await {
            Ok(response) => response.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()),
            Err(never) => match never {},
        };
        if response.status().is_redirection()
            && !mount.is_empty()
            && let Some(location) = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
            && location.starts_with('/')
            && let Ok(v) = HeaderValue::from_str(&format!("{mount}{location}"))
        {
            response.headers_mut().insert(LOCATION, v);
        }
        response
    }
}

/// Whether any segment of `raw_path` (percent-encoded, as it arrived) names a hidden file or
/// folder, or climbs out (`..`). A backslash counts as a separator too, as some servers
/// treat it.
fn names_hidden_file(raw_path: &str) -> bool {
    percent_encoding::percent_decode_str(raw_path)
        .decode_utf8_lossy()
        .split(['/', '\\'])
        .any(|segment| segment.starts_with('.') && segment != ".")
}

#[cfg(test)]
mod tests {
    use super::names_hidden_file;

    #[test]
    fn hidden_names_are_found_however_they_are_written() {
        for hidden in [
            "/.env",
            "/.updraft/admin-token",
            "/%2eupdraft/state.db",
            "/%2Eenv",
            "/a/.git/config",
            "/a/%2e%2e/.env",
            "/a\\.env",
            "/../x",
        ] {
            assert!(names_hidden_file(hidden), "{hidden}");
        }
        for shown in [
            "/",
            "/index.html",
            "/docs/",
            "/my%20photo.txt",
            "/a.b/c.d",
            "/x.",
        ] {
            assert!(!names_hidden_file(shown), "{shown}");
        }
    }
}
