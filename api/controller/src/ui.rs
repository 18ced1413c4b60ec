//! Serves the dashboard's static bundle (`cargo xtask ui` builds it).
//!
//! Files are served from a directory with a content type from their
//! extension. Paths without an extension that name no file get
//! `index.html`, so the dashboard's client-side routes (deep links such as
//! `/deployments/demo/web`) load the app. The directory is looked at on
//! every request: a bundle built while the controller runs is served
//! without a restart, and a missing one gets a page saying how to build it.
//!
//! The bundle comes precompressed (`FILE.br`, `FILE.gz` beside `FILE`, at
//! the strongest settings, once at build time): a browser gets the variant
//! its `Accept-Encoding` allows, brotli first. Files whose name carries a
//! content hash (`conduit-ui-0123456789abcdef.wasm`) never change and are
//! cached for a year; `index.html`, which names them, is revalidated on
//! every load (`no-cache`), so a new bundle reaches browsers at once.

use std::path::{Component, Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};

/// For files whose content hash is in their name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For everything else: use it, but ask first whether it changed.
const NO_CACHE: &str = "no-cache";

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

    pub async fn serve(&self, uri: Uri, request_headers: &HeaderMap) -> Response {
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
            index.clone()
        } else {
            return (
                StatusCode::NOT_FOUND,
                "no such file in the dashboard bundle",
            )
                .into_response();
        };
        let accept = request_headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let (body_file, encoding) = precompressed(&file, accept);
        let cache = if file != index && is_hashed(&file) {
            IMMUTABLE
        } else {
            NO_CACHE
        };
        match tokio::fs::read(&body_file).await {
            Ok(bytes) => {
                let mut response = Response::new(Body::from(bytes));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&file)),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
                headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
                if let Some(encoding) = encoding {
                    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
                }
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
        (
            StatusCode::OK,
            [(header::CACHE_CONTROL, NO_CACHE)],
            Html(page),
        )
            .into_response()
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

/// The file to send for `file` and its `Content-Encoding`: the brotli or
/// gzip variant beside it when the client accepts that coding (brotli is
/// smaller), else `file` itself.
fn precompressed(file: &Path, accept_encoding: Option<&str>) -> (PathBuf, Option<&'static str>) {
    for (coding, suffix) in [("br", "br"), ("gzip", "gz")] {
        if !accepts(accept_encoding, coding) {
            continue;
        }
        let mut variant = file.as_os_str().to_owned();
        variant.push(".");
        variant.push(suffix);
        let variant = PathBuf::from(variant);
        if variant.is_file() {
            return (variant, Some(coding));
        }
    }
    (file.to_path_buf(), None)
}

/// Whether an `Accept-Encoding` value allows `coding` (named, and not
/// with `q=0`).
fn accepts(accept_encoding: Option<&str>, coding: &str) -> bool {
    let Some(value) = accept_encoding else {
        return false;
    };
    value.split(',').any(|item| {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        name.eq_ignore_ascii_case(coding) && q > 0.0
    })
}

/// Whether the file name carries a content hash the way `cargo xtask ui`
/// writes it: `STEM-<16 hex digits>.EXT`.
fn is_hashed(file: &Path) -> bool {
    file.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit_once('-'))
        .is_some_and(|(_, hash)| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
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
    fn encodings_are_negotiated() {
        assert!(accepts(Some("gzip, deflate, br, zstd"), "br"));
        assert!(accepts(Some("gzip, deflate, br, zstd"), "gzip"));
        assert!(accepts(Some("GZIP;q=0.5"), "gzip"));
        assert!(!accepts(Some("gzip;q=0, br"), "gzip"));
        assert!(!accepts(Some("identity"), "gzip"));
        assert!(!accepts(None, "br"));
        assert!(!accepts(Some("brotli"), "br"));
    }

    #[test]
    fn hashed_names_are_recognised() {
        assert!(is_hashed(Path::new("conduit-ui-0123456789abcdef.wasm")));
        assert!(is_hashed(Path::new("/b/style-ABCDEF0123456789.css")));
        assert!(!is_hashed(Path::new("index.html")));
        assert!(!is_hashed(Path::new("app-1234.js")));
        assert!(!is_hashed(Path::new("app-0123456789abcdeg.js")));
    }

    #[test]
    fn the_smallest_accepted_variant_is_chosen() {
        let dir = std::env::temp_dir().join(format!("conduit-ui-variants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app.js");
        for name in ["app.js", "app.js.gz", "app.js.br"] {
            std::fs::write(dir.join(name), name).unwrap();
        }
        assert_eq!(
            precompressed(&file, Some("gzip, br")),
            (dir.join("app.js.br"), Some("br"))
        );
        assert_eq!(
            precompressed(&file, Some("gzip")),
            (dir.join("app.js.gz"), Some("gzip"))
        );
        assert_eq!(precompressed(&file, None), (file.clone(), None));
        std::fs::remove_file(dir.join("app.js.br")).unwrap();
        assert_eq!(
            precompressed(&file, Some("br, gzip")),
            (dir.join("app.js.gz"), Some("gzip"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
