//! Protocol detection: what an accepted connection speaks, decided from its
//! first bytes.
//!
//! The proxy must not guess wrong in either direction: treating HTTP as
//! bytes loses per-request metrics and routing, and treating a binary
//! protocol as HTTP breaks it. So a connection is HTTP/1 only when its
//! first line is a complete request line ending in `HTTP/1.x`, HTTP/2 only
//! with the full prior-knowledge preface, TLS only with a ClientHello record
//! header; anything that cannot become one of those is opaque at once, and
//! a client that says nothing (a server-speaks-first protocol) is opaque
//! after the detection timeout.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The most bytes detection reads before deciding; a request line longer
/// than this is still HTTP/1 when it starts like one.
pub const MAX_DETECT_BYTES: usize = 8 * 1024;

/// Longest method token accepted (`PROPPATCH`, `MKCALENDAR`, extensions).
const MAX_METHOD_LEN: usize = 24;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    H2,
    /// A TLS ClientHello: the proxy cannot see inside, so it is forwarded as
    /// bytes.
    Tls,
    Opaque,
}

/// The verdict on the bytes seen so far.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Detection {
    Known(Protocol),
    NeedMore,
}

/// Classifies a connection's first bytes. Never panics, whatever `buf`
/// holds; `NeedMore` only while `buf` is a prefix of some protocol's
/// opening and shorter than [`MAX_DETECT_BYTES`].
pub fn classify(buf: &[u8]) -> Detection {
    use Detection::*;
    if buf.is_empty() {
        return NeedMore;
    }
    if let Some(d) = classify_h2(buf) {
        return d;
    }
    if let Some(d) = classify_tls(buf) {
        return d;
    }
    classify_http1(buf)
}

fn classify_h2(buf: &[u8]) -> Option<Detection> {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] != H2_PREFACE[..n] {
        return None;
    }
    Some(if n == H2_PREFACE.len() {
        Detection::Known(Protocol::H2)
    } else {
        Detection::NeedMore
    })
}

/// A TLS record header of type handshake (22), version 3.x, whose first
/// handshake message is a ClientHello (1).
fn classify_tls(buf: &[u8]) -> Option<Detection> {
    if buf[0] != 0x16 {
        return None;
    }
    if buf.len() < 2 {
        return Some(Detection::NeedMore);
    }
    if buf[1] != 0x03 {
        return Some(Detection::Known(Protocol::Opaque));
    }
    match buf.get(5) {
        None => Some(Detection::NeedMore),
        Some(0x01) => Some(Detection::Known(Protocol::Tls)),
        Some(_) => Some(Detection::Known(Protocol::Opaque)),
    }
}

fn classify_http1(buf: &[u8]) -> Detection {
    use Detection::*;
    let opaque = Known(Protocol::Opaque);
    let method_len = buf.iter().take_while(|b| is_method_byte(**b)).count();
    if method_len == 0 || method_len > MAX_METHOD_LEN {
        return opaque;
    }
    let rest = &buf[method_len..];
    match rest.first() {
        None => return NeedMore,
        Some(b' ') => {}
        Some(_) => return opaque,
    }
    let line_end = rest.iter().position(|b| *b == b'\n');
    let line = &rest[..line_end.unwrap_or(rest.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().any(|b| is_forbidden_in_line(*b)) {
        return opaque;
    }
    if line_end.is_none() {
        // A request line still arriving; a very long one is left to the
        // HTTP server, which answers 414 or 431 instead of silence.
        return if buf.len() >= MAX_DETECT_BYTES {
            Known(Protocol::Http1)
        } else {
            NeedMore
        };
    }
    if line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0") {
        Known(Protocol::Http1)
    } else {
        opaque
    }
}

/// Methods are tokens; in practice upper-case letters (RFC 9110 §9.1 names
/// are case-sensitive and registered ones are upper-case), with `-` and `_`
/// for extensions.
fn is_method_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

/// Control bytes other than tab cannot appear in a request line.
fn is_forbidden_in_line(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Why detection ended without a protocol.
#[derive(Debug)]
pub enum DetectOutcome {
    Detected(Protocol),
    /// The client sent nothing before the timeout: maybe it waits for the
    /// server to speak first.
    TimedOut,
    /// The client closed the connection before its protocol was known.
    Closed,
}

/// Reads from `io` into `buf` until the protocol is known, the timeout
/// fires or the peer closes. Whatever was read stays in `buf` to be
/// replayed to the next stage.
pub async fn detect<I>(
    io: &mut I,
    buf: &mut BytesMut,
    timeout: Duration,
) -> io::Result<DetectOutcome>
where
    I: AsyncRead + Unpin,
{
    let read = async {
        loop {
            if let Detection::Known(p) = classify(buf) {
                return Ok(DetectOutcome::Detected(p));
            }
            buf.reserve(1024);
            if io.read_buf(buf).await? == 0 {
                return Ok(if buf.is_empty() {
                    DetectOutcome::Closed
                } else {
                    DetectOutcome::Detected(Protocol::Opaque)
                });
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) if buf.is_empty() => Ok(DetectOutcome::TimedOut),
        Err(_) => Ok(DetectOutcome::Detected(unfinished(buf))),
    }
}

/// The protocol of an opening that stopped short. A partial HTTP request
/// line (or HTTP/2 preface, which starts like one) is handled as HTTP/1, so
/// the header read timeout answers it: a slowloris trickling its request
/// line must not become an opaque connection to the application. Anything
/// else is forwarded as bytes.
pub fn unfinished(buf: &[u8]) -> Protocol {
    if buf.is_empty() {
        return Protocol::Opaque;
    }
    if classify_tls(buf).is_some() {
        return Protocol::Tls;
    }
    match classify_http1(buf) {
        Detection::NeedMore | Detection::Known(Protocol::Http1) => Protocol::Http1,
        Detection::Known(_) => Protocol::Opaque,
    }
}

/// The largest TLS record a ClientHello may arrive in (RFC 8446 §5.1),
/// with its header.
pub const MAX_CLIENT_HELLO_RECORD: usize = 5 + 16_384;

/// What the first TLS record of a connection asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientHello<'a> {
    /// More bytes are needed to see the whole record.
    NeedMore,
    /// A ClientHello, with the server name it asks for (if any).
    Hello { server_name: Option<&'a str> },
    /// Not a ClientHello this proxy can read (another protocol, a
    /// malformed or fragmented hello): forwarded untouched.
    Other,
}

/// Reads the SNI of a ClientHello from a connection's first bytes. Never
/// panics and never reads past what `buf` holds, whatever it claims.
pub fn client_hello(buf: &[u8]) -> ClientHello<'_> {
    if buf.is_empty() {
        return ClientHello::NeedMore;
    }
    match classify_tls(buf) {
        Some(Detection::NeedMore) => return ClientHello::NeedMore,
        Some(Detection::Known(Protocol::Tls)) => {}
        _ => return ClientHello::Other,
    }
    let Some(len) = buf
        .get(3..5)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
    else {
        return ClientHello::NeedMore;
    };
    if 5 + len > MAX_CLIENT_HELLO_RECORD {
        return ClientHello::Other;
    }
    let Some(record) = buf.get(5..5 + len) else {
        return ClientHello::NeedMore;
    };
    match server_name(record) {
        Some(server_name) => ClientHello::Hello { server_name },
        None => ClientHello::Other,
    }
}

/// The host name of the server_name extension (RFC 6066 §3) of the
/// ClientHello in `record`; `Some(None)` when it has none; `None` when the
/// hello does not parse (or is split over several records).
fn server_name(record: &[u8]) -> Option<Option<&str>> {
    let mut r = Reader(record);
    if r.u8()? != 1 {
        return None;
    }
    let body = r.vec24()?;
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy version, random
    let session = usize::from(r.u8()?);
    r.take(session)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let compression = usize::from(r.u8()?);
    r.take(compression)?;
    if r.0.is_empty() {
        return Some(None);
    }
    let extensions = r.u16()?;
    let mut exts = Reader(r.take(extensions)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(data);
        let mut names = Reader(list.vec16()?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec16()?;
            if name_type == 0 {
                return std::str::from_utf8(name).ok().map(Some);
            }
        }
        return Some(None);
    }
    Some(None)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A vector with a 16-bit length.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }

    /// A vector with a 24-bit length.
    fn vec24(&mut self) -> Option<&'a [u8]> {
        let n = self
            .take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::Detection::*;
    use super::Protocol::*;
    use super::*;

    #[test]
    fn http1_needs_a_full_request_line() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Known(Http1));
        assert_eq!(classify(b"POST /x HTTP/1.0\n"), Known(Http1));
        assert_eq!(classify(b"GE"), NeedMore);
        assert_eq!(classify(b"GET /path"), NeedMore);
        assert_eq!(classify(b"GET / HTTP/2.0\r\n"), Known(Opaque));
        assert_eq!(classify(b"get / HTTP/1.1\r\n"), Known(Opaque));
        assert_eq!(classify(b"GET\x00/"), Known(Opaque));
        assert_eq!(classify(b"GET /\x01 HTTP/1.1\r\n"), Known(Opaque));
    }

    #[test]
    fn long_request_lines_are_left_to_the_server() {
        let mut line = b"GET /".to_vec();
        line.resize(MAX_DETECT_BYTES, b'a');
        assert_eq!(classify(&line), Known(Http1));
    }

    #[test]
    fn h2_needs_the_whole_preface() {
        assert_eq!(classify(H2_PREFACE), Known(H2));
        assert_eq!(classify(&H2_PREFACE[..10]), NeedMore);
        // `PRI` alone could still be an HTTP/1 extension method.
        assert_eq!(classify(b"PRI * HTTP/1.1\r\n"), Known(Http1));
    }

    #[test]
    fn tls_client_hello() {
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), Known(Tls));
        assert_eq!(classify(&[0x16, 0x03, 0x01]), NeedMore);
        assert_eq!(
            classify(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x02]),
            Known(Opaque)
        );
        assert_eq!(classify(&[0x16, 0x01]), Known(Opaque));
    }

    #[test]
    fn unfinished_openings() {
        assert_eq!(unfinished(b"GET /slo"), Http1);
        assert_eq!(unfinished(b"PRI * HTTP/2"), Http1);
        assert_eq!(unfinished(&[0x16, 0x03]), Tls);
        assert_eq!(unfinished(b"\x00\x01"), Opaque);
    }

    /// A ClientHello record with the given SNI (and one other extension
    /// before it, as real clients send).
    fn hello(sni: Option<&str>) -> Vec<u8> {
        let mut exts = vec![0x00, 0x0b, 0x00, 0x02, 0x01, 0x00];
        if let Some(name) = sni {
            let n = name.len() as u16;
            exts.extend_from_slice(&[0x00, 0x00]);
            exts.extend_from_slice(&(n + 5).to_be_bytes());
            exts.extend_from_slice(&(n + 3).to_be_bytes());
            exts.push(0);
            exts.extend_from_slice(&n.to_be_bytes());
            exts.extend_from_slice(name.as_bytes());
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    #[test]
    fn client_hello_server_names() {
        let name = "web.demo.serviceaccount.identity.conduit.cluster.local";
        let h = hello(Some(name));
        assert_eq!(
            client_hello(&h),
            ClientHello::Hello {
                server_name: Some(name)
            }
        );
        assert_eq!(
            client_hello(&hello(None)),
            ClientHello::Hello { server_name: None }
        );
        for cut in [0, 1, 5, 20, h.len() - 1] {
            assert_eq!(client_hello(&h[..cut]), ClientHello::NeedMore, "{cut}");
        }
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), ClientHello::Other);
        // A length that claims more than the hello holds.
        let mut lying = h.clone();
        lying[43] = 0xff;
        assert_eq!(client_hello(&lying), ClientHello::Other);
    }

    #[test]
    fn binary_is_opaque_at_once() {
        assert_eq!(classify(&[0x0a, 0x00, 0x00]), Known(Opaque));
        assert_eq!(classify(b"\x00\x00\x00\x01"), Known(Opaque));
        assert_eq!(classify(b"SSH-2.0-OpenSSH\r\n"), Known(Opaque));
    }
}
