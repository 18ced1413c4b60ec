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

use conduit_identity::tls::Alpn;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::errors::ProxyError;
use crate::http::body::RequestBody;
use crate::identity::Identity;
use crate::io::{MeteredIo, Transport};
use crate::metrics::TcpStats;
use crate::tcp::{ConnectError, connect};

/// Why a meshed request fails when this proxy cannot prove its identity.
pub(crate) const NO_CERTIFICATE: &str = "this proxy has no valid certificate (the identity service has not issued one, or it expired): meshed traffic fails closed";

/// Idle pooled connections are closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct EndpointClient {
    http1: Client<Connector, RequestBody>,
    h2: Client<Connector, RequestBody>,
    mtls: Mtls,
}

/// mTLS settings of an endpoint: the proxy's identity, and the identity
/// the endpoint must prove.
pub(crate) type Mtls = Option<(Arc<Identity>, String)>;

impl EndpointClient {
    pub(crate) fn new(
        addr: SocketAddr,
        connect_timeout: Duration,
        stats: Arc<TcpStats>,
        mtls: Mtls,
    ) -> Self {
        let connector = Connector {
            addr,
            timeout: connect_timeout,
            stats,
            mtls,
            alpn: Alpn::Http1,
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        let mtls = connector.mtls.clone();
        let http1 = builder.build(connector.clone());
        let h2 = builder.http2_only(true).build(Connector {
            alpn: Alpn::H2,
            ..connector
        });
        Self { http1, h2, mtls }
    }

    /// Sends over HTTP/2 when the request is HTTP/2 (as the client spoke it,
    /// or upgraded for a meshed peer), over HTTP/1 otherwise.
    pub(crate) async fn send(
        &self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        // Fail closed: a pooled connection outlives the certificate it was
        // opened with, but no request goes to a meshed peer once this
        // proxy's own certificate has expired.
        if let Some((identity, _)) = &self.mtls
            && !identity.creds().is_ready()
        {
            return Err(ProxyError::Unreachable(NO_CERTIFICATE.into()));
        }
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
    mtls: Mtls,
    alpn: Alpn,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<MeteredIo<Transport>>, ConnectError>> + Send>>;

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<MeteredIo<Transport>>;
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
            mtls,
            alpn,
        } = self.clone();
        Box::pin(async move {
            let stream = connect_secured(addr, timeout, mtls.as_ref(), alpn).await?;
            Ok(TokioIo::new(MeteredIo::new(stream, stats)))
        })
    }
}

/// A connection to an endpoint: TCP, then mTLS when the endpoint is a
/// meshed proxy. The handshake counts against the connect timeout.
pub(crate) async fn connect_secured(
    addr: SocketAddr,
    timeout: Duration,
    mtls: Option<&(Arc<Identity>, String)>,
    alpn: Alpn,
) -> Result<Transport, ConnectError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = connect(addr, timeout).await?;
    let Some((identity, server)) = mtls else {
        return Ok(Transport::Plain(stream));
    };
    match tokio::time::timeout_at(deadline, identity.connect(stream, server, alpn)).await {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Err(e)) => Err(ConnectError::Tls(e)),
        Ok(Ok(tls)) => Ok(Transport::Tls(Box::new(tls))),
    }
}
