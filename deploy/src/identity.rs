//! The roots of the mesh's identity: a trust anchor every proxy trusts, and
//! an issuer certificate, signed by the anchor, whose key the identity
//! service signs proxy certificates with. `conduit install` packages them
//! as Secrets.
//!
//! When the user brings none, install generates them: ECDSA P-256, the
//! anchor valid ten years, the issuer one year. The anchor's private key is
//! thrown away once it has signed the issuer, so the cluster never holds a
//! key that could mint a new root of trust; rotating the issuer then means
//! bringing your own anchor (`--identity-trust-anchors-file`).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData,
};
use time::{Duration, OffsetDateTime};

use conduit_identity::cert::{self, CertInfo};

use crate::value::{Value, map, seq};

/// Where a workload's projected ServiceAccount token is mounted.
pub const TOKEN_DIR: &str = "/var/run/conduit/identity/token";
pub const TOKEN_FILE: &str = "/var/run/conduit/identity/token/token";
/// The volume holding it, in every pod that certifies itself.
pub const TOKEN_VOLUME: &str = "conduit-identity-token";
/// Projected tokens live a day; the kubelet refreshes them well before.
const TOKEN_EXPIRATION_S: u32 = 86_400;

/// A projected ServiceAccount token for the identity service's audience:
/// what a proxy (or the store) shows `Certify`.
pub fn token_volume() -> Value {
    map([
        ("name", TOKEN_VOLUME.into()),
        (
            "projected",
            map([(
                "sources",
                seq([map([(
                    "serviceAccountToken",
                    map([
                        ("audience", conduit_api::identity::TOKEN_AUDIENCE.into()),
                        ("expirationSeconds", TOKEN_EXPIRATION_S.into()),
                        ("path", "token".into()),
                    ]),
                )])]),
            )]),
        ),
    ])
}

pub fn token_mount() -> Value {
    map([
        ("name", TOKEN_VOLUME.into()),
        ("mountPath", TOKEN_DIR.into()),
        ("readOnly", true.into()),
    ])
}

/// The trust anchor's common name when install generates it.
pub const TRUST_ANCHOR_NAME: &str = "root.identity.conduit.cluster.local";
/// The issuer's common name (and DNS name) when install generates it.
pub const ISSUER_NAME: &str = "identity.conduit.cluster.local";

const TRUST_ANCHOR_VALIDITY: Duration = Duration::days(3650);
const ISSUER_VALIDITY: Duration = Duration::days(365);
/// Nodes' clocks disagree a little; a certificate valid from "now" could be
/// rejected as not yet valid by a node that is a few seconds behind.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// PEM texts of the identity roots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRoots {
    /// One or more certificates (several during an anchor rotation).
    pub trust_anchors_pem: String,
    pub issuer_certificate_pem: String,
    /// PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub issuer_key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(String),
    #[error("generating the identity certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

fn invalid(message: impl Into<String>) -> IdentityError {
    IdentityError::Invalid(message.into())
}

impl IdentityRoots {
    /// A fresh trust anchor and an issuer signed by it.
    pub fn generate(now: OffsetDateTime) -> Result<Self, IdentityError> {
        let anchor_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let anchor = ca_params(TRUST_ANCHOR_NAME, 1, now, TRUST_ANCHOR_VALIDITY)?;
        let anchor_certificate = anchor.self_signed(&anchor_key)?;

        let issuer_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut issuer = ca_params(ISSUER_NAME, 0, now, ISSUER_VALIDITY)?;
        issuer.use_authority_key_identifier_extension = true;
        let issuer_certificate = issuer.signed_by(&issuer_key, &Issuer::new(anchor, anchor_key))?;

        Ok(Self {
            trust_anchors_pem: anchor_certificate.pem(),
            issuer_certificate_pem: issuer_certificate.pem(),
            issuer_key_pem: issuer_key.serialize_pem(),
        })
    }

    /// Trust anchors alone (what `conduit inject` hands proxies): PEM
    /// certificates, valid now.
    pub fn check_anchors(pem_text: &str) -> Result<(), IdentityError> {
        let now = OffsetDateTime::now_utc();
        for der in certificates(pem_text, "trust anchors")? {
            let anchor = cert::info(&der).map_err(|e| invalid(format!("trust anchors: {e}")))?;
            check_validity("trust anchor", &anchor, now)?;
        }
        Ok(())
    }

    /// Roots the user brings, checked: PEM that parses, an issuer key that
    /// matches the issuer certificate, an issuer certificate issued by one
    /// of the anchors, and every certificate valid at `now`.
    ///
    /// The anchor's signature on the issuer is not verified here (only the
    /// names are matched); proxies verify it when they connect.
    pub fn from_pem(
        trust_anchors: &str,
        issuer_certificate: &str,
        issuer_key: &str,
        now: OffsetDateTime,
    ) -> Result<Self, IdentityError> {
        let anchors = certificates(trust_anchors, "trust anchors")?;
        let issuer_chain = certificates(issuer_certificate, "issuer certificate")?;
        let key = private_key(issuer_key)?;

        let anchors = anchors
            .iter()
            .map(|der| cert::info(der).map_err(|e| invalid(format!("trust anchors: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let issuer = cert::info(&issuer_chain[0])
            .map_err(|e| invalid(format!("issuer certificate: {e}")))?;

        if key.subject_public_key_info() != issuer.public_key {
            return Err(invalid(
                "the issuer key does not belong to the issuer certificate",
            ));
        }
        if !anchors.iter().any(|a| a.subject == issuer.issuer) {
            return Err(invalid(
                "the issuer certificate was not issued by any of the trust anchors",
            ));
        }
        check_validity("issuer certificate", &issuer, now)?;
        for anchor in &anchors {
            check_validity("trust anchor", anchor, now)?;
        }
        Ok(Self {
            trust_anchors_pem: trust_anchors.to_string(),
            issuer_certificate_pem: issuer_certificate.to_string(),
            issuer_key_pem: issuer_key.to_string(),
        })
    }
}

fn ca_params(
    name: &str,
    path_length: u8,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name = distinguished_name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_length));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + validity;
    Ok(params)
}

/// The DER certificates of a PEM text; at least one.
fn certificates(pem_text: &str, what: &str) -> Result<Vec<Vec<u8>>, IdentityError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| invalid(format!("{what}: {e}")))?;
    let certificates: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if certificates.is_empty() {
        return Err(invalid(format!(
            "{what}: no PEM certificate (-----BEGIN CERTIFICATE-----) found"
        )));
    }
    Ok(certificates)
}

fn private_key(pem_text: &str) -> Result<KeyPair, IdentityError> {
    let block = pem::parse(pem_text).map_err(|e| invalid(format!("issuer key: {e}")))?;
    match block.tag() {
        "PRIVATE KEY" => {
            KeyPair::from_pem(pem_text).map_err(|e| invalid(format!("issuer key: {e}")))
        }
        "EC PRIVATE KEY" | "RSA PRIVATE KEY" => Err(invalid(format!(
            "issuer key: {} is not supported; convert it to PKCS#8 with \
             `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8`",
            block.tag()
        ))),
        other => Err(invalid(format!(
            "issuer key: expected -----BEGIN PRIVATE KEY-----, found {other}"
        ))),
    }
}

fn check_validity(
    what: &str,
    certificate: &CertInfo,
    now: OffsetDateTime,
) -> Result<(), IdentityError> {
    let at = |unix| {
        OffsetDateTime::from_unix_timestamp(unix)
            .map_err(|_| invalid(format!("the {what} has an unusable validity time")))
    };
    let (not_before, not_after) = (
        at(certificate.not_before_unix)?,
        at(certificate.not_after_unix)?,
    );
    if now > not_after {
        return Err(invalid(format!(
            "the {what} expired on {}",
            not_after.date()
        )));
    }
    if now + CLOCK_SKEW < not_before {
        return Err(invalid(format!(
            "the {what} is not valid before {not_before}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn generated_roots_pass_the_checks_of_given_ones() {
        let roots = IdentityRoots::generate(now()).unwrap();
        let again = IdentityRoots::from_pem(
            &roots.trust_anchors_pem,
            &roots.issuer_certificate_pem,
            &roots.issuer_key_pem,
            now(),
        )
        .unwrap();
        assert_eq!(again, roots);
        let issuer = pem::parse(&roots.issuer_certificate_pem).unwrap();
        let issuer = cert::info(issuer.contents()).unwrap();
        let lifetime = issuer.not_after_unix - issuer.not_before_unix;
        assert_eq!(lifetime, (ISSUER_VALIDITY + CLOCK_SKEW).whole_seconds());
    }

    #[test]
    fn a_key_of_another_certificate_is_rejected() {
        let a = IdentityRoots::generate(now()).unwrap();
        let b = IdentityRoots::generate(now()).unwrap();
        let err = IdentityRoots::from_pem(
            &a.trust_anchors_pem,
            &a.issuer_certificate_pem,
            &b.issuer_key_pem,
            now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn an_issuer_from_another_anchor_is_rejected() {
        let mut a = IdentityRoots::generate(now()).unwrap();
        // Same names, different anchor: only a changed anchor subject would
        // be caught by name matching, so use a foreign-named anchor.
        let foreign_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let foreign = ca_params("someone.else", 1, now(), TRUST_ANCHOR_VALIDITY)
            .unwrap()
            .self_signed(&foreign_key)
            .unwrap();
        a.trust_anchors_pem = foreign.pem();
        let err = IdentityRoots::from_pem(
            &a.trust_anchors_pem,
            &a.issuer_certificate_pem,
            &a.issuer_key_pem,
            now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not issued by"), "{err}");
    }

    #[test]
    fn expired_issuers_are_rejected() {
        let roots = IdentityRoots::generate(now() - Duration::days(400)).unwrap();
        let err = IdentityRoots::from_pem(
            &roots.trust_anchors_pem,
            &roots.issuer_certificate_pem,
            &roots.issuer_key_pem,
            now(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("issuer certificate expired"),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_sec1_keys_say_what_to_do() {
        let roots = IdentityRoots::generate(now()).unwrap();
        let err = IdentityRoots::from_pem(
            "not pem",
            &roots.issuer_certificate_pem,
            &roots.issuer_key_pem,
            now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("trust anchors"), "{err}");
        let sec1 = roots
            .issuer_key_pem
            .replace("PRIVATE KEY", "EC PRIVATE KEY");
        let err = IdentityRoots::from_pem(
            &roots.trust_anchors_pem,
            &roots.issuer_certificate_pem,
            &sec1,
            now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("openssl pkcs8"), "{err}");
    }
}
