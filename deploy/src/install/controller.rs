//! The controller: public API over gRPC, destination and identity for the
//! proxies (mTLS, port `mesh`), the dashboard and JSON/SSE API over HTTP. One Deployment serves both; the
//! `conduit-web` Service names the dashboard part for port-forwards and
//! Ingresses.

use conduit_api::metrics_backend::MetricsBackend;

use crate::value::{Map, Value, map, seq};

use super::config::{ISSUER_SECRET, TRUST_ANCHORS_SECRET};
use super::pod::{
    container_security_context, http_probe, pod_security_context, port, resources,
    spread_over_nodes,
};
use super::rbac::CONTROLLER_ACCOUNT;
use super::{InstallOptions, labels, metadata, selector};

const COMPONENT: &str = "controller";
pub(super) const SERVICE: &str = "conduit-controller";
pub(super) const GRPC_PORT: u16 = 50751;
pub(super) const HTTP_PORT: u16 = 50750;
use crate::sidecar::MESH_PORT;
const HA_REPLICAS: u32 = 3;
/// Where the identity roots are mounted, for the identity service.
const IDENTITY_DIR: &str = "/var/run/conduit/identity";

pub(super) fn objects(options: &InstallOptions) -> Vec<Value> {
    let ns = &options.namespace;
    let mut objects = vec![
        deployment(options),
        service(
            SERVICE,
            ns,
            seq([
                service_port("grpc", GRPC_PORT, Some("grpc")),
                service_port("http", HTTP_PORT, Some("http")),
                service_port("mesh", MESH_PORT, None),
            ]),
        ),
        service(
            "conduit-web",
            ns,
            seq([service_port("http", HTTP_PORT, Some("http"))]),
        ),
    ];
    if options.ha {
        objects.push(disruption_budget(SERVICE, ns, COMPONENT));
    }
    objects
}

fn deployment(options: &InstallOptions) -> Value {
    let ns = &options.namespace;
    let store =
        super::store::grpc_addrs(ns, &options.cluster_domain, "https", options.ha).join(",");
    let mut args = vec![
        format!("--grpc-listen=0.0.0.0:{GRPC_PORT}"),
        format!("--http-listen=0.0.0.0:{HTTP_PORT}"),
        format!("--mesh-listen=0.0.0.0:{MESH_PORT}"),
        format!("--store-addr={store}"),
        "--discovery=kubernetes".to_string(),
        "--mode=kubernetes".to_string(),
        format!("--cluster-domain={}", options.cluster_domain),
        format!("--namespace={ns}"),
        format!(
            "--default-inbound-policy={}",
            options.default_inbound_policy
        ),
        format!("--identity-trust-anchors={IDENTITY_DIR}/trust-anchors/ca.crt"),
        format!("--identity-issuer-certificate={IDENTITY_DIR}/issuer/tls.crt"),
        format!("--identity-issuer-key={IDENTITY_DIR}/issuer/tls.key"),
    ];
    if options.metrics_backend != MetricsBackend::Embedded {
        args.push(format!("--metrics-backend={}", options.metrics_backend));
    }
    let container = map([
        ("name", COMPONENT.into()),
        ("image", options.controller_image.as_str().into()),
        ("imagePullPolicy", "IfNotPresent".into()),
        ("args", seq(args)),
        (
            "ports",
            seq([
                port("grpc", GRPC_PORT),
                port("http", HTTP_PORT),
                port("mesh", MESH_PORT),
            ]),
        ),
        ("readinessProbe", http_probe("/healthz", "http", 10)),
        ("livenessProbe", http_probe("/healthz", "http", 10)),
        ("resources", resources("100m", "64Mi", "512Mi")),
        ("securityContext", container_security_context()),
        (
            "volumeMounts",
            seq([
                secret_mount("identity-issuer", "issuer"),
                secret_mount("identity-trust-anchors", "trust-anchors"),
            ]),
        ),
    ]);
    let mut pod_spec = Map::from_iter([
        ("serviceAccountName", Value::from(CONTROLLER_ACCOUNT)),
        ("securityContext", pod_security_context()),
        ("containers", seq([container])),
        (
            "volumes",
            seq([
                secret_volume("identity-issuer", ISSUER_SECRET),
                secret_volume("identity-trust-anchors", TRUST_ANCHORS_SECRET),
            ]),
        ),
    ]);
    let mut spec = Map::from_iter([
        (
            "replicas",
            Value::from(if options.ha { HA_REPLICAS } else { 1 }),
        ),
        ("selector", map([("matchLabels", selector(COMPONENT))])),
    ]);
    if options.ha {
        pod_spec.insert_before(
            "containers",
            "affinity",
            spread_over_nodes(selector(COMPONENT)),
        );
        spec.insert(
            "strategy",
            map([(
                "rollingUpdate",
                map([("maxUnavailable", 1.into()), ("maxSurge", "25%".into())]),
            )]),
        );
    }
    spec.insert(
        "template",
        map([
            (
                "metadata",
                map([
                    ("labels", labels(COMPONENT, ns).into()),
                    (
                        "annotations",
                        map([("conduit.io/inject", "disabled".into())]),
                    ),
                ]),
            ),
            ("spec", pod_spec.into()),
        ]),
    );
    map([
        ("apiVersion", "apps/v1".into()),
        ("kind", "Deployment".into()),
        ("metadata", metadata(SERVICE, ns, COMPONENT)),
        ("spec", spec.into()),
    ])
}

pub(super) fn secret_mount(volume: &str, dir: &str) -> Value {
    map([
        ("name", volume.into()),
        ("mountPath", format!("{IDENTITY_DIR}/{dir}").into()),
        ("readOnly", true.into()),
    ])
}

pub(super) fn secret_volume(volume: &str, secret: &str) -> Value {
    map([
        ("name", volume.into()),
        ("secret", map([("secretName", secret.into())])),
    ])
}

fn service(name: &str, namespace: &str, ports: Value) -> Value {
    map([
        ("apiVersion", "v1".into()),
        ("kind", "Service".into()),
        ("metadata", metadata(name, namespace, COMPONENT)),
        (
            "spec",
            map([
                ("type", "ClusterIP".into()),
                ("selector", selector(COMPONENT)),
                ("ports", ports),
            ]),
        ),
    ])
}

pub(super) fn service_port(name: &str, port: u16, app_protocol: Option<&str>) -> Value {
    let mut entry = Map::from_iter([
        ("name", Value::from(name)),
        ("port", port.into()),
        ("targetPort", name.into()),
        ("protocol", "TCP".into()),
    ]);
    if let Some(protocol) = app_protocol {
        entry.insert("appProtocol", protocol);
    }
    entry.into()
}

/// Voluntary disruptions (drains, upgrades) take down at most one replica.
/// At most one replica of `component` down at a time for a drain.
pub(super) fn disruption_budget(name: &str, namespace: &str, component: &str) -> Value {
    map([
        ("apiVersion", "policy/v1".into()),
        ("kind", "PodDisruptionBudget".into()),
        ("metadata", metadata(name, namespace, component)),
        (
            "spec",
            map([
                ("maxUnavailable", 1.into()),
                ("selector", map([("matchLabels", selector(component))])),
            ]),
        ),
    ])
}
