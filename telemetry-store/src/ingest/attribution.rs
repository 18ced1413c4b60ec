//! Who may report what. A proxy's certificate proves its ServiceAccount,
//! but a report names a Deployment; left unchecked, any meshed pod could
//! write another Deployment's series, or invent edges and mark them
//! secured. The controller's discovery knows which Deployments run under
//! which ServiceAccount (`conduit.destination.v1.Workloads`); the store
//! follows that table and holds every report to it:
//!
//! - the report's namespace is its sender's, and its Deployment runs as
//!   the sender's ServiceAccount;
//! - a series may not relabel itself into another workload
//!   (`namespace`/`deployment`/`pod`/`pod_template_hash` other than the
//!   report's, so a pod's series carry its one version), nor claim
//!   another identity on the proxy's own side of a connection
//!   (`client_id` of an outbound series, `server_id` of an inbound one);
//! - a tap event's own side (the source of an outbound request, the
//!   destination of an inbound one) is the report's Deployment.
//!
//! Until the first table arrives, reports are refused as unavailable, and
//! proxies keep them buffered and retry; if the controller goes away, the
//! last table stays in force.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conduit_api::metrics::label;
use conduit_api::proto::destination::v1::WorkloadSet;
use conduit_api::proto::destination::v1::workloads_client::WorkloadsClient;
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::tap::v1::TapEvent;
use conduit_api::proto::telemetry::v1::ProxyMeta;
use conduit_api::{Direction, IdentityName, Labels};

/// Deployments by the (namespace, ServiceAccount) they run as.
type Table = HashMap<(String, String), HashSet<String>>;

/// Why a report was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Refusal {
    /// The workload table has not arrived yet: retry later.
    Unknown,
    /// The report's namespace is not its sender's.
    Namespace,
    /// The report's Deployment does not run as its sender's ServiceAccount.
    Deployment,
}

impl Refusal {
    pub(crate) const ALL: [Self; 3] = [Self::Unknown, Self::Namespace, Self::Deployment];

    /// The `reason` label of the refusal counter.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Unknown => "workloads_unknown",
            Self::Namespace => "foreign_namespace",
            Self::Deployment => "foreign_deployment",
        }
    }

    pub(crate) fn status(self, sender: &IdentityName, meta: &ProxyMeta) -> tonic::Status {
        let d = meta.deployment.clone().unwrap_or_default();
        let named = format!("{}/{}", d.namespace, d.name);
        match self {
            Self::Unknown => tonic::Status::unavailable(
                "the store has not yet learned which Deployments each identity runs (from the \
                 controller's Workloads API); retry shortly",
            ),
            Self::Namespace | Self::Deployment => tonic::Status::permission_denied(format!(
                "{sender} may not report for deployment {named}: it does not run as that \
                 ServiceAccount"
            )),
        }
    }
}

#[derive(Default)]
pub(crate) struct Attribution {
    table: RwLock<Option<Table>>,
    refused: [AtomicU64; 3],
    pub(crate) tap_events_refused: AtomicU64,
}

impl Attribution {
    /// Replaces the table with the controller's latest.
    pub(crate) fn update(&self, set: &WorkloadSet) {
        let mut table = Table::new();
        for w in &set.workloads {
            let Some(d) = &w.deployment else { continue };
            table
                .entry((d.namespace.clone(), w.service_account.clone()))
                .or_default()
                .insert(d.name.clone());
        }
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Some(table);
    }

    /// Whether `sender` may report as the workload `meta` names.
    pub(crate) fn check(&self, sender: &IdentityName, meta: &ProxyMeta) -> Result<(), Refusal> {
        let d = meta.deployment.clone().unwrap_or_default();
        let result = self.judge(sender, &d);
        if let Err(r) = result {
            self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn judge(&self, sender: &IdentityName, d: &mesh::DeploymentRef) -> Result<(), Refusal> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        let table = table.as_ref().ok_or(Refusal::Unknown)?;
        if d.namespace != sender.namespace {
            return Err(Refusal::Namespace);
        }
        let key = (sender.namespace.clone(), sender.service_account.clone());
        match table.get(&key) {
            Some(deployments) if deployments.contains(&d.name) => Ok(()),
            _ => Err(Refusal::Deployment),
        }
    }

    /// Reports refused, by reason.
    pub(crate) fn refused(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL
            .into_iter()
            .map(|r| (r, self.refused[r as usize].load(Ordering::Relaxed)))
    }

    /// Keeps the tap events whose own side is the reporting workload and
    /// its identity; counts the others.
    pub(crate) fn own_tap_events(
        &self,
        events: Vec<TapEvent>,
        meta: &ProxyMeta,
        sender: &IdentityName,
    ) -> Vec<TapEvent> {
        let own = meta.deployment.clone().unwrap_or_default();
        let sender = sender.to_string();
        let before = events.len();
        let kept: Vec<_> = events
            .into_iter()
            .filter(|e| {
                let direction = mesh::Direction::try_from(e.direction)
                    .ok()
                    .and_then(|d| Direction::try_from(d).ok());
                let side = match direction {
                    Some(Direction::Inbound) => e.destination.as_ref(),
                    Some(Direction::Outbound) => e.source.as_ref(),
                    None => None,
                };
                side.is_some_and(|p| {
                    p.deployment.as_ref().is_none_or(|d| *d == own)
                        && (p.identity.is_empty() || p.identity == sender)
                })
            })
            .collect();
        let refused = (before - kept.len()) as u64;
        self.tap_events_refused
            .fetch_add(refused, Ordering::Relaxed);
        kept
    }
}

/// Why a series of a report was refused: it speaks for someone else.
pub(crate) fn foreign_label(
    labels: &Labels,
    meta: &ProxyMeta,
    sender: &IdentityName,
) -> Option<String> {
    let d = meta.deployment.clone().unwrap_or_default();
    for (name, own) in [
        (label::NAMESPACE, d.namespace.as_str()),
        (label::DEPLOYMENT, d.name.as_str()),
        (label::POD, meta.pod.as_str()),
        (label::POD_TEMPLATE_HASH, meta.pod_template_hash.as_str()),
    ] {
        if labels.get(name).is_some_and(|v| v != own) {
            return Some(name.to_string());
        }
    }
    let sender = sender.to_string();
    let own_side = match labels.get(label::DIRECTION) {
        Some(d) if d == Direction::Outbound.as_str() => label::CLIENT_ID,
        Some(d) if d == Direction::Inbound.as_str() => label::SERVER_ID,
        _ => return None,
    };
    labels
        .get(own_side)
        .is_some_and(|v| v != sender)
        .then(|| own_side.to_string())
}

/// Follows the controller's workload table for as long as the store runs,
/// reconnecting with backoff; the last table stays in force meanwhile.
pub(crate) async fn follow(
    mut client: WorkloadsClient<tonic::transport::Channel>,
    attribution: std::sync::Arc<Attribution>,
) {
    let mut delay = RETRY_MIN;
    loop {
        match client
            .watch(conduit_api::proto::destination::v1::WatchWorkloads {})
            .await
        {
            Err(status) => {
                tracing::warn!(error = %status, "cannot follow the controller's workload table; keeping the last one");
            }
            Ok(rsp) => {
                let mut stream = rsp.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(set)) => {
                            delay = RETRY_MIN;
                            tracing::debug!(
                                workloads = set.workloads.len(),
                                "workload table updated"
                            );
                            attribution.update(&set);
                        }
                        Ok(None) => break,
                        Err(status) => {
                            tracing::warn!(error = %status, "the workload table stream broke; keeping the last one");
                            break;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::proto::destination::v1::Workload;

    fn meta(ns: &str, name: &str) -> ProxyMeta {
        ProxyMeta {
            deployment: Some(mesh::DeploymentRef {
                namespace: ns.into(),
                name: name.into(),
            }),
            pod: "p".into(),
            ..Default::default()
        }
    }

    fn table() -> Attribution {
        let a = Attribution::default();
        let w = |ns: &str, name: &str, sa: &str| Workload {
            deployment: Some(mesh::DeploymentRef {
                namespace: ns.into(),
                name: name.into(),
            }),
            service_account: sa.into(),
        };
        a.update(&WorkloadSet {
            workloads: vec![
                w("demo", "web", "web"),
                w("demo", "web-canary", "web"),
                w("demo", "voting", "voting"),
            ],
        });
        a
    }

    #[test]
    fn a_report_must_name_a_deployment_of_its_senders_service_account() {
        let web = IdentityName::new("web", "demo");
        assert_eq!(
            Attribution::default().check(&web, &meta("demo", "web")),
            Err(Refusal::Unknown)
        );
        let a = table();
        assert_eq!(a.check(&web, &meta("demo", "web")), Ok(()));
        assert_eq!(a.check(&web, &meta("demo", "web-canary")), Ok(()));
        assert_eq!(
            a.check(&web, &meta("demo", "voting")),
            Err(Refusal::Deployment)
        );
        assert_eq!(
            a.check(&web, &meta("other", "web")),
            Err(Refusal::Namespace)
        );
        let stranger = IdentityName::new("stranger", "demo");
        assert_eq!(
            a.check(&stranger, &meta("demo", "web")),
            Err(Refusal::Deployment)
        );
        let counts: HashMap<_, _> = a.refused().collect();
        assert_eq!(counts[&Refusal::Deployment], 2);
        assert_eq!(counts[&Refusal::Namespace], 1);
    }

    #[test]
    fn a_series_may_not_speak_for_another_workload_or_identity() {
        let web = IdentityName::new("web", "demo");
        let m = meta("demo", "web");
        let labels = |pairs: &[(&str, &str)]| {
            let mut l = Labels::default();
            for (n, v) in pairs {
                l.insert(*n, *v);
            }
            l
        };
        let ok = labels(&[("direction", "outbound"), ("client_id", &web.to_string())]);
        assert_eq!(foreign_label(&ok, &m, &web), None);
        let relabelled = labels(&[("deployment", "voting")]);
        assert_eq!(
            foreign_label(&relabelled, &m, &web).as_deref(),
            Some("deployment")
        );
        // A pod reports its own version, and only that one.
        let versioned = ProxyMeta {
            pod_template_hash: "7d4b9c8f6".into(),
            ..m.clone()
        };
        let own_version = labels(&[("pod_template_hash", "7d4b9c8f6")]);
        assert_eq!(foreign_label(&own_version, &versioned, &web), None);
        let other_version = labels(&[("pod_template_hash", "5f6d8b7c9")]);
        assert_eq!(
            foreign_label(&other_version, &versioned, &web).as_deref(),
            Some("pod_template_hash")
        );
        assert_eq!(
            foreign_label(&own_version, &m, &web).as_deref(),
            Some("pod_template_hash")
        );
        let other = IdentityName::new("voting", "demo").to_string();
        let claims = labels(&[("direction", "outbound"), ("client_id", &other)]);
        assert_eq!(
            foreign_label(&claims, &m, &web).as_deref(),
            Some("client_id")
        );
        // The peer's identity on an inbound series is the proxy's to report.
        let peer = labels(&[("direction", "inbound"), ("client_id", &other)]);
        assert_eq!(foreign_label(&peer, &m, &web), None);
        let server = labels(&[("direction", "inbound"), ("server_id", &other)]);
        assert_eq!(
            foreign_label(&server, &m, &web).as_deref(),
            Some("server_id")
        );
    }
}
