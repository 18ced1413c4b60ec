//! tonic over mTLS: servers that know who each caller is, and channels
//! that only talk to the identity they expect.
//!
//! tonic's own TLS would pin a certificate at start-up; these use the
//! renewable [`Credentials`](crate::Credentials) instead, so a control-plane
//! link keeps working across certificate renewals. On the server side,
//! every request carries the caller's verified identity as a [`PeerInfo`]
//! in its extensions, which handlers check against what they allow.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use conduit_api::IdentityName;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::cert;
use crate::tls::{failure_reason, server_name};

/// A handshake must complete within this, or the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once per listener; more wait to be accepted.
pub const MAX_HANDSHAKES: usize = 256;

/// Who called, as the handshake proved it.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The identity of the client's certificate; `None` when it presented
    /// none (allowed only by [`Allow::AnyClient`]).
    pub identity: Option<IdentityName>,
    pub remote: SocketAddr,
}

impl PeerInfo {
    /// The caller of a request served over [`incoming`].
    pub fn of<T>(req: &tonic::Request<T>) -> Option<&PeerInfo> {
        req.extensions().get::<PeerInfo>()
    }
}

/// An interceptor for a service that answers one identity only (the
/// store's query API: the controller; the controller's workload table:
/// the store), where the listener admits more.
pub fn answer_only(
    allowed: IdentityName,
    service: &'static str,
) -> impl Fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req| {
        let caller = PeerInfo::of(&req).and_then(|p| p.identity.as_ref());
        if caller != Some(&allowed) {
            return Err(tonic::Status::permission_denied(format!(
                "the {service} API answers {allowed} only"
            )));
        }
        Ok(req)
    }
}

/// Which clients a listener accepts once their handshake succeeded.
#[derive(Clone, Debug)]
pub enum Allow {
    /// With or without a certificate (the identity service: proxies call
    /// it before they have one).
    AnyClient,
    /// Any workload of the mesh.
    AnyIdentity,
    /// Only these identities (a proxy's tap server: the controller).
    Only(Vec<IdentityName>),
}

impl Allow {
    fn admits(&self, identity: Option<&IdentityName>) -> bool {
        match self {
            Self::AnyClient => true,
            Self::AnyIdentity => identity.is_some(),
            Self::Only(names) => identity.is_some_and(|i| names.contains(i)),
        }
    }
}

/// A server-side TLS connection and its peer.
pub struct TlsConn {
    io: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The identity of a server-side connection's client certificate.
pub fn client_identity<IO>(tls: &tokio_rustls::server::TlsStream<IO>) -> Option<IdentityName> {
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates()?.first()?;
    cert::identity_of(leaf)
}

/// Accepts TLS connections on `listener` for a tonic server
/// (`serve_with_incoming`), handshaking each on its own task so a slow
/// client holds up no one; clients `allow` does not admit are dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    allow: Allow,
    name: &'static str,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, allow, tx) = (acceptor.clone(), allow.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let io = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(io)) => io,
                    Ok(Err(e)) => {
                        tracing::info!(listener = name, %remote, reason = failure_reason(&e), error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(listener = name, %remote, "TLS handshake timed out");
                        return;
                    }
                };
                let identity = client_identity(&io);
                if !allow.admits(identity.as_ref()) {
                    tracing::warn!(listener = name, %remote, identity = ?identity.as_ref().map(ToString::to_string), "refused a client this listener does not serve");
                    return;
                }
                let peer = PeerInfo { identity, remote };
                let _ = tx.send(Ok(TlsConn { io, peer })).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Dials one control-plane address over TLS, verifying that the server
/// proves `server`.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    server: ServerName<'static>,
    addr: String,
    /// The certificate the connection presents: dialling waits for it, as
    /// a connection opened without one would stay unauthenticated.
    client: Option<Arc<crate::Credentials>>,
}

type ConnectFuture = Pin<
    Box<
        dyn Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
    >,
>;

impl tower::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if let Some(creds) = &this.client {
                let mut certs = creds.watch();
                let certified = certs.wait_for(|c| c.is_some());
                if tokio::time::timeout(HANDSHAKE_TIMEOUT, certified)
                    .await
                    .is_err()
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no certificate to present yet (the identity service has not issued one)",
                    ));
                }
            }
            let dial = async {
                let tcp = TcpStream::connect(&this.addr).await?;
                let _ = tcp.set_nodelay(true);
                tokio_rustls::TlsConnector::from(this.config)
                    .connect(this.server, tcp)
                    .await
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, dial).await {
                Ok(r) => r.map(TokioIo::new),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS connection timed out",
                )),
            }
        })
    }
}

/// `host:port` of a control-plane address given as `https://host:port`
/// (or bare `host:port`).
pub fn authority(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    let valid = rest
        .parse::<http::uri::Authority>()
        .ok()
        .filter(|a| a.port_u16().is_some() && !a.host().is_empty());
    match valid {
        Some(a) if !url.starts_with("http://") => Ok(a.to_string()),
        _ => Err(format!(
            "{url:?}: expected https://HOST:PORT (control-plane links are mTLS)"
        )),
    }
}

/// A lazy channel to `addr` (`host:port`) that accepts only `server`'s
/// certificate, and presents `client`'s once it has one (`None`: no
/// client certificate).
pub fn channel(
    addr: &str,
    server: &IdentityName,
    config: Arc<ClientConfig>,
    client: Option<Arc<crate::Credentials>>,
) -> Result<tonic::transport::Channel, String> {
    let (endpoint, connector) = endpoint(addr, server, config, client)?;
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// Like [`channel`], connected before it returns.
pub async fn connect(
    addr: &str,
    server: &IdentityName,
    config: Arc<ClientConfig>,
    client: Option<Arc<crate::Credentials>>,
) -> Result<tonic::transport::Channel, String> {
    let (endpoint, connector) = endpoint(addr, server, config, client)?;
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            let source = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            format!("cannot connect to {addr}: {e}{source}")
        })
}

fn endpoint(
    addr: &str,
    server: &IdentityName,
    config: Arc<ClientConfig>,
    client: Option<Arc<crate::Credentials>>,
) -> Result<(tonic::transport::Endpoint, TlsConnector), String> {
    let connector = TlsConnector {
        config,
        server: server_name(&server.to_string()).map_err(|e| e.to_string())?,
        addr: addr.to_string(),
        client,
    };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("{addr:?}: {e}"))?;
    Ok((endpoint, connector))
}
