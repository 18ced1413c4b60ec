//! Identity names: who a proxy is, as its mTLS certificate proves.
//!
//! A workload's identity is its Kubernetes service account within a trust
//! domain: `<serviceaccount>.<namespace>.serviceaccount.identity.conduit.<trust-domain>`
//! (the certificate's DNS SAN), also written as the SPIFFE ID
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>` (its URI
//! SAN). The control plane's own components have identities of the same
//! form, from their service accounts in the control plane's namespace.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::deployment::{ParseError, validate_name, validate_namespace};

/// The trust domain when none is configured, as in Kubernetes' default
/// cluster domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// Between the namespace and the trust domain of every identity name.
pub const IDENTITY_INFIX: &str = "serviceaccount.identity.conduit";
/// The control plane's namespace unless told otherwise.
pub const CONTROL_PLANE_NAMESPACE: &str = "conduit";
/// The controller's service account: its identity serves Destination and
/// Identity and taps proxies.
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "conduit-controller";
/// The telemetry store's service account.
pub const STORE_SERVICE_ACCOUNT: &str = "conduit-telemetry-store";
/// The audience of the tokens the identity service accepts (projected
/// ServiceAccount tokens, and the local mode's tokens).
pub const TOKEN_AUDIENCE: &str = "identity.conduit.io";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdentityName {
    pub service_account: String,
    pub namespace: String,
    pub trust_domain: String,
}

impl IdentityName {
    /// An identity in the default trust domain.
    pub fn new(service_account: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self::in_domain(service_account, namespace, DEFAULT_TRUST_DOMAIN)
    }

    pub fn in_domain(
        service_account: impl Into<String>,
        namespace: impl Into<String>,
        trust_domain: impl Into<String>,
    ) -> Self {
        Self {
            service_account: service_account.into(),
            namespace: namespace.into(),
            trust_domain: trust_domain.into(),
        }
    }

    /// The controller's identity in `namespace`.
    pub fn controller(namespace: &str, trust_domain: &str) -> Self {
        Self::in_domain(CONTROLLER_SERVICE_ACCOUNT, namespace, trust_domain)
    }

    /// The telemetry store's identity in `namespace`.
    pub fn store(namespace: &str, trust_domain: &str) -> Self {
        Self::in_domain(STORE_SERVICE_ACCOUNT, namespace, trust_domain)
    }

    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>`.
    pub fn spiffe_id(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl fmt::Display for IdentityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{IDENTITY_INFIX}.{}",
            self.service_account, self.namespace, self.trust_domain
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error(
        "{0:?} is not a Conduit identity (`<serviceaccount>.<namespace>.{IDENTITY_INFIX}.<trust-domain>`)"
    )]
    NotAnIdentity(String),
    #[error(transparent)]
    InvalidName(#[from] ParseError),
}

impl FromStr for IdentityName {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let not_identity = || IdentityError::NotAnIdentity(s.to_string());
        let (prefix, trust_domain) = s
            .split_once(&format!(".{IDENTITY_INFIX}."))
            .ok_or_else(not_identity)?;
        // Service accounts and namespaces contain no dots, so the split is
        // unambiguous.
        let (service_account, namespace) = prefix.split_once('.').ok_or_else(not_identity)?;
        if namespace.contains('.') || service_account.contains('.') {
            return Err(not_identity());
        }
        validate_name(service_account)?;
        validate_namespace(namespace)?;
        validate_trust_domain(trust_domain).map_err(|_| not_identity())?;
        Ok(Self::in_domain(service_account, namespace, trust_domain))
    }
}

/// A trust domain is a DNS name: lower-case labels of letters, digits and
/// dashes.
pub fn validate_trust_domain(domain: &str) -> Result<(), String> {
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.len() <= 253 && domain.split('.').all(valid_label) {
        Ok(())
    } else {
        Err(format!(
            "{domain:?} is not a trust domain: use a DNS name such as cluster.local"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = IdentityName::new("web", "demo");
        let s = id.to_string();
        assert_eq!(s, "web.demo.serviceaccount.identity.conduit.cluster.local");
        assert_eq!(s.parse::<IdentityName>(), Ok(id.clone()));
        assert_eq!(id.spiffe_id(), "spiffe://cluster.local/ns/demo/sa/web");
        let other = IdentityName::in_domain("web", "demo", "prod.example.org");
        assert_eq!(other.to_string().parse::<IdentityName>(), Ok(other));
    }

    #[test]
    fn rejects_foreign_names() {
        for bad in [
            "web.demo.svc.cluster.local",
            "web.serviceaccount.identity.conduit.cluster.local",
            "a.b.c.serviceaccount.identity.conduit.cluster.local",
            "Web.demo.serviceaccount.identity.conduit.cluster.local",
            "web.demo.serviceaccount.identity.conduit.",
            "web.demo.serviceaccount.identity.conduit.Cluster.local",
        ] {
            assert!(bad.parse::<IdentityName>().is_err(), "{bad}");
        }
    }
}
