//! The trust bundle: the anchors every certificate in the mesh chains to.
//!
//! A bundle may hold several anchors. That is how an anchor is rotated
//! without dropping a request: first every component trusts old and new,
//! then the issuer moves to the new anchor, then the old one is removed.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[derive(Clone, Debug)]
pub struct TrustAnchors {
    roots: Arc<RootCertStore>,
    certificates: Vec<CertificateDer<'static>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnchorsError {
    #[error("cannot read the trust anchors {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error(
        "the trust anchors hold no certificate: expect one or more PEM blocks -----BEGIN CERTIFICATE-----"
    )]
    Empty,
    #[error("the trust anchors are not valid PEM: {0}")]
    Pem(String),
    #[error("trust anchor {index} is not a usable CA certificate: {error}")]
    Invalid { index: usize, error: String },
}

impl TrustAnchors {
    pub fn from_pem(pem: &str) -> Result<Self, AnchorsError> {
        let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AnchorsError::Pem(e.to_string()))?;
        Self::from_der(certificates)
    }

    pub fn from_der(certificates: Vec<CertificateDer<'static>>) -> Result<Self, AnchorsError> {
        if certificates.is_empty() {
            return Err(AnchorsError::Empty);
        }
        let mut roots = RootCertStore::empty();
        for (index, c) in certificates.iter().enumerate() {
            roots.add(c.clone()).map_err(|e| AnchorsError::Invalid {
                index,
                error: e.to_string(),
            })?;
        }
        Ok(Self {
            roots: Arc::new(roots),
            certificates,
        })
    }

    pub fn read(path: &Path) -> Result<Self, AnchorsError> {
        let pem = std::fs::read_to_string(path).map_err(|error| AnchorsError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Self::from_pem(&pem)
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }
}
