//! What happens to every accepted connection before it is handled as HTTP
//! or TCP: accepting without dying on resource errors, finding the original
//! destination in transparent mode, protocol detection, and the check of
//! the first HTTP/1 request head.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::detect::{self, DetectOutcome, Protocol};
use crate::errors::ProxyError;
use crate::http::head::{self, HeadError};
use crate::http::server::Version;
use crate::io::PrefixedIo;

/// Accepts connections forever, each handled on its own task.
pub(crate) async fn serve<F, Fut>(listener: TcpListener, name: &'static str, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(handle(stream, peer));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of
                // spinning; the listener itself is still fine.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Where a redirected connection was going (transparent mode).
pub(crate) fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let addr = match stream.local_addr()? {
        SocketAddr::V4(_) => sock.original_dst_v4()?,
        SocketAddr::V6(_) => sock.original_dst_v6()?,
    };
    addr.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_ORIGINAL_DST is not an IP address",
        )
    })
}

/// Limits that apply before a request reaches the HTTP server.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Limits {
    pub(crate) detect_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_header_bytes: usize,
}

/// What an accepted connection turned out to be.
pub(crate) enum Sniffed<I> {
    Http(Version, PrefixedIo<I>),
    /// Not HTTP (TLS, a binary protocol, a silent client): forward bytes.
    Opaque(PrefixedIo<I>),
    /// Nothing left to do: the client left.
    Done,
    /// The proxy answered the first request head with this error and
    /// closed; the request took since `start`.
    Rejected {
        error: ProxyError,
        start: Instant,
    },
}

pub(crate) async fn sniff<I>(mut io: I, limits: Limits) -> Sniffed<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let accepted = Instant::now();
    let mut buf = BytesMut::with_capacity(1024);
    let outcome = match detect::detect(&mut io, &mut buf, limits.detect_timeout).await {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(error = %e, "connection failed during detection");
            return Sniffed::Done;
        }
    };
    let protocol = match outcome {
        DetectOutcome::Closed => return Sniffed::Done,
        DetectOutcome::TimedOut => Protocol::Opaque,
        DetectOutcome::Detected(p) => p,
    };
    match protocol {
        Protocol::H2 => Sniffed::Http(Version::H2, PrefixedIo::new(buf.freeze(), io)),
        Protocol::Tls | Protocol::Opaque => Sniffed::Opaque(PrefixedIo::new(buf.freeze(), io)),
        Protocol::Http1 => {
            let deadline = accepted + limits.header_read_timeout;
            match head::read_head(&mut io, &mut buf, limits.max_header_bytes, deadline).await {
                Ok(()) => Sniffed::Http(Version::Http1, PrefixedIo::new(buf.freeze(), io)),
                Err(HeadError::Reject(e)) => {
                    tracing::debug!(error = %e, "rejected the first request head");
                    let _ = io.write_all(&e.raw_http1_response()).await;
                    linger_close(&mut io).await;
                    Sniffed::Rejected {
                        error: e,
                        start: accepted,
                    }
                }
                Err(HeadError::Closed) => Sniffed::Done,
                Err(HeadError::Io(e)) => {
                    tracing::debug!(error = %e, "connection failed reading the request head");
                    Sniffed::Done
                }
            }
        }
    }
}

/// Closes after an error response without losing it: closing a socket
/// with unread input makes the kernel send a reset, which can destroy the
/// response before the client reads it. So the write side is shut down
/// first and the client's remaining bytes drained, briefly and boundedly.
async fn linger_close<I>(io: &mut I)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    const MAX_DRAIN: usize = 1 << 20;
    let _ = io.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 8192];
        let mut total = 0;
        while total < MAX_DRAIN {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
