//! The first request head of an HTTP/1 connection, read and checked before
//! hyper sees the connection.
//!
//! hyper answers a bad head itself (400/431) with no way to say why; the
//! proxy reads the first head within the header timeout and the size limit
//! and checks it the way hyper will, so a bad one gets the proxy's answer
//! with a `conduit-proxy-error` header and a slow one (slowloris) gets 408.
//! Later heads on a kept-alive connection are hyper's to police, with the
//! same limits.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::errors::ProxyError;

/// At most this many headers in a request head, like hyper's default.
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, PartialEq, Eq)]
pub enum HeadCheck {
    /// A valid head of `len` bytes.
    Complete {
        len: usize,
    },
    /// Valid so far; more bytes needed.
    Partial,
    Invalid(String),
    TooLarge,
}

/// Checks a request head at the start of `buf`. Never panics.
pub fn check_head(buf: &[u8], max_bytes: usize) -> HeadCheck {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > max_bytes => HeadCheck::TooLarge,
        Ok(httparse::Status::Complete(len)) => match validate(&req) {
            Ok(()) => HeadCheck::Complete { len },
            Err(reason) => HeadCheck::Invalid(reason),
        },
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => HeadCheck::TooLarge,
        Ok(httparse::Status::Partial) => HeadCheck::Partial,
        Err(httparse::Error::TooManyHeaders) => HeadCheck::TooLarge,
        Err(e) => HeadCheck::Invalid(e.to_string()),
    }
}

/// What hyper's HTTP/1 server would reject beyond the syntax.
fn validate(req: &httparse::Request<'_, '_>) -> Result<(), String> {
    let method = req.method.unwrap_or_default();
    http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("invalid method {method:?}"))?;
    let path = req.path.unwrap_or_default();
    http::Uri::try_from(path).map_err(|_| "invalid request target".to_string())?;
    let http10 = req.version == Some(0);
    let mut content_length = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err("conflicting content-length headers".into());
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if http10 {
                return Err("transfer-encoding in an HTTP/1.0 request".into());
            }
            let last = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim);
            if !last.is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
                return Err("transfer-encoding does not end in chunked".into());
            }
        }
    }
    Ok(())
}

fn parse_content_length(value: &[u8]) -> Result<u64, String> {
    let invalid = || "invalid content-length".to_string();
    let text = std::str::from_utf8(value).map_err(|_| invalid())?;
    let mut parsed = None;
    // A list of identical values is tolerated, as hyper does.
    for part in text.split(',').map(str::trim) {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let n: u64 = part.parse().map_err(|_| invalid())?;
        if parsed.is_some_and(|p| p != n) {
            return Err(invalid());
        }
        parsed = Some(n);
    }
    parsed.ok_or_else(invalid)
}

/// The size of a parsed request's head as HTTP/1 would write it, for
/// holding every request of a connection (not only the first) to the
/// header limit.
pub(crate) fn len_of<B>(req: &http::Request<B>) -> usize {
    const LINE_OVERHEAD: usize = " HTTP/1.1\r\n".len() + 1;
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + "://".len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    let line = req.method().as_str().len() + target + LINE_OVERHEAD;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + ": \r\n".len())
        .sum();
    line + headers + 2
}

/// How reading the first head ended without a valid head.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// Answer the client with this error, then close.
    Reject(ProxyError),
    /// The client went away; nothing to answer.
    Closed,
    Io(io::Error),
}

/// Reads until `buf` holds a complete, valid request head, by `deadline`.
pub(crate) async fn read_head<I>(
    io: &mut I,
    buf: &mut BytesMut,
    max_bytes: usize,
    deadline: Instant,
) -> Result<(), HeadError>
where
    I: AsyncRead + Unpin,
{
    loop {
        match check_head(buf, max_bytes) {
            HeadCheck::Complete { .. } => return Ok(()),
            HeadCheck::Invalid(reason) => {
                return Err(HeadError::Reject(ProxyError::Malformed(reason)));
            }
            HeadCheck::TooLarge => return Err(HeadError::Reject(ProxyError::HeadersTooLarge)),
            HeadCheck::Partial => {}
        }
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Err(_) => return Err(HeadError::Reject(ProxyError::HeaderTimeout)),
            Ok(Ok(0)) => return Err(HeadError::Closed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(HeadError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_partial_invalid_and_too_large() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        assert_eq!(check_head(head, 1024), HeadCheck::Complete { len: 27 });
        assert_eq!(
            check_head(b"GET / HTTP/1.1\r\nHost: a\r\n", 1024),
            HeadCheck::Partial
        );
        assert!(matches!(
            check_head(b"GET / HTTP/1.1\r\nbad header\r\n\r\n", 1024),
            HeadCheck::Invalid(_)
        ));
        assert_eq!(
            check_head(b"GET / HTTP/1.1\r\nX: 1234567890\r\n", 20),
            HeadCheck::TooLarge
        );
        assert_eq!(check_head(head, 20), HeadCheck::TooLarge);
    }

    #[test]
    fn framing_is_checked_like_hyper() {
        let check = |h: &str| check_head(h.as_bytes(), 4096);
        assert!(matches!(
            check("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            HeadCheck::Invalid(_)
        ));
        assert!(matches!(
            check("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            HeadCheck::Invalid(_)
        ));
        assert!(matches!(
            check("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            HeadCheck::Invalid(_)
        ));
        assert!(matches!(
            check("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadCheck::Invalid(_)
        ));
        assert!(matches!(
            check("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
            HeadCheck::Complete { .. }
        ));
    }

    #[test]
    fn too_many_headers_is_too_large() {
        let mut h = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            h.push_str(&format!("x-{i}: v\r\n"));
        }
        h.push_str("\r\n");
        assert_eq!(check_head(h.as_bytes(), 1 << 20), HeadCheck::TooLarge);
    }
}
