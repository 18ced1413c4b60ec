//! Service discovery: which Deployments, pods and services exist, where
//! their endpoints are, and which profiles apply to them.
//!
//! Both backends, the static file of local mode and Kubernetes' API, boil
//! their sources down to one immutable [`Snapshot`] and publish a new one on
//! a `watch` channel whenever anything changes. Consumers (the destination
//! service's streams, stat's pod counts, tap's proxy addresses) read the
//! latest snapshot or wait for the next; they never see a half-applied
//! change, and a backend that fails keeps the last good snapshot published.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use conduit_api::proto::destination::v1 as pb;
use conduit_api::{DeploymentRef, IdentityName};
use tokio::sync::watch;

pub mod kubernetes;
pub mod static_file;

/// A source of discovery snapshots.
pub trait Discovery: Send + Sync + 'static {
    /// The latest snapshot, updated in place as the source changes.
    fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>>;
    /// What `conduit check` reports about the backend.
    fn health(&self) -> Vec<Health>;
}

/// One line of the backend's health, as `conduit check` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    pub description: String,
    pub status: HealthStatus,
    pub hint: String,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    Ok,
    Warning,
    Failed,
}

impl Health {
    pub fn ok(description: impl Into<String>) -> Self {
        Self {
            description: description.into(),
            status: HealthStatus::Ok,
            hint: String::new(),
        }
    }

    pub fn problem(
        status: HealthStatus,
        description: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            description: description.into(),
            status,
            hint: hint.into(),
        }
    }
}

/// A service by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// Everything discovery knows at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub cluster_domain: String,
    pub deployments: BTreeMap<DeploymentRef, DeploymentInfo>,
    pub services: BTreeMap<ServiceRef, ServiceInfo>,
    /// Routing profiles by the service they apply to.
    pub profiles: BTreeMap<ServiceRef, pb::DestinationProfile>,
    /// Inbound policy of every workload port.
    pub policy: crate::policy::PolicyIndex,
    /// Whether `deployments` holds every Deployment yet (on Kubernetes,
    /// once pods and ReplicaSets have been listed): before, a Deployment
    /// missing from it may only not have been read.
    pub deployments_listed: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentInfo {
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    pub pods: Vec<PodInfo>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PodInfo {
    pub name: String,
    /// Where peers reach the pod (its proxy's inbound listener if meshed).
    pub addr: SocketAddr,
    pub meshed: bool,
    /// The pod's proxy tap server.
    pub tap: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceInfo {
    pub ports: BTreeMap<u16, ServicePortInfo>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicePortInfo {
    pub opaque: bool,
    pub endpoints: Vec<Endpoint>,
}

/// One address an authority resolves to.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub pod: Option<String>,
    pub deployment: Option<DeploymentRef>,
    /// Set for meshed endpoints only: what their proxy proves under mTLS.
    pub identity: Option<IdentityName>,
    pub hint: ProtocolHint,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProtocolHint {
    /// A meshed HTTP endpoint: its proxy accepts HTTP/2 from peers.
    H2,
    /// A port that carries an opaque protocol.
    Opaque,
    /// Not meshed: the client must detect the protocol itself.
    Unknown,
}

/// What an authority (`host:port`) resolves to.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    /// Whether discovery knows the host at all.
    pub exists: bool,
    /// The service's fully qualified name, when the host is a service.
    pub service: Option<ServiceRef>,
    pub fully_qualified_name: String,
    pub opaque: bool,
    pub endpoints: Vec<Endpoint>,
}

impl Resolution {
    fn unknown() -> Self {
        Self {
            exists: false,
            service: None,
            fully_qualified_name: String::new(),
            opaque: false,
            endpoints: Vec::new(),
        }
    }
}

/// An authority split into host and port; the port defaults to 80.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid authority {0:?}: expected host:port, e.g. web.demo.svc.cluster.local:8080")]
pub struct AuthorityError(String);

impl std::str::FromStr for Authority {
    type Err = AuthorityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AuthorityError(s.to_string());
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (s, 80),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(bad());
        }
        Ok(Self { host, port })
    }
}

impl Snapshot {
    /// Resolves an authority as a client in `context_namespace` means it:
    /// a service name in one of its DNS forms, or a pod address.
    pub fn resolve(&self, authority: &Authority, context_namespace: &str) -> Resolution {
        if let Ok(ip) = authority.host.parse() {
            return self.resolve_pod(SocketAddr::new(ip, authority.port));
        }
        let Some(service) = self.service_of_host(&authority.host, context_namespace) else {
            return Resolution::unknown();
        };
        let fully_qualified_name = format!(
            "{}.{}.svc.{}",
            service.name, service.namespace, self.cluster_domain
        );
        let port = self.services[&service].ports.get(&authority.port);
        Resolution {
            exists: true,
            opaque: port.is_some_and(|p| p.opaque),
            endpoints: port.map(|p| p.endpoints.clone()).unwrap_or_default(),
            service: Some(service),
            fully_qualified_name,
        }
    }

    /// `name`, `name.ns`, `name.ns.svc` and `name.ns.svc.<cluster domain>`.
    fn service_of_host(&self, host: &str, context_namespace: &str) -> Option<ServiceRef> {
        let suffix = format!(".svc.{}", self.cluster_domain);
        let short = host
            .strip_suffix(&suffix)
            .or_else(|| host.strip_suffix(".svc"))
            .unwrap_or(host);
        let service = match short.split_once('.') {
            None => ServiceRef::new(context_namespace, short),
            Some((name, ns)) if !ns.contains('.') => ServiceRef::new(ns, name),
            Some(_) => return None,
        };
        self.services.contains_key(&service).then_some(service)
    }

    fn resolve_pod(&self, addr: SocketAddr) -> Resolution {
        for (deployment, info) in &self.deployments {
            if let Some(pod) = info.pods.iter().find(|p| p.addr == addr) {
                return Resolution {
                    exists: true,
                    service: None,
                    fully_qualified_name: String::new(),
                    opaque: false,
                    endpoints: vec![self.endpoint(deployment, info, pod, addr, false)],
                };
            }
        }
        Resolution::unknown()
    }

    /// The endpoint of `pod` at `addr`, with its identity and hint.
    pub fn endpoint(
        &self,
        deployment: &DeploymentRef,
        info: &DeploymentInfo,
        pod: &PodInfo,
        addr: SocketAddr,
        opaque: bool,
    ) -> Endpoint {
        let hint = match (pod.meshed, opaque) {
            (_, true) => ProtocolHint::Opaque,
            (true, false) => ProtocolHint::H2,
            (false, false) => ProtocolHint::Unknown,
        };
        Endpoint {
            addr,
            pod: Some(pod.name.clone()),
            deployment: Some(deployment.clone()),
            identity: pod
                .meshed
                .then(|| IdentityName::new(&info.service_account, &deployment.namespace)),
            hint,
        }
    }

    /// Deployments in a namespace (or every namespace with `None`).
    pub fn deployments_in<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a DeploymentRef, &'a DeploymentInfo)> + 'a {
        self.deployments
            .iter()
            .filter(move |(d, _)| namespace.is_none_or(|ns| d.namespace == ns))
    }

    /// The services whose endpoints are pods of `deployment`.
    pub fn services_of(&self, deployment: &DeploymentRef) -> Vec<ServiceRef> {
        self.services
            .iter()
            .filter(|(s, info)| {
                s.namespace == deployment.namespace
                    && info.ports.values().any(|p| {
                        p.endpoints
                            .iter()
                            .any(|e| e.deployment.as_ref() == Some(deployment))
                    })
            })
            .map(|(s, _)| s.clone())
            .collect()
    }
}

/// A stream of what `view` makes of each snapshot: the current view at
/// once, then each time a new snapshot changes it (an unchanged view is
/// not sent again; `None`, nothing to say yet, is not sent at all). Ends
/// when the receiver goes away.
pub fn follow<T>(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    view: impl Fn(&Snapshot) -> Option<T> + Send + 'static,
) -> tokio_stream::wrappers::ReceiverStream<Result<T, tonic::Status>>
where
    T: Clone + PartialEq + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut sent = None;
        loop {
            let current = view(&snapshots.borrow_and_update());
            if let Some(current) = current
                && sent.as_ref() != Some(&current)
            {
                if tx.send(Ok(current.clone())).await.is_err() {
                    return;
                }
                sent = Some(current);
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let web = DeploymentRef::new("demo", "web");
        let info = DeploymentInfo {
            service_account: "web".into(),
            labels: BTreeMap::new(),
            pods: vec![PodInfo {
                name: "web-0".into(),
                addr: "127.0.0.1:4143".parse().unwrap(),
                meshed: true,
                tap: None,
                admin: None,
            }],
        };
        let mut snap = Snapshot {
            cluster_domain: "cluster.local".into(),
            ..Default::default()
        };
        let ep = snap.endpoint(&web, &info, &info.pods[0], info.pods[0].addr, false);
        snap.deployments.insert(web, info);
        snap.services.insert(
            ServiceRef::new("demo", "web"),
            ServiceInfo {
                ports: [(
                    8080,
                    ServicePortInfo {
                        opaque: false,
                        endpoints: vec![ep],
                    },
                )]
                .into(),
            },
        );
        snap
    }

    #[test]
    fn every_dns_form_of_a_service_resolves() {
        let snap = snapshot();
        for (host, ctx) in [
            ("web.demo.svc.cluster.local:8080", "other"),
            ("web.demo.svc:8080", "other"),
            ("web.demo:8080", "other"),
            ("web:8080", "demo"),
            ("WEB.demo.svc.cluster.local.:8080", "other"),
        ] {
            let r = snap.resolve(&host.parse().unwrap(), ctx);
            assert!(r.exists, "{host}");
            assert_eq!(r.fully_qualified_name, "web.demo.svc.cluster.local");
            assert_eq!(r.endpoints.len(), 1, "{host}");
            assert_eq!(r.endpoints[0].hint, ProtocolHint::H2);
            assert_eq!(
                r.endpoints[0].identity.as_ref().unwrap().to_string(),
                "web.demo.serviceaccount.identity.conduit.cluster.local"
            );
        }
    }

    #[test]
    fn unknown_hosts_and_ports_are_told_apart() {
        let snap = snapshot();
        let r = snap.resolve(&"web:8080".parse().unwrap(), "default");
        assert!(!r.exists);
        let r = snap.resolve(&"web.demo:9999".parse().unwrap(), "demo");
        assert!(r.exists && r.endpoints.is_empty());
        let r = snap.resolve(&"example.com:80".parse().unwrap(), "demo");
        assert!(!r.exists);
    }

    #[test]
    fn pod_addresses_resolve_to_the_pod() {
        let snap = snapshot();
        let r = snap.resolve(&"127.0.0.1:4143".parse().unwrap(), "x");
        assert!(r.exists);
        assert_eq!(r.endpoints[0].pod.as_deref(), Some("web-0"));
        assert!(!snap.resolve(&"127.0.0.1:1".parse().unwrap(), "x").exists);
    }

    #[test]
    fn bad_authorities_are_errors() {
        for bad in ["", ":80", "web:port", "we b:80", "web:99999"] {
            assert!(bad.parse::<Authority>().is_err(), "{bad}");
        }
        assert_eq!(
            "web".parse::<Authority>().unwrap(),
            Authority {
                host: "web".into(),
                port: 80
            }
        );
    }
}
