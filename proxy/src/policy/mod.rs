//! Inbound authorization policy: what the controller's policy service says
//! each application port admits.
//!
//! Each port's policy is watched on first use (`InboundServerPolicies.
//! WatchPort`) and kept in a `watch` channel that connections read without
//! waiting. Until the controller has answered, or when there is no
//! controller, the default policy from the proxy's configuration applies;
//! once it has answered, its last word stays in force while it is away or
//! when an update cannot be compiled, so a control-plane outage neither
//! opens nor closes a workload.

mod authorize;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conduit_api::DeploymentRef;
use conduit_api::policy::DefaultPolicy;
use conduit_api::proto::policy::v1::PortSpec;
use conduit_api::proto::policy::v1::inbound_server_policies_client::InboundServerPoliciesClient;
use tokio::sync::watch;
use tonic::transport::Channel;

pub(crate) use self::authorize::{Client, Decision, PortPolicy};
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
    ports: Mutex<HashMap<u16, watch::Receiver<Arc<PortPolicy>>>>,
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
        Ok(Self {
            default,
            watch,
            ports: Mutex::default(),
        })
    }

    /// The current policy of the application port `port`.
    pub(crate) fn port(&self, port: u16) -> Arc<PortPolicy> {
        let Some(w) = &self.watch else {
            return self.default.clone();
        };
        let mut ports = lock(&self.ports);
        if let Some(rx) = ports.get(&port) {
            return rx.borrow().clone();
        }
        if ports.len() >= MAX_WATCHED_PORTS {
            return self.default.clone();
        }
        let (tx, rx) = watch::channel(self.default.clone());
        tokio::spawn(watch_port(
            w.client.clone(),
            spec(&w.workload, port),
            w.trust_domain.clone(),
            tx,
        ));
        ports.insert(port, rx);
        self.default.clone()
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
    tx: watch::Sender<Arc<PortPolicy>>,
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
                            tx.send_replace(Arc::new(p));
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
