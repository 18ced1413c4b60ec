//! rustls configurations for the mesh, and what a failed handshake means.
//!
//! Only TLS 1.3, only the ring provider, and the peer's certificate is
//! always verified against the mesh's trust anchors. A client names the
//! identity it expects as SNI (what the destination service said the
//! endpoint proves) and accepts no other; a server learns the client's
//! identity from the certificate it presented.
//!
//! ALPN says what the connection carries, so the receiving proxy needs no
//! protocol detection inside TLS: `h2` for the multiplexed HTTP/2
//! connection between proxies, `http/1.1` for what must stay HTTP/1
//! (upgrades, CONNECT), and [`Alpn::Opaque`] for TCP bytes.

use std::io;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, ServerConfig};

use crate::{Credentials, TrustAnchors};

/// What a mesh TLS connection carries.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Alpn {
    H2,
    Http1,
    Opaque,
}

impl Alpn {
    pub const ALL: [Alpn; 3] = [Alpn::H2, Alpn::Http1, Alpn::Opaque];

    pub fn id(self) -> &'static [u8] {
        match self {
            Self::H2 => b"h2",
            Self::Http1 => b"http/1.1",
            Self::Opaque => b"conduit.io/opaque",
        }
    }

    pub fn of(negotiated: Option<&[u8]>) -> Option<Self> {
        Self::ALL.into_iter().find(|a| Some(a.id()) == negotiated)
    }
}

/// The crypto every Conduit component uses: ring.
/// ring, preferring the hybrid post-quantum key exchange
/// ([`crate::kx`]), then X25519 and P-256.
pub fn provider() -> CryptoProvider {
    let ring = rustls::crypto::ring::default_provider();
    let mut kx_groups = vec![crate::kx::X25519_MLKEM768];
    kx_groups.extend(ring.kx_groups.iter().copied());
    CryptoProvider { kx_groups, ..ring }
}

/// The mesh's provider, built once: every mesh connection uses it,
/// whatever provider another library installed as the process default.
fn shared_provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(provider())).clone()
}

/// Whether a server asks its clients for a certificate.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Verified when presented; a client without one still connects (and
    /// has no identity). The identity service must answer proxies that
    /// have no certificate yet.
    Optional,
    Required,
}

pub fn server_config(
    anchors: &TrustAnchors,
    creds: Arc<Credentials>,
    client_auth: ClientAuth,
    alpn: &[Alpn],
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = shared_provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(anchors.roots(), provider.clone());
    let verifier = match client_auth {
        ClientAuth::Optional => verifier.allow_unauthenticated(),
        ClientAuth::Required => verifier,
    }
    .build()
    .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(creds);
    config.alpn_protocols = alpn.iter().map(|a| a.id().to_vec()).collect();
    Ok(Arc::new(config))
}

/// `creds`: the certificate to present; `None` before there is one (the
/// first call to the identity service).
pub fn client_config(
    anchors: &TrustAnchors,
    creds: Option<Arc<Credentials>>,
    alpn: Alpn,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(shared_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(anchors.roots());
    let mut config = match creds {
        Some(c) => builder.with_client_cert_resolver(c),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.id().to_vec()];
    Ok(Arc::new(config))
}

/// A proxy's TLS settings: one server configuration for its inbound side,
/// one client configuration per ALPN for its outbound side, all presenting
/// the same renewable credentials.
pub struct MeshTls {
    pub creds: Arc<Credentials>,
    pub anchors: TrustAnchors,
    pub server: Arc<ServerConfig>,
    clients: [Arc<ClientConfig>; 3],
}

impl MeshTls {
    pub fn new(creds: Arc<Credentials>, anchors: TrustAnchors) -> Result<Self, rustls::Error> {
        let server = server_config(&anchors, creds.clone(), ClientAuth::Optional, &Alpn::ALL)?;
        let client = |a| client_config(&anchors, Some(creds.clone()), a);
        let clients = [
            client(Alpn::H2)?,
            client(Alpn::Http1)?,
            client(Alpn::Opaque)?,
        ];
        Ok(Self {
            creds,
            anchors,
            server,
            clients,
        })
    }

    pub fn client(&self, alpn: Alpn) -> Arc<ClientConfig> {
        let i = Alpn::ALL.iter().position(|a| *a == alpn).unwrap_or(0);
        self.clients[i].clone()
    }
}

/// The server name a client sends and verifies: the identity's DNS name.
pub fn server_name(identity: &str) -> io::Result<rustls_pki_types::ServerName<'static>> {
    rustls_pki_types::ServerName::try_from(identity.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{identity:?}: {e}")))
}

/// A short, stable name for why a handshake failed, for logs and the
/// `reason` label of the failure counters.
pub fn failure_reason(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::TimedOut {
        return "timeout";
    }
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return "io";
    };
    match tls {
        rustls::Error::InvalidCertificate(c) => {
            match c {
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "not_yet_valid"
                }
                CertificateError::UnknownIssuer => "unknown_issuer",
                CertificateError::BadSignature => "bad_signature",
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => "wrong_identity",
                CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. } => "wrong_purpose",
                _ => "invalid_certificate",
            }
        }
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::AlertReceived(_) => "refused_by_peer",
        rustls::Error::NoApplicationProtocol => "no_alpn",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        _ => "protocol",
    }
}
