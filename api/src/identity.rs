//! Identity names: who a proxy is, as its mTLS certificate proves.
//!
//! A workload's identity is its Kubernetes service account:
//! `<serviceaccount>.<namespace>.serviceaccount.identity.conduit.cluster.local`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::deployment::{ParseError, validate_name};

/// Every identity name ends with this.
pub const IDENTITY_SUFFIX: &str = "serviceaccount.identity.conduit.cluster.local";

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdentityName {
    pub service_account: String,
    pub namespace: String,
}

impl IdentityName {
    pub fn new(service_account: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            service_account: service_account.into(),
            namespace: namespace.into(),
        }
    }
}

impl fmt::Display for IdentityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{IDENTITY_SUFFIX}",
            self.service_account, self.namespace
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("{0:?} is not a Conduit identity (`<serviceaccount>.<namespace>.{IDENTITY_SUFFIX}`)")]
    NotAnIdentity(String),
    #[error(transparent)]
    InvalidName(#[from] ParseError),
}

impl FromStr for IdentityName {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let not_identity = || IdentityError::NotAnIdentity(s.to_string());
        let prefix = s
            .strip_suffix(IDENTITY_SUFFIX)
            .and_then(|p| p.strip_suffix('.'))
            .ok_or_else(not_identity)?;
        // Service accounts and namespaces contain no dots, so the split is
        // unambiguous.
        let (service_account, namespace) = prefix.split_once('.').ok_or_else(not_identity)?;
        if namespace.contains('.') || service_account.contains('.') {
            return Err(not_identity());
        }
        validate_name(service_account)?;
        validate_name(namespace)?;
        Ok(Self::new(service_account, namespace))
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
        assert_eq!(s.parse::<IdentityName>(), Ok(id));
    }

    #[test]
    fn rejects_foreign_names() {
        for bad in [
            "web.demo.svc.cluster.local",
            "web.serviceaccount.identity.conduit.cluster.local",
            "a.b.c.serviceaccount.identity.conduit.cluster.local",
            "Web.demo.serviceaccount.identity.conduit.cluster.local",
        ] {
            assert!(bad.parse::<IdentityName>().is_err(), "{bad}");
        }
    }
}
