//! HTTP/1 between proxies over multiplexed HTTP/2.
//!
//! When the outbound side knows the endpoint is a meshed proxy, it sends an
//! HTTP/1 request as HTTP/2 with `conduit-orig-proto` naming the original
//! version; the peer's inbound side removes the header and restores HTTP/1
//! towards its application. Many HTTP/1 requests then share one connection
//! between proxies instead of one connection each. Upgrades and CONNECT
//! cannot be expressed in HTTP/2 and stay HTTP/1.

use http::{HeaderValue, Request, Version};

/// Carries the original HTTP version of a request upgraded to HTTP/2.
pub const ORIG_PROTO_HEADER: &str = "conduit-orig-proto";

/// Outbound: send an HTTP/1 request over HTTP/2. Returns whether it did.
pub(crate) fn upgrade<B>(req: &mut Request<B>) -> bool {
    let orig = match req.version() {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        _ => return false,
    };
    req.headers_mut()
        .insert(ORIG_PROTO_HEADER, HeaderValue::from_static(orig));
    *req.version_mut() = Version::HTTP_2;
    true
}

/// Inbound: restore the request's original HTTP/1 version. Returns whether
/// the request had been upgraded.
pub(crate) fn downgrade<B>(req: &mut Request<B>) -> bool {
    let Some(orig) = req.headers_mut().remove(ORIG_PROTO_HEADER) else {
        return false;
    };
    if req.version() != Version::HTTP_2 {
        return false;
    }
    *req.version_mut() = if orig == "HTTP/1.0" {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut req = Request::get("http://web:80/").body(()).unwrap();
        assert!(upgrade(&mut req));
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(req.headers()[ORIG_PROTO_HEADER], "HTTP/1.1");
        assert!(downgrade(&mut req));
        assert_eq!(req.version(), Version::HTTP_11);
        assert!(!req.headers().contains_key(ORIG_PROTO_HEADER));
    }

    #[test]
    fn only_http2_is_downgraded() {
        let mut req = Request::get("/")
            .header(ORIG_PROTO_HEADER, "HTTP/1.0")
            .body(())
            .unwrap();
        assert!(!downgrade(&mut req));
        assert_eq!(req.version(), Version::HTTP_11);
        assert!(
            !req.headers().contains_key(ORIG_PROTO_HEADER),
            "never forwarded"
        );
    }
}
