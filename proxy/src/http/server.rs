//! Serving an accepted connection whose protocol is known, with the
//! proxy's limits: header size, header read timeout (later requests of a
//! kept-alive HTTP/1 connection; the first was checked by `head`), HTTP/2
//! protocol errors answered by GOAWAY/RST as hyper and h2 do, and HTTP/2's
//! own caps ([`H2Limits`]), set here rather than left to hyper's defaults,
//! which are not part of its stable API.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::http::body::BoxError;

/// Handles the requests of one connection.
pub(crate) trait Handler: Send + Sync + 'static {
    type Body: Body<Data = Bytes, Error = BoxError> + Send + 'static;

    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<Self::Body>> + Send + 'static;
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    Http1,
    H2,
}

/// What one HTTP/2 connection may ask of a server (data plane and tap).
#[derive(Copy, Clone, Debug)]
pub(crate) struct H2Limits {
    pub(crate) max_concurrent_streams: u32,
    /// Streams the client resets before they are served (rapid reset).
    pub(crate) max_pending_accept_reset_streams: usize,
    /// Streams the server resets for the client's errors (made you reset).
    pub(crate) max_local_error_reset_streams: usize,
    /// `None`: no keep-alive PINGs.
    pub(crate) keepalive_interval: Option<Duration>,
    pub(crate) keepalive_timeout: Duration,
}

/// Server settings shared by every connection of a listener.
#[derive(Clone)]
pub(crate) struct Server {
    http1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Server {
    pub(crate) fn new(
        max_header_bytes: usize,
        header_read_timeout: Duration,
        limits: H2Limits,
    ) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            // Twice the limit: the handlers check each head against the
            // limit themselves (and answer with the cause); hyper's own
            // check only stops heads far beyond it.
            .max_buf_size(max_header_bytes.saturating_mul(2).max(8192))
            .max_headers(crate::http::head::MAX_HEADERS)
            .half_close(false);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(limits.max_local_error_reset_streams)
            .keep_alive_interval(limits.keepalive_interval)
            .keep_alive_timeout(limits.keepalive_timeout);
        Self { http1: h1, h2 }
    }

    /// Serves until the client or the handler closes the connection.
    pub(crate) async fn serve<I, H>(&self, io: I, version: Version, handler: Arc<H>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Handler,
    {
        let svc = hyper::service::service_fn(move |req| {
            let rsp = handler.clone().handle(req);
            async move { Ok::<_, Infallible>(rsp.await) }
        });
        let io = TokioIo::new(io);
        let res = match version {
            Version::Http1 => self.http1.serve_connection(io, svc).with_upgrades().await,
            Version::H2 => self.h2.serve_connection(io, svc).await,
        };
        if let Err(e) = res {
            tracing::debug!(error = %e, ?version, "connection ended with an error");
        }
    }
}
