//! The gRPC server's limits: connections at most, streams per connection,
//! HTTP/2 keepalive, header size, and a cap on streams the server resets
//! itself (tonic leaves h2's off, so a client could make it reset streams
//! without end).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;

#[derive(Clone, Copy, Debug)]
pub struct GrpcLimits {
    pub max_connections: usize,
    pub max_streams: u32,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_reset_streams: usize,
}

/// Largest header block a request may send.
const MAX_HEADER_LIST_BYTES: u32 = 64 << 10;

/// A tonic server builder with `limits`.
pub fn server(limits: &GrpcLimits) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .http2_max_local_error_reset_streams(Some(limits.max_reset_streams))
        .http2_max_pending_accept_reset_streams(Some(20))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
}

/// `incoming` connections, at most `max` of them open at once: past it the
/// next one is not taken (it waits in the listen backlog) until one
/// closes.
pub fn capped<S, T>(
    incoming: S,
    max: usize,
) -> impl Stream<Item = io::Result<Capped<T>>> + Send + 'static
where
    S: Stream<Item = io::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max.max(1)));
    futures_util::stream::unfold(
        (Box::pin(incoming), slots),
        |(mut incoming, slots)| async move {
            let slot = slots.clone().acquire_owned().await.ok()?;
            let next = incoming.next().await?;
            let conn = next.map(|io| Capped { io, _slot: slot });
            Some((conn, (incoming, slots)))
        },
    )
}

/// A connection holding one of the places [`capped`] counts.
pub struct Capped<T> {
    io: T,
    _slot: OwnedSemaphorePermit,
}

impl<T: Connected> Connected for Capped<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Capped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Capped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
