//! Inbound authorization policy: what the controller's policy service says
//! each application port admits.
//!
//! Each port's policy is watched (`InboundServerPolicies.WatchPort`) from
//! start-up for the application's port and on first use for any other,
//! and kept in a `watch` channel. A connection waits for the controller's
//! first answer on its port (at most `--inbound-policy-timeout`): taking
//! the permissive default meanwhile would let the first clients of a
//! freshly started pod past a policy that denies them. Without a
//! controller, or past the timeout, the default policy from the proxy's
//! configuration applies; once the controller has answered, its last word
//! stays in force while it is away or when an update cannot be compiled,
//! so a control-plane outage neither opens nor closes a workload.

mod authorize;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conduit_api::DeploymentRef;
use conduit_api::policy::DefaultPolicy;
use conduit_api::proto::diagnostics::v1 as diagnostics;
use conduit_api::proto::policy::v1::PortSpec;
use conduit_api::proto::policy::v1::inbound_server_policies_client::InboundServerPoliciesClient;
use tokio::sync::watch;
use tonic::transport::Channel;

// Public so that the load tests can time the per-request check.
pub use self::authorize::{Client, Decision, PortPolicy};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::identity::Identity;
use crate::metrics::lock;

/// Ports watched at most: a workload has a handful; past this, further
/// ports get the default policy instead of one more stream each.
const MAX_WATCHED_PORTS: usize = 64;

pub(crate) struct Policies {
    default: Arc<PortPolicy>,
    watch: Option<Watch>,
    /// `None` until the controller has answered for the port.
    ports: Mutex<HashMap<u16, watch::Receiver<Option<Arc<PortPolicy>>>>>,
    /// How long a connection waits for the controller's first answer.
    first_answer_timeout: Duration,
    /// The application's port, whose policy applies from start-up.
    app_port: u16,
}

struct Watch {
    client: InboundServerPoliciesClient<Channel>,
    workload: DeploymentRef,
    trust_domain: String,
}

impl Policies {
    /// Policies from the controller at `--destination-addr` (which serves
    /// policy too) for the proxy's own workload; the default policy alone
    /// without one.
    pub(crate) fn new(config: &Config, identity: Option<&Identity>) -> anyhow::Result<Self> {
        let default = Arc::new(default_policy(
            config.default_inbound_policy,
            &config.cluster_networks,
            &config.trust_domain,
        ));
        let watch = match (&config.destination_addr, config.deployment_ref()) {
            (Some(addr), Some(workload)) => Some(Watch {
                client: InboundServerPoliciesClient::new(crate::identity::channel(
                    addr,
                    |i| &i.controller,
                    identity,
                )?),
                workload,
                trust_domain: config.trust_domain.clone(),
            }),
            _ => None,
        };
        let policies = Self {
            default,
            watch,
            ports: Mutex::default(),
            first_answer_timeout: config.inbound_policy_timeout,
            app_port: config.inbound_app_addr.port(),
        };
        // The application's port gets its policy before any client comes.
        policies.receiver(config.inbound_app_addr.port());
        Ok(policies)
    }

    /// The policy of the application port `port`: the controller's, once
    /// it answered (waiting for its first answer a while), else the
    /// configured default.
    pub(crate) async fn port(&self, port: u16) -> Arc<PortPolicy> {
        let Some(mut rx) = self.receiver(port) else {
            return self.default.clone();
        };
        if let Some(policy) = rx.borrow().as_ref() {
            return policy.clone();
        }
        let answered = rx.wait_for(Option::is_some);
        match tokio::time::timeout(self.first_answer_timeout, answered).await {
            Ok(Ok(policy)) => policy.clone().unwrap_or_else(|| self.default.clone()),
            _ => self.default.clone(),
        }
    }

    /// The policy of each port in force now, without waiting: the
    /// application's port and every port watched, by port.
    pub(crate) fn enforced(&self) -> Vec<diagnostics::PortPolicy> {
        let mut ports: Vec<(u16, Option<Arc<PortPolicy>>)> = lock(&self.ports)
            .iter()
            .map(|(port, rx)| (*port, rx.borrow().clone()))
            .collect();
        if !ports.iter().any(|(p, _)| *p == self.app_port) {
            ports.push((self.app_port, None));
        }
        ports.sort_by_key(|(p, _)| *p);
        ports
            .into_iter()
            .map(|(port, answered)| {
                let (policy, source) = match answered {
                    Some(p) => (p, "controller"),
                    None => (self.default.clone(), "default"),
                };
                policy.diagnostics(port, source)
            })
            .collect()
    }

    /// The watch of `port`'s policy, started on first use; `None` without
    /// a controller, or past the number of ports watched.
    fn receiver(&self, port: u16) -> Option<watch::Receiver<Option<Arc<PortPolicy>>>> {
        let w = self.watch.as_ref()?;
        let mut ports = lock(&self.ports);
        if let Some(rx) = ports.get(&port) {
            return Some(rx.clone());
        }
        if ports.len() >= MAX_WATCHED_PORTS {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        tokio::spawn(watch_port(
            w.client.clone(),
            spec(&w.workload, port),
            w.trust_domain.clone(),
            tx,
        ));
        ports.insert(port, rx.clone());
        Some(rx)
    }
}

fn spec(workload: &DeploymentRef, port: u16) -> PortSpec {
    PortSpec {
        workload: Some(workload.clone().into()),
        port: u32::from(port),
    }
}

/// The configured default policy, compiled like a controller's answer.
fn default_policy(
    mode: DefaultPolicy,
    cluster_networks: &[String],
    trust_domain: &str,
) -> PortPolicy {
    PortPolicy::compile(&mode.server(cluster_networks), trust_domain)
        .expect("the default policies and the configured networks compile")
}

/// Follows one port's policy for as long as the proxy runs, reconnecting
/// with backoff.
async fn watch_port(
    mut client: InboundServerPoliciesClient<Channel>,
    spec: PortSpec,
    trust_domain: String,
    tx: watch::Sender<Option<Arc<PortPolicy>>>,
) {
    let port = spec.port;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match client.watch_port(spec.clone()).await {
            Err(status) => {
                tracing::info!(port, error = %status, "policy service unavailable; keeping the current policy");
            }
            Ok(rsp) => {
                let mut stream = rsp.into_inner();
                loop {
                    let server = match stream.message().await {
                        Ok(Some(s)) => s,
                        Ok(None) => break,
                        Err(status) => {
                            tracing::info!(port, error = %status, "policy stream broke; keeping the current policy");
                            break;
                        }
                    };
                    backoff.reset();
                    match PortPolicy::compile(&server, &trust_domain) {
                        Ok(p) => {
                            tracing::info!(port, server = %server.name, "inbound policy updated");
                            tx.send_replace(Some(Arc::new(p)));
                        }
                        Err(e) => {
                            tracing::warn!(port, server = %server.name, error = %e, "policy refused; keeping the current one")
                        }
                    }
                }
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
