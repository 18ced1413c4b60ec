//! Inbound policy vocabulary shared by the controller (which compiles
//! resources into `conduit.policy.v1.Server`) and the proxy (which
//! enforces them): the default policies, networks, identity patterns, and
//! the one rule that turns a default policy into a `Server`.

pub mod resources;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[cfg(feature = "proto")]
use crate::proto::policy::v1 as pb;

/// The annotation (on a namespace or workload) naming its default policy.
pub const DEFAULT_POLICY_ANNOTATION: &str = "config.conduit.io/default-inbound-policy";

/// The networks `cluster-*` defaults admit unless configured: private
/// ranges (what pod networks use), and loopback, where `conduit demo`
/// runs its pods.
pub const DEFAULT_CLUSTER_NETWORKS: &[&str] = &[
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "fd00::/8",
    "::1/128",
];

/// What applies to a port no Server selects (and to a proxy that has not
/// heard from the controller yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultPolicy {
    /// Every client.
    #[default]
    AllUnauthenticated,
    /// Clients with a mesh identity.
    AllAuthenticated,
    /// Clients from the cluster's networks.
    ClusterUnauthenticated,
    /// Clients with a mesh identity from the cluster's networks.
    ClusterAuthenticated,
    /// No one.
    Deny,
    /// Every client, with each connection or request counted as a
    /// would-be denial: to see what `deny` would break before turning it on.
    Audit,
}

impl DefaultPolicy {
    pub const ALL: [DefaultPolicy; 6] = [
        Self::AllUnauthenticated,
        Self::AllAuthenticated,
        Self::ClusterUnauthenticated,
        Self::ClusterAuthenticated,
        Self::Deny,
        Self::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllUnauthenticated => "all-unauthenticated",
            Self::AllAuthenticated => "all-authenticated",
            Self::ClusterUnauthenticated => "cluster-unauthenticated",
            Self::ClusterAuthenticated => "cluster-authenticated",
            Self::Deny => "deny",
            Self::Audit => "audit",
        }
    }

    #[cfg(feature = "proto")]
    /// The policy as a Server: one authorization (none for `deny` and
    /// `audit`), named after the mode for metrics.
    pub fn server(self, cluster_networks: &[String]) -> pb::Server {
        let cluster = || {
            cluster_networks
                .iter()
                .map(|cidr| pb::Network {
                    cidr: cidr.clone(),
                    except: Vec::new(),
                })
                .collect()
        };
        let authorization = |networks, authentication| pb::Authorization {
            name: self.as_str().to_string(),
            networks,
            authentication: Some(pb::Authentication {
                permit: Some(authentication),
            }),
        };
        let unauthenticated = || pb::authentication::Permit::Unauthenticated(Default::default());
        let tls = || pb::authentication::Permit::Tls(Default::default());
        let authorizations = match self {
            Self::AllUnauthenticated => vec![authorization(Vec::new(), unauthenticated())],
            Self::AllAuthenticated => vec![authorization(Vec::new(), tls())],
            Self::ClusterUnauthenticated => vec![authorization(cluster(), unauthenticated())],
            Self::ClusterAuthenticated => vec![authorization(cluster(), tls())],
            Self::Deny | Self::Audit => Vec::new(),
        };
        pb::Server {
            name: format!("default:{}", self.as_str()),
            protocol: pb::ProxyProtocol::Detect as i32,
            authorizations,
            routes: Vec::new(),
            audit: self == Self::Audit,
        }
    }
}

impl fmt::Display for DefaultPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DefaultPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.as_str()).collect();
                format!(
                    "unknown default inbound policy {s:?}: use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// An IP network, `ADDR/LEN` (a bare address is a single host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.len),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.len),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let (bytes, bits) = (usize::from(len / 8), len % 8);
    if a[..bytes] != b[..bytes] {
        return false;
    }
    bits == 0 || (a[bytes] ^ b[bytes]) >> (8 - bits) == 0
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            |why: &str| format!("invalid network {s:?}: {why} (write ADDR/LEN, e.g. 10.0.0.0/8)");
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| bad(&format!("the prefix length must be 0 to {max}")))?,
            None => max,
        };
        Ok(Self { addr, len })
    }
}

/// Whether a mesh identity matches a pattern of a `MeshTLSAuthentication`:
/// the name itself, `*` for any identity, or `*.SUFFIX` for any identity
/// ending in `.SUFFIX` (e.g. `*.demo.serviceaccount.identity.conduit.cluster.local`:
/// every service account of the namespace `demo`).
pub fn identity_matches(pattern: &str, identity: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some("") => true,
        Some(suffix) if suffix.starts_with('.') => identity.ends_with(suffix),
        _ => pattern == identity,
    }
}

/// An identity pattern is a DNS-like name, `*`, or `*.` followed by one.
pub fn validate_identity_pattern(pattern: &str) -> Result<(), String> {
    let name = match pattern.strip_prefix('*') {
        Some("") => return Ok(()),
        Some(rest) => rest.strip_prefix('.').ok_or_else(|| {
            format!("identity pattern {pattern:?}: a wildcard must be `*` or `*.SUFFIX`")
        })?,
        None => pattern,
    };
    let valid = !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "identity pattern {pattern:?} is not a mesh identity (lower-case DNS labels separated by dots)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_what_their_prefix_covers() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let odd: Cidr = "192.168.4.0/22".parse().unwrap();
        assert!(odd.contains("192.168.7.255".parse().unwrap()));
        assert!(!odd.contains("192.168.8.0".parse().unwrap()));
        let host: Cidr = "::1".parse().unwrap();
        assert!(host.contains("::1".parse().unwrap()));
        assert!(!host.contains("127.0.0.1".parse().unwrap()));
        // IPv4 clients seen through an IPv6 socket still match.
        let lo: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(lo.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "10.0.0/8", "x/1", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn identity_patterns() {
        let id = "voting.demo.serviceaccount.identity.conduit.cluster.local";
        assert!(identity_matches(id, id));
        assert!(identity_matches("*", id));
        assert!(identity_matches(
            "*.demo.serviceaccount.identity.conduit.cluster.local",
            id
        ));
        assert!(!identity_matches(
            "*.other.serviceaccount.identity.conduit.cluster.local",
            id
        ));
        // A suffix matches at a label boundary only.
        assert!(!identity_matches(
            "*.ting.demo.serviceaccount.identity.conduit.cluster.local",
            id
        ));
        assert!(!identity_matches(
            "web.demo.serviceaccount.identity.conduit.cluster.local",
            id
        ));
        assert!(
            validate_identity_pattern("*.demo.serviceaccount.identity.conduit.cluster.local")
                .is_ok()
        );
        for bad in ["*demo", "Web.demo", "a..b", ""] {
            assert!(validate_identity_pattern(bad).is_err(), "{bad}");
        }
    }

    #[cfg(feature = "proto")]
    #[test]
    fn default_policies_parse_by_name_and_compile() {
        for p in DefaultPolicy::ALL {
            assert_eq!(p.as_str().parse::<DefaultPolicy>(), Ok(p));
        }
        assert!(
            "allow"
                .parse::<DefaultPolicy>()
                .unwrap_err()
                .contains("all-unauthenticated")
        );
        let nets = vec!["10.0.0.0/8".to_string()];
        assert!(DefaultPolicy::Deny.server(&nets).authorizations.is_empty());
        assert!(DefaultPolicy::Audit.server(&nets).audit);
        let cluster = DefaultPolicy::ClusterAuthenticated.server(&nets);
        assert_eq!(cluster.authorizations[0].networks[0].cidr, "10.0.0.0/8");
        assert_eq!(cluster.name, "default:cluster-authenticated");
    }
}
