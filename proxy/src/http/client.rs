//! Connections to one endpoint: an HTTP/1 pool and a multiplexed HTTP/2
//! connection, opened on demand with a connect timeout and metered as
//! `tcp_*{peer="dst"}`.
//!
//! Each endpoint gets its own client whose connector always dials that
//! endpoint, so the request keeps its `Host`/`:authority` while the bytes
//! go where the balancer decided. The request's authority is the client's
//! choice, so it must not pick connections: hyper-util's pool keys them by
//! the URI's authority, so HTTP/1 requests are pooled under the endpoint's
//! address (their `Host` header carries the authority), and HTTP/2 ones
//! share one connection ([`Multiplexed`]) whatever their `:authority`.
//! Otherwise a client writing a new authority into every request would
//! have the proxy open, and keep idle, a connection per authority.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use conduit_identity::tls::Alpn;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper::client::conn::http2;
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
    /// The HTTP/1 pool's one key: the endpoint's address.
    pool_key: Authority,
    h2: Multiplexed,
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
        let h2 = Multiplexed {
            connector: Connector {
                alpn: Alpn::H2,
                ..connector
            },
            sender: tokio::sync::Mutex::new(None),
        };
        let pool_key =
            Authority::try_from(addr.to_string()).expect("a socket address is an authority");
        Self {
            http1,
            pool_key,
            h2,
            mtls,
        }
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
        if req.version() == Version::HTTP_2 {
            return self.h2.send(req).await;
        }
        let req = pooled_by_endpoint(req, &self.pool_key);
        self.http1.request(req).await.map_err(client_error)
    }
}

/// The request with the endpoint's address as its URI's authority (the
/// pool's key) and its own authority in `Host`, written as hyper would
/// have. CONNECT keeps its target, which is what it asks for.
fn pooled_by_endpoint(mut req: Request<RequestBody>, key: &Authority) -> Request<RequestBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return req;
    };
    if req.method() == Method::CONNECT {
        return req;
    }
    if !req.headers().contains_key(header::HOST) {
        let host = match authority.port_u16() {
            Some(80) | None => authority.host().to_string(),
            Some(_) => authority.as_str().to_string(),
        };
        if let Ok(v) = HeaderValue::try_from(host) {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(key.clone());
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    req
}

/// One HTTP/2 connection to an endpoint, shared by all its requests and
/// opened again once it closes.
struct Multiplexed {
    connector: Connector,
    sender: tokio::sync::Mutex<Option<http2::SendRequest<RequestBody>>>,
}

impl Multiplexed {
    async fn send(&self, req: Request<RequestBody>) -> Result<Response<Incoming>, ProxyError> {
        let (mut sender, reused) = self.sender().await?;
        let mut err = match sender.try_send_request(req).await {
            Ok(rsp) => return Ok(rsp),
            Err(e) => e,
        };
        // A request a closing connection refused never left: it goes once
        // more on a fresh connection, as hyper-util's pool would send it.
        match err.take_message() {
            Some(req) if reused => {
                self.forget_closing().await;
                let (mut sender, _) = self.sender().await?;
                sender.send_request(req).await.map_err(upstream_error)
            }
            _ => Err(upstream_error(err.into_error())),
        }
    }

    /// The open connection's sender (and true), or a new connection's.
    async fn sender(&self) -> Result<(http2::SendRequest<RequestBody>, bool), ProxyError> {
        let mut current = self.sender.lock().await;
        if let Some(s) = current.as_ref().filter(|s| !s.is_closed()) {
            return Ok((s.clone(), true));
        }
        let io = self
            .connector
            .connect()
            .await
            .map_err(|e| e.to_proxy_error())?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|e| ProxyError::Unreachable(error_chain(&e)))?;
        let addr = self.connector.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "HTTP/2 connection to an endpoint ended");
            }
        });
        *current = Some(sender.clone());
        Ok((sender, false))
    }

    /// Drops the current connection if it no longer takes requests (unless
    /// another request already replaced it).
    async fn forget_closing(&self) {
        let mut current = self.sender.lock().await;
        if current.as_ref().is_some_and(|s| !s.is_ready()) {
            *current = None;
        }
    }
}

fn upstream_error(e: hyper::Error) -> ProxyError {
    ProxyError::Upstream(error_chain(&e))
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
        let connector = self.clone();
        Box::pin(async move { connector.connect().await })
    }
}

impl Connector {
    async fn connect(&self) -> Result<TokioIo<MeteredIo<Transport>>, ConnectError> {
        let stream =
            connect_secured(self.addr, self.timeout, self.mtls.as_ref(), self.alpn).await?;
        Ok(TokioIo::new(MeteredIo::new(stream, self.stats.clone())))
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
