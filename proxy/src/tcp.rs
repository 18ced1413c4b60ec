//! Opaque TCP: opening connections to endpoints and copying bytes both ways.
//!
//! Half-close matters: a client that shuts down its write side (end of
//! request) must still receive the rest of the server's answer, so each
//! direction ends on its own and its end is passed on as a shutdown of the
//! other side's write half.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::errors::ProxyError;

#[derive(Debug)]
pub(crate) enum ConnectError {
    Timeout,
    Io(io::Error),
    /// The mTLS handshake failed: the peer is not who discovery said, or
    /// either side's certificate is not valid.
    Tls(io::Error),
}

impl ConnectError {
    pub(crate) fn to_proxy_error(&self) -> ProxyError {
        match self {
            Self::Timeout => ProxyError::ConnectTimeout,
            Self::Io(e) => ProxyError::Unreachable(e.to_string()),
            Self::Tls(e) => ProxyError::Unreachable(format!("mTLS handshake failed: {e}")),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("connect timeout"),
            Self::Io(e) => e.fmt(f),
            Self::Tls(e) => write!(f, "mTLS handshake failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Opens a TCP connection with Nagle off: the proxy writes whole messages.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Err(e)) => Err(ConnectError::Io(e)),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Copies until both directions have ended; returns the bytes moved from
/// client to server and from server to client.
pub(crate) async fn forward<C, S>(client: &mut C, server: &mut S) -> io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional(client, server).await
}
