//! `conduit install`: the control plane as Kubernetes objects, in the order
//! `kubectl apply` needs them (the Namespace first, RBAC before the pods
//! that use it).
//!
//! What it holds, in namespace `conduit` by default:
//! - the Namespace, labelled for the `restricted` Pod Security Standard,
//!   which every control plane pod meets;
//! - the CustomResourceDefinitions of the policy resources
//!   (`policy.conduit.io/v1`), cluster-wide;
//! - ServiceAccounts, and a ClusterRole that can only read what discovery
//!   and policy watch (pods, services, replicasets, endpointslices,
//!   namespaces, the policy resources);
//! - the identity trust anchor and issuer as Secrets;
//! - the `conduit-config` ConfigMap (what was installed, for `conduit
//!   check`) and Grafana's dashboards as a ConfigMap;
//! - the controller Deployment (public API, destination, dashboard) with its
//!   Services: `conduit-controller` (gRPC and HTTP) and `conduit-web` (the
//!   dashboard, which the controller's HTTP server serves);
//! - the telemetry store as a StatefulSet with a PersistentVolumeClaim;
//! - NetworkPolicies that admit only meshed pods and the control plane to
//!   the controller's and the store's ports;
//! - with `--metrics-backend prometheus:URL`, the controller reading
//!   metrics from that query API; with `--remote-write-url`, the store
//!   forwarding every series there;
//! - with `--ha`: three controller replicas and a pair of stores, each
//!   spread over nodes with a PodDisruptionBudget.
//!
//! `uninstall` lists the same objects by name for `kubectl delete`.

mod config;
mod controller;
mod network_policy;
mod pod;
mod policy;
mod rbac;
mod store;

pub(crate) use store::grpc_addrs as store_grpc_addrs;

use conduit_api::VERSION;
use conduit_api::metrics_backend::MetricsBackend;
use conduit_api::policy::DefaultPolicy;

use crate::identity::IdentityRoots;
use crate::sidecar::CONTROL_PLANE_NS_LABEL;
use crate::value::{Map, Value, map};

/// What to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallOptions {
    pub namespace: String,
    /// Replicated controller with a PodDisruptionBudget and anti-affinity.
    pub ha: bool,
    pub controller_image: String,
    pub store_image: String,
    /// Recorded in `conduit-config` for inject and check.
    pub proxy_image: String,
    pub proxy_init_image: String,
    /// Size of the store's PersistentVolumeClaim, e.g. `10Gi`.
    pub store_volume_size: String,
    /// The cluster's DNS domain, in Service addresses.
    pub cluster_domain: String,
    pub identity: IdentityRoots,
    /// What ports get that no Server selects and whose workload and
    /// namespace name no default.
    pub default_inbound_policy: DefaultPolicy,
    /// Where the controller reads metrics (`--metrics-backend`).
    pub metrics_backend: MetricsBackend,
    /// Where the store forwards every series (`--remote-write-url`).
    pub remote_write_url: Option<String>,
    /// Labels the store adds to what it forwards; `$(POD_NAME)` in a value
    /// is the store replica's own pod name.
    pub remote_write_external_labels: Vec<(String, String)>,
}

impl InstallOptions {
    /// This release's images, one replica, a 10 GiB store.
    pub fn new(namespace: &str, identity: IdentityRoots) -> Self {
        Self {
            namespace: namespace.to_string(),
            ha: false,
            controller_image: crate::images::controller(),
            store_image: crate::images::telemetry_store(),
            proxy_image: crate::images::proxy(),
            proxy_init_image: crate::images::proxy_init(),
            store_volume_size: "10Gi".to_string(),
            cluster_domain: crate::CLUSTER_DOMAIN.to_string(),
            identity,
            default_inbound_policy: DefaultPolicy::default(),
            metrics_backend: MetricsBackend::Embedded,
            remote_write_url: None,
            remote_write_external_labels: Vec::new(),
        }
    }
}

/// Every object of the control plane.
pub fn control_plane(options: &InstallOptions) -> Vec<Value> {
    let mut objects = vec![namespace(&options.namespace)];
    objects.extend(policy::objects());
    objects.extend(rbac::objects(&options.namespace));
    objects.extend(config::objects(options));
    objects.extend(controller::objects(options));
    objects.extend(store::objects(options));
    objects.extend(network_policy::objects(&options.namespace));
    objects
}

/// The control plane's objects by kind and name only, cluster-wide ones
/// and the Namespace last, for `kubectl delete -f -`. That includes the
/// policy CustomResourceDefinitions, and so every policy resource of the
/// cluster.
pub fn uninstall(namespace: &str) -> Vec<Value> {
    // Secrets' contents do not matter for deletion; an empty identity
    // keeps this free of key generation.
    let identity = IdentityRoots {
        trust_anchors_pem: String::new(),
        issuer_certificate_pem: String::new(),
        issuer_key_pem: String::new(),
    };
    let all = control_plane(&InstallOptions {
        ha: true,
        ..InstallOptions::new(namespace, identity)
    });
    let (cluster, namespaced): (Vec<Value>, Vec<Value>) = all
        .iter()
        .map(stub)
        .partition(|o| o.get_path(&["metadata", "namespace"]).is_none());
    namespaced
        .into_iter()
        .rev()
        .chain(cluster.into_iter().rev())
        .collect()
}

fn stub(object: &Value) -> Value {
    let mut metadata = Map::new();
    for key in ["name", "namespace"] {
        if let Some(value) = object.get_path(&["metadata", key]) {
            metadata.insert(key, value.clone());
        }
    }
    map([
        (
            "apiVersion",
            object
                .get_path(&["apiVersion"])
                .cloned()
                .unwrap_or_default(),
        ),
        (
            "kind",
            object.get_path(&["kind"]).cloned().unwrap_or_default(),
        ),
        ("metadata", metadata.into()),
    ])
}

fn namespace(name: &str) -> Value {
    map([
        ("apiVersion", "v1".into()),
        ("kind", "Namespace".into()),
        (
            "metadata",
            map([
                ("name", name.into()),
                (
                    "labels",
                    map([
                        ("conduit.io/is-control-plane", "true".into()),
                        ("pod-security.kubernetes.io/enforce", "restricted".into()),
                        ("app.kubernetes.io/part-of", "conduit".into()),
                    ]),
                ),
                // The control plane carries no proxies of its own.
                (
                    "annotations",
                    map([("conduit.io/inject", "disabled".into())]),
                ),
            ]),
        ),
    ])
}

/// Labels of a component's objects and pods.
fn labels(component: &str, namespace: &str) -> Map {
    Map::from_iter([
        (
            "app.kubernetes.io/name",
            Value::from(format!("conduit-{component}")),
        ),
        ("app.kubernetes.io/part-of", Value::from("conduit")),
        ("app.kubernetes.io/version", Value::from(VERSION)),
        ("conduit.io/control-plane-component", Value::from(component)),
        (CONTROL_PLANE_NS_LABEL, Value::from(namespace)),
    ])
}

/// The labels that select a component's pods; never changes between
/// releases, since a Deployment's selector is immutable.
fn selector(component: &str) -> Value {
    map([("conduit.io/control-plane-component", component.into())])
}

fn metadata(name: &str, namespace: &str, component: &str) -> Value {
    map([
        ("name", name.into()),
        ("namespace", namespace.into()),
        ("labels", labels(component, namespace).into()),
    ])
}

/// The DNS name of a control plane Service.
fn service_host(service: &str, options: &InstallOptions) -> String {
    format!(
        "{service}.{}.svc.{}",
        options.namespace, options.cluster_domain
    )
}
