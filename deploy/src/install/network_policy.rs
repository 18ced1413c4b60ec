//! NetworkPolicies that let only meshed pods and the control plane itself
//! reach the controller's and the store's ports: a pod must carry the label
//! `conduit inject` gives meshed pods (which the control plane's own pods
//! carry too), from any namespace.
//!
//! This is a second fence, not the authentication: a label is a claim
//! anyone who may create pods can make, and mTLS with verified identities
//! decides who the control plane answers. The fence keeps everything else
//! from even opening a connection.
//!
//! What still gets through, and why:
//! - `kubectl port-forward` (how `conduit dashboard` and the CLI reach the
//!   public API and dashboard): the kubelet connects to the pod's loopback
//!   from inside its network namespace, which NetworkPolicy does not
//!   filter.
//! - The kubelet's probes: they come from the pod's own node, which
//!   NetworkPolicy always admits.
//!
//! What does not: an unmeshed Grafana or Prometheus reading the store's
//! HTTP port, or an Ingress controller in front of `conduit-web`. Mesh
//! them, or add a NetworkPolicy of your own that admits them (policies
//! add up).

use crate::sidecar::CONTROL_PLANE_NS_LABEL;
use crate::value::{Map, Value, map, seq};

use super::{metadata, selector};

pub(super) fn objects(namespace: &str) -> Vec<Value> {
    vec![
        meshed_only(
            super::controller::SERVICE,
            namespace,
            "controller",
            &["grpc", "http", "mesh"],
        ),
        meshed_only(
            super::store::SERVICE,
            namespace,
            "telemetry-store",
            &["http", "grpc"],
        ),
    ]
}

/// Admits meshed pods to `component`'s named container `ports`, and
/// nothing else to any of its ports.
fn meshed_only(name: &str, namespace: &str, component: &str, ports: &[&str]) -> Value {
    let meshed = map([
        ("namespaceSelector", Map::new().into()),
        (
            "podSelector",
            map([(
                "matchLabels",
                map([(CONTROL_PLANE_NS_LABEL, namespace.into())]),
            )]),
        ),
    ]);
    let ports = ports
        .iter()
        .map(|p| map([("protocol", "TCP".into()), ("port", (*p).into())]));
    map([
        ("apiVersion", "networking.k8s.io/v1".into()),
        ("kind", "NetworkPolicy".into()),
        ("metadata", metadata(name, namespace, component)),
        (
            "spec",
            map([
                ("podSelector", map([("matchLabels", selector(component))])),
                ("policyTypes", seq(["Ingress"])),
                (
                    "ingress",
                    seq([map([("from", seq([meshed])), ("ports", seq(ports))])]),
                ),
            ]),
        ),
    ])
}
