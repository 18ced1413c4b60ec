//! The Kubernetes backend: kube-rs reflectors over Pods, ReplicaSets,
//! EndpointSlices and Services, folded into a [`Snapshot`]; and over
//! Namespaces and the `policy.conduit.io` kinds, compiled with the pods into
//! the snapshot's policy (see [`crate::policy::kubernetes`]).
//!
//! A pod's Deployment is found through its owner chain (Pod → ReplicaSet →
//! Deployment), so Deployments themselves need not be watched. A service's
//! endpoints come from its EndpointSlices (ready endpoints only), mapped
//! from the service port to the slice port by port name as kube-proxy
//! does. A pod is meshed when it runs the `conduit-proxy` container, whose
//! tap and admin servers listen on the pod IP at fixed ports.
//!
//! Each watch is retried with kube's exponential backoff (0.8 s to 30 s);
//! the latest error of each is kept for `conduit check`, and the snapshot
//! built from what the reflectors already hold stays in force meanwhile.
//! Policy stays pending (policy services answer nothing, proxies keep what
//! they apply) until every watch it is compiled from has listed once: an
//! index built from half-read resources would open ports that a policy not
//! yet read closes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conduit_api::DeploymentRef;
use conduit_api::policy::DEFAULT_POLICY_ANNOTATION;
use conduit_api::policy::resources as policy_api;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

use super::{
    Discovery, Health, HealthStatus, PodInfo, ServiceInfo, ServicePortInfo, ServiceRef, Snapshot,
};
use crate::policy::PolicyIndex;
use crate::policy::kubernetes::{Compiler, Defaults, PodShape, Sources, Workload};
use crate::policy::resources::{
    AuthorizationPolicySpec, HttpRouteSpec, MeshTlsAuthenticationSpec, NetworkAuthenticationSpec,
    Object, ServerSpec,
};

/// The name `conduit inject` gives the sidecar container.
pub const PROXY_CONTAINER: &str = "conduit-proxy";
pub const PROXY_TAP_PORT: u16 = 4190;
pub const PROXY_ADMIN_PORT: u16 = 4191;
/// Service annotation listing ports (service or target port numbers) that
/// carry opaque TCP, e.g. `"3306,5432"`.
pub const OPAQUE_PORTS_ANNOTATION: &str = "config.conduit.io/opaque-ports";
/// Where `conduit install` puts the control plane.
pub const CONTROL_PLANE_NAMESPACE: &str = "conduit";
/// Changes that arrive together (a rollout touches pods, slices and
/// replica sets at once) are folded into one snapshot.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// A Deployment's ReplicaSets carry its revision: the highest is current.
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// The kinds policy is compiled from.
const POLICY_KINDS: [&str; 8] = [
    "pods",
    "replicasets",
    "namespaces",
    policy_api::SERVER.plural,
    policy_api::HTTP_ROUTE.plural,
    policy_api::AUTHORIZATION_POLICY.plural,
    policy_api::MESH_TLS_AUTHENTICATION.plural,
    policy_api::NETWORK_AUTHENTICATION.plural,
];

const KINDS: [&str; 10] = [
    "pods",
    "replicasets",
    "endpointslices",
    "services",
    "namespaces",
    policy_api::SERVER.plural,
    policy_api::HTTP_ROUTE.plural,
    policy_api::AUTHORIZATION_POLICY.plural,
    policy_api::MESH_TLS_AUTHENTICATION.plural,
    policy_api::NETWORK_AUTHENTICATION.plural,
];

type Watches = Arc<Mutex<BTreeMap<&'static str, WatchState>>>;

pub struct Kubernetes {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    watches: Watches,
    policy_errors: Arc<Mutex<BTreeMap<String, String>>>,
}

#[derive(Clone, Default)]
struct WatchState {
    synced: bool,
    last_error: Option<String>,
}

#[derive(Clone)]
struct Stores {
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    slices: Store<EndpointSlice>,
    services: Store<Service>,
    namespaces: Store<Namespace>,
    servers: Store<Object<ServerSpec>>,
    http_routes: Store<Object<HttpRouteSpec>>,
    authorization_policies: Store<Object<AuthorizationPolicySpec>>,
    mesh_tls_authentications: Store<Object<MeshTlsAuthenticationSpec>>,
    network_authentications: Store<Object<NetworkAuthenticationSpec>>,
}

impl Kubernetes {
    /// Connects with the in-cluster service account or the current
    /// kubeconfig context, like kubectl.
    pub async fn connect(cluster_domain: &str, policy: Defaults) -> anyhow::Result<Self> {
        let client = Client::try_default().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot configure a Kubernetes client ({e}); run the controller in a cluster or \
                 with a kubeconfig, or use --discovery static:PATH"
            )
        })?;
        Ok(Self::start(client, cluster_domain, policy))
    }

    /// Starts the reflectors on `client` (a real API server, or a mock in
    /// tests) and the task that builds snapshots from them.
    pub fn start(client: Client, cluster_domain: &str, policy: Defaults) -> Self {
        let watches: Watches = Arc::new(Mutex::new(
            KINDS.iter().map(|k| (*k, WatchState::default())).collect(),
        ));
        let changed = Arc::new(Notify::new());
        macro_rules! reflect_all {
            ($kind:expr) => {
                reflect(Api::all(client.clone()), $kind, &watches, &changed)
            };
        }
        let stores = Stores {
            pods: reflect_all!("pods"),
            replica_sets: reflect_all!("replicasets"),
            slices: reflect_all!("endpointslices"),
            services: reflect_all!("services"),
            namespaces: reflect_all!("namespaces"),
            servers: reflect_all!(policy_api::SERVER.plural),
            http_routes: reflect_all!(policy_api::HTTP_ROUTE.plural),
            authorization_policies: reflect_all!(policy_api::AUTHORIZATION_POLICY.plural),
            mesh_tls_authentications: reflect_all!(policy_api::MESH_TLS_AUTHENTICATION.plural),
            network_authentications: reflect_all!(policy_api::NETWORK_AUTHENTICATION.plural),
        };
        let (tx, rx) = watch::channel(Arc::new(Snapshot {
            cluster_domain: cluster_domain.to_string(),
            policy: PolicyIndex::pending(),
            ..Default::default()
        }));
        let compiler = Compiler::new(policy);
        let policy_errors = compiler.errors();
        tokio::spawn(rebuild_on_change(
            Builder {
                stores,
                cluster_domain: cluster_domain.to_string(),
                watches: watches.clone(),
                compiler,
            },
            changed,
            tx,
        ));
        Self {
            snapshots: rx,
            watches,
            policy_errors,
        }
    }
}

/// Runs a reflector for one kind; every applied change pokes `changed`.
fn reflect<K>(api: Api<K>, kind: &'static str, watches: &Watches, changed: &Arc<Notify>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let (watches, changed) = (watches.clone(), changed.clone());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let mut state = watches.lock().expect("watch state lock");
            let entry = state.entry(kind).or_default();
            match event {
                Ok(watcher::Event::InitDone) => {
                    entry.synced = true;
                    entry.last_error = None;
                    changed.notify_one();
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                    entry.last_error = None;
                    changed.notify_one();
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(kind, error = %e, "Kubernetes watch failed; retrying with backoff");
                    entry.last_error = Some(e.to_string());
                }
            }
        }
    });
    reader
}

/// What snapshots are built from, and the policy compiler's memory of
/// each namespace's last good policy.
struct Builder {
    stores: Stores,
    cluster_domain: String,
    watches: Watches,
    compiler: Compiler,
}

async fn rebuild_on_change(
    mut builder: Builder,
    changed: Arc<Notify>,
    tx: watch::Sender<Arc<Snapshot>>,
) {
    loop {
        changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
        if tx.is_closed() {
            return;
        }
        let snapshot = builder.build();
        debug!(
            deployments = snapshot.deployments.len(),
            services = snapshot.services.len(),
            "Kubernetes discovery snapshot"
        );
        tx.send_if_modified(|current| {
            let differs = **current != snapshot;
            if differs {
                *current = Arc::new(snapshot);
            }
            differs
        });
    }
}

impl Builder {
    fn build(&mut self) -> Snapshot {
        let rs_owner = replica_set_owners(&self.stores);
        let mut snap = build(&self.stores, &self.cluster_domain, &rs_owner);
        snap.deployments_listed = self.synced(&["pods", "replicasets"]);
        snap.policy = if self.synced(&POLICY_KINDS) {
            self.compiler
                .compile(&policy_sources(&self.stores, &rs_owner))
        } else {
            PolicyIndex::pending()
        };
        snap
    }

    /// Whether every watch of `kinds` has listed once.
    fn synced(&self, kinds: &[&str]) -> bool {
        let watches = self.watches.lock().expect("watch state lock");
        kinds
            .iter()
            .all(|k| watches.get(k).is_some_and(|w| w.synced))
    }
}

fn controller_owner(owners: Option<&Vec<OwnerReference>>, kind: &str) -> Option<String> {
    owners?
        .iter()
        .find(|o| o.kind == kind && o.controller == Some(true))
        .map(|o| o.name.clone())
}

/// ReplicaSet (namespace, name) → the Deployment that owns it.
fn replica_set_owners(stores: &Stores) -> BTreeMap<(String, String), DeploymentRef> {
    stores
        .replica_sets
        .state()
        .iter()
        .filter_map(|rs| {
            let (ns, name) = (rs.metadata.namespace.as_ref()?, rs.metadata.name.as_ref()?);
            let deploy = controller_owner(rs.metadata.owner_references.as_ref(), "Deployment")?;
            Some(((ns.clone(), name.clone()), DeploymentRef::new(ns, deploy)))
        })
        .collect()
}

/// Folds the reflectors' current contents into a snapshot, policy aside.
fn build(
    stores: &Stores,
    cluster_domain: &str,
    rs_owner: &BTreeMap<(String, String), DeploymentRef>,
) -> Snapshot {
    let mut snap = Snapshot {
        cluster_domain: cluster_domain.to_string(),
        ..Default::default()
    };
    for rs in stores.replica_sets.state() {
        let (Some(ns), Some(name)) = (&rs.metadata.namespace, &rs.metadata.name) else {
            continue;
        };
        let Some(dref) = rs_owner.get(&(ns.clone(), name.clone())) else {
            continue;
        };
        let labels = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != conduit_api::deployment::POD_TEMPLATE_HASH_LABEL)
            .collect();
        snap.deployments.entry(dref.clone()).or_default().labels = labels;
    }
    // Pods of Deployments, by (namespace, name), for the endpoints below.
    let mut pods: BTreeMap<(String, String), (DeploymentRef, PodInfo)> = BTreeMap::new();
    for pod in stores.pods.state() {
        let Some((dref, info, service_account)) = pod_info(&pod, rs_owner) else {
            continue;
        };
        let entry = snap.deployments.entry(dref.clone()).or_default();
        entry.service_account = service_account;
        entry.pods.push(info.clone());
        pods.insert((dref.namespace.clone(), info.name.clone()), (dref, info));
    }
    for info in snap.deployments.values_mut() {
        if info.service_account.is_empty() {
            info.service_account = conduit_api::discovery_file::DEFAULT_SERVICE_ACCOUNT.into();
        }
        info.pods.sort_by(|a, b| a.name.cmp(&b.name));
    }
    for svc in stores.services.state() {
        let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
            continue;
        };
        let sref = ServiceRef::new(ns, name);
        let info = service_info(&snap, &svc, &sref, &stores.slices, &pods);
        snap.services.insert(sref, info);
    }
    snap
}

/// The policy resources, and what policy reads of Deployments and
/// Namespaces.
fn policy_sources(
    stores: &Stores,
    rs_owner: &BTreeMap<(String, String), DeploymentRef>,
) -> Sources {
    let namespaces = stores
        .namespaces
        .state()
        .iter()
        .filter_map(|ns| {
            let annotation = ns
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_POLICY_ANNOTATION))
                .cloned();
            Some((ns.metadata.name.clone()?, annotation))
        })
        .collect();
    Sources {
        servers: stores.servers.state(),
        http_routes: stores.http_routes.state(),
        authorization_policies: stores.authorization_policies.state(),
        mesh_tls_authentications: stores.mesh_tls_authentications.state(),
        network_authentications: stores.network_authentications.state(),
        workloads: workloads(stores, rs_owner),
        namespaces,
    }
}

/// Each Deployment's current pod template (from its ReplicaSet of the
/// highest revision) and live pods.
fn workloads(
    stores: &Stores,
    rs_owner: &BTreeMap<(String, String), DeploymentRef>,
) -> Vec<Workload> {
    let mut current: BTreeMap<DeploymentRef, (u64, Arc<ReplicaSet>)> = BTreeMap::new();
    for rs in stores.replica_sets.state() {
        let (Some(ns), Some(name)) = (&rs.metadata.namespace, &rs.metadata.name) else {
            continue;
        };
        let Some(dref) = rs_owner.get(&(ns.clone(), name.clone())) else {
            continue;
        };
        let revision = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION))
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if current.get(dref).is_none_or(|(r, _)| revision > *r) {
            current.insert(dref.clone(), (revision, rs));
        }
    }
    let mut out: BTreeMap<DeploymentRef, Workload> = current
        .into_iter()
        .map(|(dref, (_, rs))| {
            let template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
            let metadata = template.and_then(|t| t.metadata.as_ref());
            let workload = Workload {
                deployment: dref.clone(),
                pods: vec![PodShape::new(
                    metadata.and_then(|m| m.labels.as_ref()),
                    template.and_then(|t| t.spec.as_ref()),
                )],
                default_policy: metadata
                    .and_then(|m| m.annotations.as_ref())
                    .and_then(|a| a.get(DEFAULT_POLICY_ANNOTATION))
                    .cloned(),
            };
            (dref, workload)
        })
        .collect();
    for pod in stores.pods.state() {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let owner = controller_owner(pod.metadata.owner_references.as_ref(), "ReplicaSet");
        let Some(dref) = owner.and_then(|rs| {
            let ns = pod.metadata.namespace.clone()?;
            rs_owner.get(&(ns, rs))
        }) else {
            continue;
        };
        if let Some(w) = out.get_mut(dref) {
            w.pods.push(PodShape::new(
                pod.metadata.labels.as_ref(),
                pod.spec.as_ref(),
            ));
        }
    }
    out.into_values().collect()
}

fn pod_info(
    pod: &Pod,
    rs_owner: &BTreeMap<(String, String), DeploymentRef>,
) -> Option<(DeploymentRef, PodInfo, String)> {
    let ns = pod.metadata.namespace.as_ref()?;
    let name = pod.metadata.name.as_ref()?;
    let rs = controller_owner(pod.metadata.owner_references.as_ref(), "ReplicaSet")?;
    let dref = rs_owner.get(&(ns.clone(), rs))?.clone();
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ip: IpAddr = status.pod_ip.as_ref()?.parse().ok()?;
    let spec = pod.spec.as_ref()?;
    let meshed = spec.containers.iter().any(|c| c.name == PROXY_CONTAINER);
    let info = PodInfo {
        name: name.clone(),
        // Port 0: a Kubernetes pod is reached on any of its ports.
        addr: SocketAddr::new(ip, 0),
        meshed,
        tap: meshed.then(|| SocketAddr::new(ip, PROXY_TAP_PORT)),
        admin: meshed.then(|| SocketAddr::new(ip, PROXY_ADMIN_PORT)),
    };
    let service_account = spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| conduit_api::discovery_file::DEFAULT_SERVICE_ACCOUNT.into());
    Some((dref, info, service_account))
}

fn opaque_ports(svc: &Service) -> Vec<u16> {
    svc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OPAQUE_PORTS_ANNOTATION))
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_default()
}

fn service_info(
    snap: &Snapshot,
    svc: &Service,
    sref: &ServiceRef,
    slices: &Store<EndpointSlice>,
    pods: &BTreeMap<(String, String), (DeploymentRef, PodInfo)>,
) -> ServiceInfo {
    let opaque = opaque_ports(svc);
    let mut info = ServiceInfo::default();
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let own_slices: Vec<_> = slices
        .state()
        .into_iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(sref.namespace.as_str())
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    == Some(&sref.name)
        })
        .collect();
    for port in ports {
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let port_name = port.name.clone().unwrap_or_default();
        let mut entry = ServicePortInfo {
            opaque: opaque.contains(&number),
            endpoints: Vec::new(),
        };
        for slice in &own_slices {
            let Some(target) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.clone().unwrap_or_default() == port_name)
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            entry.opaque |= opaque.contains(&target);
            for ep in &slice.endpoints {
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                let pod = ep
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name.clone())
                    .and_then(|name| pods.get(&(sref.namespace.clone(), name)));
                for ip in ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    let addr = SocketAddr::new(ip, target);
                    let endpoint = match pod {
                        Some((dref, pod)) => {
                            snap.endpoint(dref, &snap.deployments[dref], pod, addr, entry.opaque)
                        }
                        None => super::Endpoint {
                            addr,
                            pod: None,
                            deployment: None,
                            identity: None,
                            hint: if entry.opaque {
                                super::ProtocolHint::Opaque
                            } else {
                                super::ProtocolHint::Unknown
                            },
                        },
                    };
                    entry.endpoints.push(endpoint);
                }
            }
        }
        entry.endpoints.sort_by_key(|e| e.addr);
        entry.endpoints.dedup_by_key(|e| e.addr);
        info.ports.insert(number, entry);
    }
    info
}

impl Kubernetes {
    fn policy_health(&self) -> Vec<Health> {
        if self.snapshots.borrow().policy.is_pending() {
            return vec![Health::problem(
                HealthStatus::Warning,
                "policy is compiled from the Kubernetes API",
                "not every watch policy is compiled from has listed yet; proxies keep the \
                 policy they apply",
            )];
        }
        let errors = self.policy_errors.lock().expect("policy errors lock");
        if errors.is_empty() {
            return vec![Health::ok("policy resources compile in every namespace")];
        }
        errors
            .iter()
            .map(|(ns, e)| {
                Health::problem(
                    HealthStatus::Failed,
                    format!("policy resources of namespace {ns} compile"),
                    format!(
                        "{e}; the namespace's previous policy stays in force until it is fixed"
                    ),
                )
            })
            .collect()
    }
}

impl Discovery for Kubernetes {
    fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    fn health(&self) -> Vec<Health> {
        let watches = self.watches.lock().expect("watch state lock");
        let mut out = Vec::new();
        for (kind, state) in watches.iter() {
            let description = format!("can watch {kind} through the Kubernetes API");
            out.push(match (&state.last_error, state.synced) {
                (None, true) => Health::ok(description),
                (None, false) => Health::problem(
                    HealthStatus::Warning,
                    description,
                    "the first list has not completed yet",
                ),
                (Some(e), _) => Health::problem(
                    HealthStatus::Failed,
                    description,
                    format!(
                        "{e}; if this is 403 Forbidden, the controller's service account needs \
                         get/list/watch on {kind} (a ClusterRole from `conduit install`){}",
                        if POLICY_KINDS[3..].contains(kind) {
                            "; if 404 Not Found, the policy CustomResourceDefinitions are not \
                             installed (`conduit install` has them)"
                        } else {
                            ""
                        }
                    ),
                ),
            });
        }
        out.extend(self.policy_health());
        let snap = self.snapshots.borrow();
        let control_plane: Vec<_> = snap
            .deployments_in(Some(CONTROL_PLANE_NAMESPACE))
            .flat_map(|(_, d)| &d.pods)
            .collect();
        out.push(if control_plane.is_empty() {
            Health::problem(
                HealthStatus::Failed,
                format!("control plane pods run in namespace {CONTROL_PLANE_NAMESPACE}"),
                format!(
                    "no running pod of a Deployment in namespace {CONTROL_PLANE_NAMESPACE}; \
                     run `conduit install | kubectl apply -f -`"
                ),
            )
        } else {
            Health::ok(format!(
                "control plane pods are running in namespace {CONTROL_PLANE_NAMESPACE} ({})",
                control_plane.len()
            ))
        });
        out
    }
}
