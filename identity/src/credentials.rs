//! The proxy's own key and certificate, as rustls serves them.
//!
//! Renewal replaces both at once while connections go on: a handshake
//! takes whatever is current when it starts, and connections already open
//! keep the session they negotiated. A certificate past its expiry is never
//! presented: meshed traffic then fails closed instead of offering peers a
//! certificate they must refuse.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use conduit_api::IdentityName;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{SignatureScheme, crypto::CryptoProvider};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::cert;

/// A certificate in force, with the key it certifies.
#[derive(Debug)]
pub struct Issued {
    pub key: Arc<CertifiedKey>,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InstallError {
    #[error("the certificate chain is empty")]
    Empty,
    #[error("the leaf certificate is unreadable: {0}")]
    Unreadable(String),
    #[error("the leaf certificate names {found:?}, not this workload's identity {expected}")]
    WrongName {
        expected: String,
        found: Vec<String>,
    },
    #[error("the leaf certificate is not for this workload's key")]
    WrongKey,
    #[error("the leaf certificate has already expired")]
    Expired,
    #[error("the private key is unusable: {0}")]
    Key(String),
}

/// Who this workload is, and the certificate that proves it right now.
#[derive(Debug)]
pub struct Credentials {
    name: IdentityName,
    dns_name: String,
    current: watch::Sender<Option<Arc<Issued>>>,
    /// Certificates installed, and failed attempts to get one.
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Credentials {
    pub fn new(name: IdentityName) -> Arc<Self> {
        Arc::new(Self {
            dns_name: name.to_string(),
            name,
            current: watch::channel(None).0,
            refreshes: AtomicU64::new(0),
            refresh_failures: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &IdentityName {
        &self.name
    }

    /// The identity as the certificate's DNS name spells it.
    pub fn dns_name(&self) -> &str {
        &self.dns_name
    }

    /// Puts a new certificate in force, after checking that it is this
    /// workload's: its name, the public key of `key`, and still valid.
    /// `public_key` is the DER SubjectPublicKeyInfo of `key`.
    pub fn install(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        public_key: &[u8],
    ) -> Result<(), InstallError> {
        let leaf = chain.first().ok_or(InstallError::Empty)?;
        let info = cert::info(leaf).map_err(InstallError::Unreadable)?;
        if info.identity().as_ref() != Some(&self.name) {
            return Err(InstallError::WrongName {
                expected: self.dns_name.clone(),
                found: info.dns_names,
            });
        }
        if info.public_key != public_key {
            return Err(InstallError::WrongKey);
        }
        if info.not_after_unix <= unix_now() {
            return Err(InstallError::Expired);
        }
        let provider = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(crate::tls::provider()));
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| InstallError::Key(e.to_string()))?;
        let issued = Issued {
            key: Arc::new(CertifiedKey::new(chain, signing)),
            not_before_unix: info.not_before_unix,
            not_after_unix: info.not_after_unix,
        };
        self.current.send_replace(Some(Arc::new(issued)));
        self.refreshes.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The certificate in force, unless it has expired.
    pub fn current(&self) -> Option<Arc<Issued>> {
        let issued = self.current.borrow().clone()?;
        (issued.not_after_unix > unix_now()).then_some(issued)
    }

    /// Whether the workload can prove its identity now.
    pub fn is_ready(&self) -> bool {
        self.current().is_some()
    }

    /// When the certificate in force expires (even if it has).
    pub fn expiry_unix(&self) -> Option<i64> {
        self.current.borrow().as_ref().map(|i| i.not_after_unix)
    }

    /// Changes whenever a certificate is installed.
    pub fn watch(&self) -> watch::Receiver<Option<Arc<Issued>>> {
        self.current.subscribe()
    }
}

impl ResolvesServerCert for Credentials {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current().map(|i| i.key.clone())
    }
}

impl ResolvesClientCert for Credentials {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current().map(|i| i.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
