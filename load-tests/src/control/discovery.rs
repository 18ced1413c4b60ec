//! The discovery file the rounds rewrite, built from the schema the
//! controller reads (`conduit_api::discovery_file`): the real proxy's
//! workload with a Server on its application port, and a backend service
//! of one unmeshed pod that the destination rounds swap for another.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use conduit_api::discovery_file::{self as file, DiscoveryFile};

pub(crate) const NAMESPACE: &str = "bench";
/// The real proxy's Deployment (as `peers::proxy` names it), whose
/// application port the policy watches are about.
pub(crate) const WORKLOAD: &str = "bench";
const SERVICE: &str = "backend";
const SERVICE_PORT: u16 = 8080;
const SERVER: &str = "bench-http";
const LOOPBACK: &str = "loopback";

/// `backend.bench.svc.cluster.local:8080`, what every subscriber watches.
pub(crate) fn authority() -> String {
    format!(
        "{SERVICE}.{NAMESPACE}.svc.{}:{SERVICE_PORT}",
        file::DEFAULT_CLUSTER_DOMAIN
    )
}

/// What one version of the file says.
#[derive(Clone, Debug)]
pub(crate) struct State {
    /// The backend's one pod.
    pub(crate) backend: SocketAddr,
    /// The real proxy's application port, which the Server selects.
    pub(crate) app_port: u16,
    /// The authorization policy that admits loopback clients to the
    /// Server; without one the Server admits no one.
    pub(crate) admitting: Option<String>,
}

impl State {
    fn file(&self) -> DiscoveryFile {
        let pod = file::Pod {
            // One name per address: a swap is one pod gone, another come.
            name: format!("{SERVICE}-{}", self.backend.port()),
            addr: self.backend,
            meshed: false,
            tap: None,
            admin: None,
            ports: BTreeMap::new(),
        };
        let mut ns = file::Namespace::default();
        for (name, pods) in [(SERVICE, vec![pod]), (WORKLOAD, vec![])] {
            let deployment = file::Deployment {
                service_account: name.to_string(),
                pods,
                ..Default::default()
            };
            ns.deployments.insert(name.to_string(), deployment);
        }
        let service = file::Service {
            deployment: SERVICE.to_string(),
            ports: vec![file::ServicePort {
                port: SERVICE_PORT,
                target: None,
                protocol: file::Protocol::Http,
            }],
        };
        ns.services.insert(SERVICE.to_string(), service);
        ns.policy = self.policy();
        let mut f = DiscoveryFile::default();
        f.namespaces.insert(NAMESPACE.to_string(), ns);
        f
    }

    fn policy(&self) -> file::Policy {
        let mut p = file::Policy::default();
        p.servers.insert(
            SERVER.to_string(),
            file::Server {
                deployment: WORKLOAD.to_string(),
                port: self.app_port,
                protocol: file::ServerProtocol::Detect,
            },
        );
        p.network_authentications.insert(
            LOOPBACK.to_string(),
            file::NetworkAuthentication {
                networks: vec![file::NetworkSpec {
                    cidr: "127.0.0.0/8".to_string(),
                    except: vec![],
                }],
            },
        );
        if let Some(name) = &self.admitting {
            p.authorization_policies.insert(
                name.clone(),
                file::AuthorizationPolicy {
                    target: file::PolicyTarget::Server(SERVER.to_string()),
                    required_authentications: vec![file::AuthenticationRef::Network(
                        LOOPBACK.to_string(),
                    )],
                    audit: false,
                },
            );
        }
        p
    }

    /// Replaces the file atomically, as `conduit demo` does (the controller
    /// must never read half of one); returns the moment of the rename.
    pub(crate) fn write(&self, path: &Path) -> Result<Instant, String> {
        let text = serde_saphyr::to_string(&self.file()).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_the_schema() {
        let dir = crate::scratch::ScratchDir::new("conduit-lt-control-test").unwrap();
        let path = dir.path().join("discovery.yaml");
        for admitting in [None, Some("round-2".to_string())] {
            let state = State {
                backend: "127.0.0.1:20001".parse().unwrap(),
                app_port: 20002,
                admitting,
            };
            state.write(&path).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let read: DiscoveryFile = serde_saphyr::from_str(&text).unwrap();
            assert_eq!(read, state.file());
            let policies = &read.namespaces[NAMESPACE].policy.authorization_policies;
            assert_eq!(policies.len(), usize::from(state.admitting.is_some()));
        }
    }
}
