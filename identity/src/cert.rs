//! Reading certificates: whom they name, who issued them, when they are
//! valid. For the checks and listings people read (`conduit check`,
//! `conduit identity`) and for learning a peer's identity from the
//! certificate it proved in a handshake.

use conduit_api::IdentityName;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What a certificate says, as people read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub dns_names: Vec<String>,
    pub uris: Vec<String>,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    pub is_ca: bool,
    /// DER of the SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// The identity its DNS names carry, if any is a Conduit identity.
    pub fn identity(&self) -> Option<IdentityName> {
        self.dns_names.iter().find_map(|n| n.parse().ok())
    }
}

pub fn info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not a DER X.509 certificate: {e}"))?;
    let mut dns_names = Vec::new();
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns_names.push(n.to_string()),
                GeneralName::URI(u) => uris.push(u.to_string()),
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        dns_names,
        uris,
        not_before_unix: validity.not_before.timestamp(),
        not_after_unix: validity.not_after.timestamp(),
        is_ca: cert.is_ca(),
        public_key: cert.public_key().raw.to_vec(),
    })
}

/// The Conduit identity a certificate names, if it names one.
pub fn identity_of(der: &[u8]) -> Option<IdentityName> {
    info(der).ok()?.identity()
}
