//! The proxy's identity: its certificate, how it proves it to peers, and
//! how it checks theirs.
//!
//! With `--identity-addr` the proxy generates its key in memory, gets a
//! certificate from the controller's identity service and keeps it fresh
//! ([`conduit_identity::certify`]); `/ready` is false until it has one.
//! Outbound connections to endpoints that discovery marks with an identity
//! are TLS with that identity as SNI and verified; inbound connections
//! whose ClientHello names this proxy's identity are terminated here and
//! the client's identity read from its certificate. Without
//! `--identity-addr` identity is off and every connection is plaintext,
//! labelled `no_tls_reason="disabled"`.

use std::io;
use std::sync::Arc;

use anyhow::Context as _;
use conduit_api::metrics::{NoTlsReason, Tls};
use conduit_api::{Direction, IdentityName};
use conduit_identity::certify;
use conduit_identity::tls::{Alpn, MeshTls, failure_reason, server_name};
use conduit_identity::{Credentials, TrustAnchors};
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::Channel;

use crate::config::{Config, GrpcAddr};
use crate::metrics::Registry;

pub(crate) struct Identity {
    pub(crate) tls: MeshTls,
    /// The controller's identity: the only client the tap server serves,
    /// and the server the destination client expects.
    pub(crate) controller: IdentityName,
    /// The telemetry store's identity, which the telemetry push expects.
    pub(crate) store: IdentityName,
    registry: Arc<Registry>,
}

impl Identity {
    /// Starts certifying, when the proxy was given an identity service.
    pub(crate) fn start(
        config: &Config,
        registry: &Arc<Registry>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(addr) = &config.identity_addr else {
            tracing::warn!(
                "no --identity-addr: identity is off and this proxy's traffic is plaintext"
            );
            return Ok(None);
        };
        let anchors = match (
            &config.identity_trust_anchors,
            &config.identity_trust_anchors_pem,
        ) {
            (Some(path), _) => TrustAnchors::read(path)?,
            (None, Some(pem)) => TrustAnchors::from_pem(pem)?,
            (None, None) => anyhow::bail!(
                "--identity-addr needs --identity-trust-anchors (or --identity-trust-anchors-pem)"
            ),
        };
        let token_file = config
            .identity_token_file
            .clone()
            .context("--identity-addr needs --identity-token-file")?;
        anyhow::ensure!(
            !config.service_account.is_empty(),
            "--identity-addr needs --service-account (the identity is the ServiceAccount's)"
        );
        let name = IdentityName::in_domain(
            &config.service_account,
            &config.namespace,
            &config.trust_domain,
        );
        let control = &config.control_plane_namespace;
        let controller = IdentityName::controller(control, &config.trust_domain);
        let creds = certify::start(name, &addr.0, &anchors, token_file, controller.clone())
            .map_err(anyhow::Error::msg)?;
        let tls = MeshTls::new(creds.clone(), anchors)?;
        registry.set_credentials(creds);
        Ok(Some(Arc::new(Self {
            tls,
            controller,
            store: IdentityName::store(control, &config.trust_domain),
            registry: registry.clone(),
        })))
    }

    pub(crate) fn creds(&self) -> &Arc<Credentials> {
        &self.tls.creds
    }

    pub(crate) fn name(&self) -> &str {
        self.tls.creds.dns_name()
    }

    /// Originates mTLS to a peer proxy that must prove `server`.
    pub(crate) async fn connect<IO>(
        &self,
        io: IO,
        server: &str,
        alpn: Alpn,
    ) -> io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        if !self.creds().is_ready() {
            self.failed(Direction::Outbound, "no_certificate");
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                crate::http::client::NO_CERTIFICATE,
            ));
        }
        let connector = tokio_rustls::TlsConnector::from(self.tls.client(alpn));
        let res = connector.connect(server_name(server)?, io).await;
        if let Err(e) = &res {
            let reason = failure_reason(e);
            self.failed(Direction::Outbound, reason);
            tracing::info!(server, reason, error = %e, "mTLS handshake with a peer proxy failed");
        }
        res
    }

    /// Terminates mTLS from a peer that named this proxy's identity; a
    /// handshake that takes longer than `timeout` fails (a stalled client
    /// would hold its connection for ever).
    pub(crate) async fn accept<IO>(
        &self,
        io: IO,
        timeout: std::time::Duration,
    ) -> io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.server.clone());
        let res = tokio::time::timeout(timeout, acceptor.accept(io))
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not complete its TLS handshake in time",
                ))
            });
        if let Err(e) = &res {
            let reason = failure_reason(e);
            self.failed(Direction::Inbound, reason);
            tracing::info!(reason, error = %e, "mTLS handshake with a client failed");
        }
        res
    }

    fn failed(&self, direction: Direction, reason: &'static str) {
        self.registry.handshake_failed(direction, reason);
    }
}

/// How a connection to an endpoint that discovery described is secured.
pub(crate) fn outbound_tls(identity: Option<&Identity>, server_id: Option<&str>) -> Tls {
    match (identity, server_id) {
        (_, None) => Tls::NoIdentity(NoTlsReason::NotProvidedByServiceDiscovery),
        (None, Some(_)) => Tls::NoIdentity(NoTlsReason::Disabled),
        (Some(_), Some(_)) => Tls::Secured,
    }
}

/// How a control-plane link dials: `http://` is plaintext, `https://` is
/// mTLS with this proxy's identity, verifying that the server is `server`.
enum Link<'a> {
    Plain(Box<tonic::transport::Endpoint>),
    Tls {
        authority: String,
        server: &'a IdentityName,
        identity: &'a Identity,
    },
}

fn link<'a>(
    addr: &GrpcAddr,
    server: impl FnOnce(&'a Identity) -> &'a IdentityName,
    identity: Option<&'a Identity>,
) -> anyhow::Result<Link<'a>> {
    if !addr.is_tls() {
        let endpoint = tonic::transport::Endpoint::from_shared(addr.0.clone())?
            .connect_timeout(std::time::Duration::from_secs(2))
            .tcp_nodelay(true);
        return Ok(Link::Plain(Box::new(endpoint)));
    }
    let identity = identity.with_context(|| {
        format!("{addr} is mTLS (https): the proxy needs an identity (--identity-addr)")
    })?;
    Ok(Link::Tls {
        authority: addr.authority().map_err(anyhow::Error::msg)?,
        server: server(identity),
        identity,
    })
}

/// A connection to the control plane, made now.
pub(crate) async fn connect<'a>(
    addr: &GrpcAddr,
    server: impl FnOnce(&'a Identity) -> &'a IdentityName,
    identity: Option<&'a Identity>,
) -> anyhow::Result<Channel> {
    match link(addr, server, identity)? {
        Link::Plain(endpoint) => Ok(endpoint.connect().await?),
        Link::Tls {
            authority,
            server,
            identity,
        } => conduit_identity::grpc::connect(
            &authority,
            server,
            identity.tls.client(Alpn::H2),
            Some(identity.creds().clone()),
        )
        .await
        .map_err(anyhow::Error::msg),
    }
}

/// A lazy channel to the control plane: it dials on first use.
pub(crate) fn channel<'a>(
    addr: &GrpcAddr,
    server: impl FnOnce(&'a Identity) -> &'a IdentityName,
    identity: Option<&'a Identity>,
) -> anyhow::Result<Channel> {
    match link(addr, server, identity)? {
        Link::Plain(endpoint) => Ok(endpoint.connect_lazy()),
        Link::Tls {
            authority,
            server,
            identity,
        } => conduit_identity::grpc::channel(
            &authority,
            server,
            identity.tls.client(Alpn::H2),
            Some(identity.creds().clone()),
        )
        .map_err(anyhow::Error::msg),
    }
}
