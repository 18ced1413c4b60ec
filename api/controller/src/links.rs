//! The controller's own connections into the mesh: to the telemetry store
//! and to each proxy's tap server.
//!
//! With identity on, both are mTLS: the controller presents its own
//! certificate (the tap servers serve no one else) and verifies that the
//! other side proves the identity it should, the store's or the pod's
//! ServiceAccount's. Without identity, they are plaintext.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conduit_api::IdentityName;
use conduit_identity::Credentials;
use conduit_identity::tls::{Alpn, client_config};
use rustls::ClientConfig;
use tonic::transport::{Channel, Endpoint};

use crate::server::MeshIdentity;

/// How long reading a proxy's certificate may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Default)]
pub struct Links {
    tls: Option<(Arc<ClientConfig>, Arc<Credentials>)>,
    trust_domain: String,
}

impl Links {
    pub fn new(identity: Option<&MeshIdentity>, trust_domain: &str) -> anyhow::Result<Self> {
        let tls = match identity {
            Some(id) => Some((
                client_config(id.issuer.anchors(), Some(id.creds.clone()), Alpn::H2)?,
                id.creds.clone(),
            )),
            None => None,
        };
        Ok(Self {
            tls,
            trust_domain: trust_domain.to_string(),
        })
    }

    /// The identity of a pod running as `service_account` in `namespace`.
    pub fn pod_identity(&self, service_account: &str, namespace: &str) -> IdentityName {
        IdentityName::in_domain(service_account, namespace, &self.trust_domain)
    }

    /// A lazy channel to `addr` (`host:port`): mTLS verifying `server`
    /// when identity is on, plaintext otherwise.
    pub fn channel(
        &self,
        addr: &str,
        server: &IdentityName,
        connect_timeout: Duration,
    ) -> Result<Channel, String> {
        match &self.tls {
            Some((config, creds)) => {
                conduit_identity::grpc::channel(addr, server, config.clone(), Some(creds.clone()))
            }
            None => Ok(Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .connect_lazy()),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The certificate chain (DER, leaf first) a proxy at `addr` presents
    /// when asked, by SNI, to prove `identity`.
    pub async fn peer_certificates(
        &self,
        addr: SocketAddr,
        identity: &IdentityName,
    ) -> Result<Vec<Vec<u8>>, String> {
        let Some((config, _)) = &self.tls else {
            return Err("identity is off".into());
        };
        let name =
            conduit_identity::tls::server_name(&identity.to_string()).map_err(|e| e.to_string())?;
        let handshake = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
        };
        let tls = tokio::time::timeout(PROBE_TIMEOUT, handshake)
            .await
            .map_err(|_| format!("{addr}: no TLS handshake within {PROBE_TIMEOUT:?}"))?
            .map_err(|e| format!("{addr}: {e}"))?;
        let (_, conn) = tls.get_ref();
        Ok(conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.to_vec())
            .collect())
    }
}
