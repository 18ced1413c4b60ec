//! Connections to one endpoint: an HTTP/1 pool and a multiplexed HTTP/2
//! connection, opened on demand with a connect timeout and metered as
//! `tcp_*{peer="dst"}`.
//!
//! The pool (hyper-util's) is keyed by the request's authority, which is
//! the logical authority, not the endpoint: each endpoint gets its own
//! client whose connector always dials that endpoint, so the request keeps
//! its `Host`/`:authority` while the bytes go where the balancer decided.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::errors::ProxyError;
use crate::http::body::RequestBody;
use crate::io::MeteredIo;
use crate::metrics::TcpStats;
use crate::tcp::{ConnectError, connect};

/// Idle pooled connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct EndpointClient {
    http1: Client<Connector, RequestBody>,
    h2: Client<Connector, RequestBody>,
}

impl EndpointClient {
    pub(crate) fn new(addr: SocketAddr, connect_timeout: Duration, stats: Arc<TcpStats>) -> Self {
        let connector = Connector {
            addr,
            timeout: connect_timeout,
            stats,
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        let http1 = builder.build(connector.clone());
        let h2 = builder.http2_only(true).build(connector);
        Self { http1, h2 }
    }

    /// Sends over HTTP/2 when the request is HTTP/2 (as the client spoke it,
    /// or upgraded for a meshed peer), over HTTP/1 otherwise.
    pub(crate) async fn send(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let client = if req.version() == Version::HTTP_2 {
            &self.h2
        } else {
            &self.http1
        };
        client.request(req).await.map_err(client_error)
    }
}

fn client_error(e: hyper_util::client::legacy::Error) -> ProxyError {
    let connect = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<ConnectError>());
    match connect {
        Some(c) => c.to_proxy_error(),
        None if e.is_connect() => ProxyError::Unreachable(error_chain(&e)),
        None => ProxyError::Upstream(error_chain(&e)),
    }
}

/// hyper's errors say the most in their innermost source.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

#[derive(Clone)]
struct Connector {
    addr: SocketAddr,
    timeout: Duration,
    stats: Arc<TcpStats>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<MeteredIo<TcpStream>>, ConnectError>> + Send>>;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<MeteredIo<TcpStream>>;
    type Error = ConnectError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _authority: Uri) -> Self::Future {
        let Connector {
            addr,
            timeout,
            stats,
        } = self.clone();
        Box::pin(async move {
            let stream = connect(addr, timeout).await?;
            Ok(TokioIo::new(MeteredIo::new(stream, stats)))
        })
    }
}
