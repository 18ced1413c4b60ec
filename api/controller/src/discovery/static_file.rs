//! The static discovery backend: a YAML file in the schema of
//! [`conduit_api::discovery_file`], watched for changes.
//!
//! The file is re-read when its modification time or size changes, checked
//! every 200 ms (cheap: one `stat` call), so an edit reaches destination
//! subscribers well within a second. A file that fails to parse or
//! validate is logged with the reason and the previous snapshot stays in
//! force: a typo in the demo's file must not empty the mesh.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use conduit_api::DeploymentRef;
use conduit_api::deployment::{validate_name, validate_namespace};
use conduit_api::discovery_file::{self as schema, DiscoveryFile};
use tokio::sync::watch;
use tracing::{error, info};

use super::{
    DeploymentInfo, Discovery, Health, HealthStatus, PodInfo, ServiceInfo, ServicePortInfo,
    ServiceRef, Snapshot,
};
use crate::policy::PolicyIndex;
use crate::profile;

const POLL_INTERVAL: Duration = Duration::from_millis(200);

pub struct StaticFile {
    path: PathBuf,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    state: Arc<Mutex<LoadState>>,
}

/// The outcome of the latest load, for `conduit check`.
#[derive(Default)]
struct LoadState {
    loaded_once: bool,
    last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid discovery file: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl StaticFile {
    /// Loads `path` and watches it. A file that cannot be loaded at start
    /// is an error: the controller refuses to start on a broken file rather
    /// than serve an empty mesh.
    pub fn start(path: impl Into<PathBuf>) -> Result<Self, LoadError> {
        let path = path.into();
        let snapshot = load(&path)?;
        info!(
            path = %path.display(),
            deployments = snapshot.deployments.len(),
            services = snapshot.services.len(),
            "static discovery loaded"
        );
        let (tx, rx) = watch::channel(Arc::new(snapshot));
        let state = Arc::new(Mutex::new(LoadState {
            loaded_once: true,
            last_error: None,
        }));
        tokio::spawn(watch_file(path.clone(), tx, state.clone()));
        Ok(Self {
            path,
            snapshots: rx,
            state,
        })
    }
}

impl Discovery for StaticFile {
    fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    fn health(&self) -> Vec<Health> {
        let state = self.state.lock().expect("state lock");
        let snap = self.snapshots.borrow();
        let loaded = format!(
            "static discovery file {} is loaded ({} Deployments, {} services)",
            self.path.display(),
            snap.deployments.len(),
            snap.services.len()
        );
        match &state.last_error {
            None => vec![Health::ok(loaded)],
            Some(e) => vec![Health::problem(
                if state.loaded_once {
                    HealthStatus::Warning
                } else {
                    HealthStatus::Failed
                },
                format!("static discovery file {} is valid", self.path.display()),
                format!("{e}; the previous version stays in force until the file is fixed"),
            )],
        }
    }
}

/// Polls the file's metadata and reloads it when it changed.
async fn watch_file(path: PathBuf, tx: watch::Sender<Arc<Snapshot>>, state: Arc<Mutex<LoadState>>) {
    let mut seen = fingerprint(&path);
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    loop {
        ticker.tick().await;
        if tx.is_closed() {
            return;
        }
        let now = fingerprint(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match load(&path) {
            Ok(snapshot) => {
                info!(path = %path.display(), "static discovery reloaded");
                state.lock().expect("state lock").last_error = None;
                tx.send_if_modified(|current| {
                    let changed = **current != snapshot;
                    if changed {
                        *current = Arc::new(snapshot);
                    }
                    changed
                });
            }
            Err(e) => {
                error!("{e}; keeping the previous discovery state");
                state.lock().expect("state lock").last_error = Some(e.to_string());
            }
        }
    }
}

/// Modification time and length: a rewrite within the same mtime tick
/// usually changes the length.
fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads, parses and validates the file into a snapshot.
pub fn load(path: &Path) -> Result<Snapshot, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let file: DiscoveryFile = serde_saphyr::from_str(&text).map_err(|e| LoadError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    build(&file).map_err(|message| LoadError::Invalid {
        path: path.display().to_string(),
        message,
    })
}

/// Checks what the schema cannot express and builds the snapshot.
pub fn build(file: &DiscoveryFile) -> Result<Snapshot, String> {
    if file.version != schema::VERSION {
        return Err(format!(
            "unsupported version {}: this controller reads version {}",
            file.version,
            schema::VERSION
        ));
    }
    let mut snap = Snapshot {
        cluster_domain: file.cluster_domain.trim_matches('.').to_string(),
        policy: PolicyIndex::from_file(file)?,
        deployments_listed: true,
        ..Default::default()
    };
    let mut addrs = BTreeMap::new();
    for (ns, namespace) in &file.namespaces {
        validate_namespace(ns).map_err(|e| format!("namespace: {e}"))?;
        let mut pod_names = BTreeSet::new();
        for (name, deployment) in &namespace.deployments {
            let dref = DeploymentRef::new(ns, name);
            let info = deployment_info(&dref, deployment, &mut pod_names, &mut addrs)?;
            snap.deployments.insert(dref, info);
        }
        for (name, service) in &namespace.services {
            let sref = ServiceRef::new(ns, name);
            let info = service_info(&snap, &sref, service, namespace)?;
            snap.services.insert(sref, info);
        }
        for (name, p) in &namespace.profiles {
            let sref = ServiceRef::new(ns, name);
            if !snap.services.contains_key(&sref) {
                return Err(format!(
                    "profile {ns}/{name}: there is no service {name} in namespace {ns}"
                ));
            }
            let fqdn = format!("{name}.{ns}.svc.{}", snap.cluster_domain);
            let built =
                profile::build(&fqdn, p).map_err(|e| format!("profile {ns}/{name}: {e}"))?;
            snap.profiles.insert(sref, built);
        }
    }
    Ok(snap)
}

fn deployment_info(
    dref: &DeploymentRef,
    deployment: &schema::Deployment,
    pod_names: &mut BTreeSet<String>,
    addrs: &mut BTreeMap<std::net::SocketAddr, String>,
) -> Result<DeploymentInfo, String> {
    validate_name(&dref.name).map_err(|e| format!("deployment in {}: {e}", dref.namespace))?;
    validate_name(&deployment.service_account)
        .map_err(|e| format!("deployment {dref}: service_account: {e}"))?;
    let mut pods = Vec::with_capacity(deployment.pods.len());
    for pod in &deployment.pods {
        validate_name(&pod.name).map_err(|e| format!("deployment {dref}: pod: {e}"))?;
        if !pod_names.insert(pod.name.clone()) {
            return Err(format!(
                "pod {}/{} appears more than once",
                dref.namespace, pod.name
            ));
        }
        let owner = format!("{}/{}", dref.namespace, pod.name);
        if let Some(other) = addrs.insert(pod.addr, owner.clone()) {
            return Err(format!(
                "pods {other} and {owner} have the same address {}",
                pod.addr
            ));
        }
        if pod.tap.is_some() && !pod.meshed {
            return Err(format!(
                "pod {owner} has a tap address but is not meshed (only proxies serve tap)"
            ));
        }
        pods.push(PodInfo {
            name: pod.name.clone(),
            addr: pod.addr,
            meshed: pod.meshed,
            tap: pod.tap,
            admin: pod.admin,
        });
    }
    Ok(DeploymentInfo {
        service_account: deployment.service_account.clone(),
        labels: deployment.labels.clone(),
        pods,
    })
}

fn service_info(
    snap: &Snapshot,
    sref: &ServiceRef,
    service: &schema::Service,
    namespace: &schema::Namespace,
) -> Result<ServiceInfo, String> {
    let ServiceRef {
        namespace: ns,
        name,
    } = sref;
    validate_name(name).map_err(|e| format!("service in {ns}: {e}"))?;
    let dref = DeploymentRef::new(ns, &service.deployment);
    let (Some(info), Some(decl)) = (
        snap.deployments.get(&dref),
        namespace.deployments.get(&service.deployment),
    ) else {
        return Err(format!(
            "service {ns}/{name}: there is no deployment {} in namespace {ns}",
            service.deployment
        ));
    };
    let mut ports = BTreeMap::new();
    for port in &service.ports {
        if port.port == 0 {
            return Err(format!("service {ns}/{name}: port 0 is not a port"));
        }
        let opaque = port.protocol == schema::Protocol::Opaque;
        let mut endpoints = Vec::with_capacity(info.pods.len());
        for (pod, pod_decl) in info.pods.iter().zip(&decl.pods) {
            let addr = match &port.target {
                None => pod.addr,
                Some(target) => *pod_decl.ports.get(target).ok_or_else(|| {
                    format!(
                        "service {ns}/{name} port {}: pod {} has no port named {target:?}",
                        port.port, pod.name
                    )
                })?,
            };
            endpoints.push(snap.endpoint(&dref, info, pod, addr, opaque));
        }
        if ports
            .insert(port.port, ServicePortInfo { opaque, endpoints })
            .is_some()
        {
            return Err(format!(
                "service {ns}/{name}: port {} appears more than once",
                port.port
            ));
        }
    }
    Ok(ServiceInfo { ports })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::ProtocolHint;

    const EXAMPLE: &str = r#"
version: 1
namespaces:
  demo:
    deployments:
      web:
        service_account: web
        labels: {app: web}
        pods:
          - {name: web-0, addr: 127.0.0.1:14143, tap: 127.0.0.1:14190, admin: 127.0.0.1:14191}
      db:
        pods:
          - name: db-0
            addr: 127.0.0.1:15000
            ports: {sql: 127.0.0.1:15432}
      legacy:
        pods:
          - {name: legacy-0, addr: 127.0.0.1:16000, meshed: false}
    services:
      web: {deployment: web, ports: [{port: 8080}]}
      db:
        deployment: db
        ports: [{port: 5432, target: sql, protocol: opaque}]
      legacy: {deployment: legacy, ports: [{port: 80}]}
    profiles:
      web:
        timeout: 10s
        retry_budget: {retry_ratio: 0.2, min_retries_per_second: 10, ttl: 10s}
        routes:
          - name: vote
            condition: {all: [{method: POST}, {path: '^/api/vote.*$'}]}
            response_classes:
              - {condition: {status: {min: 500, max: 599}}, is_failure: true}
            retry: {statuses: [{min: 503, max: 503}], max_attempts: 3}
            timeout: 500ms
"#;

    fn parse(text: &str) -> Result<Snapshot, String> {
        let file: DiscoveryFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        build(&file)
    }

    #[test]
    fn the_documented_example_builds() {
        let snap = parse(EXAMPLE).unwrap();
        assert_eq!(snap.deployments.len(), 3);
        let db = &snap.services[&ServiceRef::new("demo", "db")].ports[&5432];
        assert!(db.opaque);
        assert_eq!(db.endpoints[0].addr, "127.0.0.1:15432".parse().unwrap());
        assert_eq!(db.endpoints[0].hint, ProtocolHint::Opaque);
        let legacy = &snap.services[&ServiceRef::new("demo", "legacy")].ports[&80];
        assert_eq!(legacy.endpoints[0].hint, ProtocolHint::Unknown);
        assert_eq!(legacy.endpoints[0].identity, None);
        let profile = &snap.profiles[&ServiceRef::new("demo", "web")];
        assert_eq!(profile.fully_qualified_name, "web.demo.svc.cluster.local");
        assert_eq!(profile.routes[0].name, "vote");
        assert_eq!(
            profile.routes[0].timeout,
            Some(prost_types::Duration {
                seconds: 0,
                nanos: 500_000_000
            })
        );
    }

    #[test]
    fn the_schema_round_trips_through_yaml() {
        let file: DiscoveryFile = serde_saphyr::from_str(EXAMPLE).unwrap();
        let text = serde_saphyr::to_string(&file).unwrap();
        let again: DiscoveryFile = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(file, again);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            ("version: 2", "unsupported version 2"),
            (
                "version: 1\nnamespaces: {demo: {deployment: {}}}",
                "deployment",
            ),
            (
                "version: 1\nnamespaces: {demo: {services: {web: {deployment: web, ports: []}}}}",
                "there is no deployment web",
            ),
            (
                "version: 1\nnamespaces: {demo: {deployments: {a: {pods: [{name: p, addr: 127.0.0.1:1}]}, b: {pods: [{name: q, addr: 127.0.0.1:1}]}}}}",
                "the same address",
            ),
            (
                "version: 1\nnamespaces: {demo: {deployments: {a: {pods: [{name: p, addr: nowhere}]}}}}",
                "addr",
            ),
            (
                "version: 1\nnamespaces: {demo: {deployments: {a: {pods: [{name: p, addr: 127.0.0.1:1}]}}, services: {a: {deployment: a, ports: [{port: 80, target: x}]}}}}",
                "no port named \"x\"",
            ),
            (
                "version: 1\nnamespaces: {demo: {deployments: {a: {}}, services: {a: {deployment: a, ports: [{port: 80}]}}, profiles: {a: {routes: [{name: r, condition: {path: '('}}]}}}}",
                "regex",
            ),
            (
                "version: 1\nnamespaces: {demo: {deployments: {a: {}}, services: {a: {deployment: a, ports: [{port: 80}]}}, profiles: {a: {timeout: soon}}}}",
                "invalid duration",
            ),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(expected), "{text}\n=> {err}");
        }
    }
}
