//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a
//! proxy consumes them instead of forwarding them.
//!
//! Removed: `Connection` and every header it names, `Keep-Alive`,
//! `Proxy-Connection`, `Transfer-Encoding`, `Upgrade` and `TE` (except
//! `TE: trailers`, which gRPC needs end to end). An upgrade being passed
//! through keeps `Connection: upgrade` and `Upgrade`, since the upstream
//! must see them to switch protocols. Everything else, including
//! `Forwarded` and `X-Forwarded-*`, passes unchanged.

use http::header::{CONNECTION, HeaderName, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Version};

const KEEP_ALIVE: &str = "keep-alive";
const PROXY_CONNECTION: &str = "proxy-connection";

/// The comma-separated tokens of a `Connection` header value, lower-cased
/// comparisons left to the caller. Invalid UTF-8 yields no tokens.
pub fn connection_tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether any `Connection` header names `token`.
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(connection_tokens)
        .any(|t| t.eq_ignore_ascii_case(token))
}

/// An HTTP/1.1 protocol upgrade request (WebSocket and friends).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(UPGRADE)
        && connection_has(req.headers(), "upgrade")
}

/// An HTTP/1 tunnel request.
pub fn is_connect<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT
}

/// Removes hop-by-hop headers; `keep_upgrade` preserves a protocol upgrade.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(connection_tokens)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| !(keep_upgrade && *n == UPGRADE))
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    headers.remove(TRANSFER_ENCODING);
    if keep_upgrade && headers.contains_key(UPGRADE) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
    let te_trailers = headers
        .get_all(TE)
        .iter()
        .flat_map(connection_tokens)
        .any(|t| t.eq_ignore_ascii_case("trailers"));
    headers.remove(TE);
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn strips_connection_and_what_it_names() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip, trailers"),
            ("upgrade", "websocket"),
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("x-end-to-end", "kept"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["forwarded", "te", "x-end-to-end", "x-forwarded-for"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn keeps_an_upgrade_being_passed_through() {
        let mut h = headers(&[
            ("connection", "Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!h.contains_key("x-hop"));
    }

    #[test]
    fn invalid_tokens_are_ignored() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_bytes(b"\xff\xfe, bad name, ").unwrap(),
        );
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }
}
