//! Deployments: the noun every metric, stat, top, tap and edge is about.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[cfg(feature = "proto")]
use crate::proto::mesh::v1 as pb;

/// A Deployment by namespace and name. A pod belongs to at most one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeploymentRef {
    pub namespace: String,
    pub name: String,
}

impl DeploymentRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A Deployment as a query parameter names it: `NAMESPACE/NAME`, or
    /// `NAME`, `deploy/NAME` or `deployment/NAME` (as the CLI spells it)
    /// in `namespace`.
    pub fn parse_in(text: &str, namespace: &str) -> Result<Self, ParseError> {
        let name = match text.split_once('/') {
            None => text,
            Some((kind, name)) if is_deployment_kind(kind) => name,
            Some(_) => return text.parse(),
        };
        validate_namespace(namespace)?;
        validate_name(name)?;
        Ok(Self::new(namespace, name))
    }
}

fn is_deployment_kind(kind: &str) -> bool {
    matches!(kind, "deploy" | "deployment" | "deployments")
}

/// Printed and parsed as `namespace/name`.
impl fmt::Display for DeploymentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("expected `namespace/name`, got {0:?}")]
    NotNamespaced(String),
    #[error(
        "{0:?} is not a valid Kubernetes object name: lowercase letters, digits, '-' and '.', \
         at most 253 characters, each '.'-separated part starting and ending with a letter or digit"
    )]
    InvalidName(String),
    #[error(
        "{0:?} is not a valid namespace name: lowercase letters, digits and '-', \
         at most 63 characters, starting and ending with a letter or digit"
    )]
    InvalidNamespace(String),
    #[error(
        "{0:?} is not a valid version: a Kubernetes label value (such as a pod's \
         pod-template-hash), letters, digits, '-', '_' and '.', at most 63 characters, \
         starting and ending with a letter or digit"
    )]
    InvalidVersion(String),
    #[error(
        "unsupported resource {0:?}: use `deploy`, `deploy/NAME` (also `deployment`, `deployments`)"
    )]
    UnsupportedKind(String),
}

impl FromStr for DeploymentRef {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = s
            .split_once('/')
            .ok_or_else(|| ParseError::NotNamespaced(s.to_string()))?;
        validate_namespace(namespace)?;
        validate_name(name)?;
        Ok(Self::new(namespace, name))
    }
}

/// Object names (Deployments, ServiceAccounts, pods, policy resources)
/// follow Kubernetes' DNS-1123 subdomain rule: dot-separated labels, 253
/// characters in all.
pub fn validate_name(name: &str) -> Result<(), ParseError> {
    let valid = name.len() <= 253 && name.split('.').all(is_label);
    if valid {
        Ok(())
    } else {
        Err(ParseError::InvalidName(name.to_string()))
    }
}

/// Namespaces follow the stricter DNS-1123 label rule: one label, no dots.
pub fn validate_namespace(namespace: &str) -> Result<(), ParseError> {
    if is_label(namespace) {
        Ok(())
    } else {
        Err(ParseError::InvalidNamespace(namespace.to_string()))
    }
}

/// The label Kubernetes' Deployment controller gives each pod: the hash of
/// its ReplicaSet's pod template, so one value per version of the
/// Deployment. `conduit inject` passes it to the proxy, whose series carry
/// it as `pod_template_hash`.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// A workload's version (the `pod_template_hash` label's value) is a
/// Kubernetes label value: what the pod's `pod-template-hash` label can
/// hold, so one rule fits both modes. Empty means no version.
pub fn validate_version(version: &str) -> Result<(), ParseError> {
    let edge = |b: Option<&u8>| b.is_none_or(u8::is_ascii_alphanumeric);
    let valid = version.len() <= 63
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && edge(version.as_bytes().first())
        && edge(version.as_bytes().last());
    if valid {
        Ok(())
    } else {
        Err(ParseError::InvalidVersion(version.to_string()))
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// What a CLI argument such as `deploy`, `deploy/web` or `deployment/web`
/// points at: all Deployments, or one by name (the namespace comes from
/// `-n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceTarget {
    pub name: Option<String>,
}

impl FromStr for ResourceTarget {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = match s.split_once('/') {
            Some((kind, name)) => (kind, Some(name)),
            None => (s, None),
        };
        if !is_deployment_kind(kind) {
            return Err(ParseError::UnsupportedKind(kind.to_string()));
        }
        if let Some(name) = name {
            validate_name(name)?;
        }
        Ok(Self {
            name: name.map(str::to_string),
        })
    }
}

#[cfg(feature = "proto")]
impl From<DeploymentRef> for pb::DeploymentRef {
    fn from(d: DeploymentRef) -> Self {
        Self {
            namespace: d.namespace,
            name: d.name,
        }
    }
}

#[cfg(feature = "proto")]
impl From<pb::DeploymentRef> for DeploymentRef {
    fn from(d: pb::DeploymentRef) -> Self {
        Self::new(d.namespace, d.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_namespace_slash_name() {
        let d: DeploymentRef = "demo/web".parse().unwrap();
        assert_eq!(d, DeploymentRef::new("demo", "web"));
        assert_eq!(d.to_string(), "demo/web");
    }

    #[test]
    fn rejects_bad_names() {
        assert!(matches!(
            "web".parse::<DeploymentRef>(),
            Err(ParseError::NotNamespaced(_))
        ));
        assert!(matches!(
            "demo/Web".parse::<DeploymentRef>(),
            Err(ParseError::InvalidName(_))
        ));
        assert!(matches!(
            "demo/-web".parse::<DeploymentRef>(),
            Err(ParseError::InvalidName(_))
        ));
    }

    #[test]
    fn names_are_subdomains_and_namespaces_labels() {
        let long_label = "a".repeat(63);
        for ok in ["web", "web-1", "web.v2", "a.b.c", long_label.as_str()] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        let too_long = ["a"; 128].join(".");
        for bad in [
            "", "web..v2", "web.-v2", ".web", "web.", "Web", "a_b", &too_long,
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(validate_name(&["a"; 127].join(".")), Ok(()));
        assert_eq!(validate_namespace(&long_label), Ok(()));
        for bad in ["web.v2", &"a".repeat(64), "-demo", ""] {
            let err = validate_namespace(bad).unwrap_err();
            assert!(err.to_string().contains("at most 63"), "{err}");
        }
        assert!(matches!(
            "web.v2/web".parse::<DeploymentRef>(),
            Err(ParseError::InvalidNamespace(_))
        ));
        assert!("demo/web.v2".parse::<DeploymentRef>().is_ok());
    }

    #[test]
    fn versions_are_label_values() {
        for ok in ["", "7d4b9c8f6", "v2", "canary_2.1", &"a".repeat(63)] {
            assert_eq!(validate_version(ok), Ok(()), "{ok}");
        }
        for bad in ["-v2", "v2.", "v 2", "v2/b", &"a".repeat(64)] {
            let err = validate_version(bad).unwrap_err();
            assert!(err.to_string().contains("pod-template-hash"), "{err}");
        }
    }

    #[test]
    fn parameters_name_a_deployment_in_a_namespace_or_their_own() {
        let web = DeploymentRef::new("demo", "web");
        for text in ["web", "deploy/web", "deployment/web", "demo/web"] {
            assert_eq!(
                DeploymentRef::parse_in(text, "demo"),
                Ok(web.clone()),
                "{text}"
            );
        }
        assert_eq!(
            DeploymentRef::parse_in("prod/web", "demo"),
            Ok(DeploymentRef::new("prod", "web"))
        );
        assert!(DeploymentRef::parse_in("Web", "demo").is_err());
        assert!(DeploymentRef::parse_in("deploy/", "demo").is_err());
        assert!(DeploymentRef::parse_in("web", "De_mo").is_err());
    }

    #[test]
    fn resource_targets_follow_kubectl_spelling() {
        assert_eq!("deploy".parse(), Ok(ResourceTarget { name: None }));
        assert_eq!(
            "deployment/web".parse(),
            Ok(ResourceTarget {
                name: Some("web".into())
            })
        );
        assert!(matches!(
            "pod/web".parse::<ResourceTarget>(),
            Err(ParseError::UnsupportedKind(_))
        ));
    }
}
