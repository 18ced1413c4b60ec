//! The issuer: signs a workload's CSR into a short-lived leaf certificate.
//!
//! The names on the leaf come from the identity the token proved, never
//! from the CSR: a CSR may only ask for exactly those names (its DNS and
//! SPIFFE URI SANs), anything else is refused. Its key must be ECDSA P-256,
//! and its signature must verify, which proves the caller holds the key.

use std::time::Duration;

use conduit_api::IdentityName;
use conduit_identity::TrustAnchors;
use conduit_identity::cert::{self, CertInfo};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData,
    SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

/// Nodes' clocks disagree a little; a leaf valid from "now" could be
/// refused as not yet valid by a peer a few seconds behind.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

pub struct Issuer {
    signer: rcgen::Issuer<'static, KeyPair>,
    certificate: CertificateDer<'static>,
    info: CertInfo,
    anchors: TrustAnchors,
    lifetime: Duration,
}

/// A signed leaf and the chain that goes with it.
pub struct Leaf {
    pub certificate: CertificateDer<'static>,
    /// Up to, not including, the trust anchor: the issuer's certificate.
    pub intermediates: Vec<CertificateDer<'static>>,
    pub not_after_unix: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IssueError {
    #[error("the CSR is malformed or its signature does not verify: {0}")]
    MalformedCsr(String),
    #[error("the CSR's key must be ECDSA P-256")]
    UnsupportedKey,
    #[error("the CSR asks for {0}, which the token does not prove")]
    NameMismatch(String),
    #[error("the CSR names no identity (it needs the DNS name {0})")]
    NoName(String),
    #[error("the issuer certificate has expired; rotate it (see the README)")]
    IssuerExpired,
    #[error("signing failed: {0}")]
    Signing(String),
}

impl Issuer {
    /// The issuer from its PEM certificate and PKCS#8 key, checked to
    /// chain to one of `anchors`.
    pub fn from_pem(
        certificate_pem: &str,
        key_pem: &str,
        anchors: TrustAnchors,
        lifetime: Duration,
    ) -> anyhow::Result<Self> {
        let certificate = CertificateDer::from_pem_slice(certificate_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("the issuer certificate is not PEM: {e}"))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| anyhow::anyhow!("the issuer key is not a PKCS#8 PEM key: {e}"))?;
        let info = cert::info(&certificate).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            info.public_key == key.subject_public_key_info(),
            "the issuer key does not belong to the issuer certificate"
        );
        anyhow::ensure!(info.is_ca, "the issuer certificate is not a CA");
        anyhow::ensure!(
            anchors
                .certificates()
                .iter()
                .filter_map(|a| cert::info(a).ok())
                .any(|a| a.subject == info.issuer),
            "the issuer certificate was not issued by any of the trust anchors"
        );
        let signer = rcgen::Issuer::from_ca_cert_der(&certificate, key)
            .map_err(|e| anyhow::anyhow!("cannot use the issuer certificate: {e}"))?;
        Ok(Self {
            signer,
            certificate,
            info,
            anchors,
            lifetime,
        })
    }

    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    pub fn certificate(&self) -> &CertInfo {
        &self.info
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Signs `csr` (DER) for `identity`, which the caller's token proved.
    pub fn issue(&self, csr: &[u8], identity: &IdentityName) -> Result<Leaf, IssueError> {
        let der = rustls_pki_types::CertificateSigningRequestDer::from(csr);
        let csr = CertificateSigningRequestParams::from_der(&der)
            .map_err(|e| IssueError::MalformedCsr(e.to_string()))?;
        if csr.public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(IssueError::UnsupportedKey);
        }
        check_names(&csr.params.subject_alt_names, identity)?;
        self.sign(&csr.public_key, identity)
    }

    /// A leaf for a key the controller holds itself (its own certificate).
    pub fn issue_for_key(
        &self,
        key: &KeyPair,
        identity: &IdentityName,
    ) -> Result<Leaf, IssueError> {
        self.sign(key, identity)
    }

    fn sign(
        &self,
        key: &impl rcgen::PublicKeyData,
        identity: &IdentityName,
    ) -> Result<Leaf, IssueError> {
        let now = OffsetDateTime::now_utc();
        let issuer_until = OffsetDateTime::from_unix_timestamp(self.info.not_after_unix)
            .map_err(|e| IssueError::Signing(e.to_string()))?;
        if issuer_until <= now {
            return Err(IssueError::IssuerExpired);
        }
        let params = leaf_params(identity, now, (now + self.lifetime).min(issuer_until))?;
        let certificate = params
            .signed_by(key, &self.signer)
            .map_err(|e| IssueError::Signing(e.to_string()))?;
        let not_after_unix = params.not_after.unix_timestamp();
        Ok(Leaf {
            certificate: certificate.der().clone(),
            intermediates: vec![self.certificate.clone()],
            not_after_unix,
        })
    }
}

/// The CSR may name the identity's DNS name and SPIFFE ID, and nothing
/// else; the DNS name must be there.
fn check_names(names: &[SanType], identity: &IdentityName) -> Result<(), IssueError> {
    let (dns, uri) = (identity.to_string(), identity.spiffe_id());
    let mut has_dns = false;
    for name in names {
        match name {
            SanType::DnsName(n) if n.as_str() == dns => has_dns = true,
            SanType::URI(u) if u.as_str() == uri => {}
            SanType::DnsName(n) => return Err(IssueError::NameMismatch(n.as_str().to_string())),
            SanType::URI(u) => return Err(IssueError::NameMismatch(u.as_str().to_string())),
            other => return Err(IssueError::NameMismatch(format!("{other:?}"))),
        }
    }
    if has_dns {
        Ok(())
    } else {
        Err(IssueError::NoName(dns))
    }
}

fn leaf_params(
    identity: &IdentityName,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, IssueError> {
    let bad = |e: rcgen::Error| IssueError::Signing(e.to_string());
    let dns = identity.to_string();
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    params.subject_alt_names = vec![
        SanType::DnsName(dns.clone().try_into().map_err(bad)?),
        SanType::URI(identity.spiffe_id().try_into().map_err(bad)?),
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, dns);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&fastrand::u128(..).to_be_bytes()));
    params.not_before = now - CLOCK_SKEW;
    params.not_after = not_after;
    Ok(params)
}
