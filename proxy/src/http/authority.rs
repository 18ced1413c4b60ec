//! The authority a request is for: what metrics label it with and what the
//! outbound side routes it by.
//!
//! HTTP/2 and absolute-form HTTP/1 requests carry it in the URI, origin-form
//! HTTP/1 requests in `Host`. For routing, a missing port is the scheme's
//! default, so `web.demo` and `web.demo:80` are one destination.

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri, header};

use crate::errors::ProxyError;

/// The request's authority as the client wrote it.
pub(crate) fn of<B>(req: &Request<B>) -> Option<Authority> {
    if let Some(a) = req.uri().authority() {
        return Some(a.clone());
    }
    let host = req.headers().get(header::HOST)?;
    Authority::try_from(host.as_bytes()).ok()
}

/// `host:port`, with the default HTTP port when none is given.
pub(crate) fn with_port(a: &Authority) -> String {
    match a.port_u16() {
        Some(_) => a.as_str().to_ascii_lowercase(),
        None => format!("{}:80", a.host().to_ascii_lowercase()),
    }
}

/// Makes the URI absolute (`http://authority/path`), which the upstream
/// client needs to pick its connection and to write HTTP/2's `:authority`.
/// CONNECT keeps its authority form.
pub(crate) fn absolutize<B>(req: &mut Request<B>, authority: &Authority) -> Result<(), ProxyError> {
    if req.method() == http::Method::CONNECT || req.uri().authority().is_some() {
        return Ok(());
    }
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|e| ProxyError::Malformed(format!("cannot forward request target: {e}")))?;
    *req.uri_mut() = uri;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_from_uri_or_host() {
        let req = Request::get("/x")
            .header("host", "Web.Demo")
            .body(())
            .unwrap();
        let a = of(&req).unwrap();
        assert_eq!(with_port(&a), "web.demo:80");
        let req = Request::get("http://api:8080/x").body(()).unwrap();
        assert_eq!(with_port(&of(&req).unwrap()), "api:8080");
        let req = Request::get("/x")
            .header("host", "bad host")
            .body(())
            .unwrap();
        assert!(of(&req).is_none());
    }

    #[test]
    fn absolutize_keeps_path_and_query() {
        let mut req = Request::get("/a/b?c=1").body(()).unwrap();
        absolutize(&mut req, &"web:80".parse().unwrap()).unwrap();
        assert_eq!(req.uri(), "http://web:80/a/b?c=1");
    }
}
