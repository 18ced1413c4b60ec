//! Serves the dashboard's static bundle (`cargo xtask ui` builds it).
//!
//! Files are served from a directory with a content type from their
//! extension. Paths without an extension that name no file get
//! `index.html`, so the dashboard's client-side routes (deep links such as
//! `/deployments/demo/web`) load the app. The directory is looked at on
//! every request: a bundle built while the controller runs is served
//! without a restart, and a missing one gets a page saying how to build it.

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};

#[derive(Clone)]
pub struct Ui {
    dir: PathBuf,
}

impl Ui {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The default bundle location: `dist/` next to the binary, else the
    /// workspace's `ui/dist` (where `cargo xtask ui` writes it).
    pub fn default_dir() -> PathBuf {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("dist")));
        if let Some(dir) = beside.filter(|d| d.join("index.html").is_file()) {
            return dir;
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/dist")
    }

    pub async fn serve(&self, uri: Uri) -> Response {
        let Some(relative) = safe_relative(uri.path()) else {
            return (StatusCode::BAD_REQUEST, "invalid path").into_response();
        };
        let index = self.dir.join("index.html");
        if !index.is_file() {
            return self.missing_bundle();
        }
        let wanted = self.dir.join(&relative);
        let file = if wanted.is_file() {
            wanted
        } else if relative.extension().is_none() {
            index
        } else {
            return (
                StatusCode::NOT_FOUND,
                "no such file in the dashboard bundle",
            )
                .into_response();
        };
        match tokio::fs::read(&file).await {
            Ok(bytes) => {
                let mut response = Response::new(Body::from(bytes));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&file)),
                );
                response
            }
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read {}: {e}", file.display()),
            )
                .into_response(),
        }
    }

    fn missing_bundle(&self) -> Response {
        let page = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Conduit</title></head>\
             <body><h1>Conduit dashboard not built</h1>\
             <p>The controller is running and its API is at <a href=\"/api/v1/version\">/api/v1/</a>, \
             but there is no dashboard bundle in <code>{}</code>.</p>\
             <p>Build it with <code>cargo xtask ui</code>, or point the controller at a bundle \
             with <code>--ui-dir</code>.</p></body></html>",
            html_escape(&self.dir.display().to_string())
        );
        (StatusCode::OK, Html(page)).into_response()
    }
}

/// The request path as a relative path inside the bundle, or `None` when
/// it tries to leave it.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let trimmed = path.trim_start_matches('/');
    let trimmed = if trimmed.is_empty() {
        "index.html"
    } else {
        trimmed
    };
    let relative = PathBuf::from(trimmed);
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(relative)
}

pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_bundle() {
        assert_eq!(safe_relative("/"), Some(PathBuf::from("index.html")));
        assert_eq!(safe_relative("/app.js"), Some(PathBuf::from("app.js")));
        assert_eq!(safe_relative("/../secret"), None);
        assert_eq!(safe_relative("/a/../../b"), None);
    }

    #[test]
    fn wasm_and_scripts_get_their_types() {
        assert_eq!(content_type(Path::new("x.wasm")), "application/wasm");
        assert_eq!(
            content_type(Path::new("x.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
    }
}
