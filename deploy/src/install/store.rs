//! The telemetry store: a StatefulSet whose replica keeps its WAL and
//! blocks on a PersistentVolumeClaim. Under `--ha` it runs a pair on
//! different nodes: every proxy reports to both and the controller asks
//! either, so losing one store loses no data and no answer. The two are
//! independent copies, not shards; scale-out goes through remote write.

use crate::value::{Map, Value, map, seq};

use super::config::TRUST_ANCHORS_SECRET;
use super::controller::service_port;
use super::controller::{secret_mount, secret_volume};
use super::pod::{
    container_security_context, http_probe, pod_security_context, port, resources,
    spread_over_nodes,
};
use super::rbac::STORE_ACCOUNT;
use crate::identity;

/// Where the trust anchors Secret is mounted (see the controller's).
const ANCHORS_DIR: &str = "/var/run/conduit/identity/trust-anchors";
use super::{InstallOptions, labels, metadata, selector, service_host};

const COMPONENT: &str = "telemetry-store";
pub(super) const SERVICE: &str = "conduit-telemetry-store";
const HTTP_PORT: u16 = 9095;
pub(super) const GRPC_PORT: u16 = 9096;
const DATA_DIR: &str = "/var/lib/conduit/store";
/// The replica's pod name, for `$(POD_NAME)` in its args.
const POD_NAME: &str = "POD_NAME";
/// Stores under `--ha`: a pair, as Prometheus HA pairs are run.
const HA_REPLICAS: u32 = 2;

/// The stores' gRPC addresses (`scheme` `http` or `https`), as proxies and
/// the controller are given them: the Service for one store; each
/// replica's own name (through the headless Service) for a pair, since
/// each must get every report.
pub(crate) fn grpc_addrs(
    namespace: &str,
    cluster_domain: &str,
    scheme: &str,
    ha: bool,
) -> Vec<String> {
    let host =
        |name: &str| format!("{scheme}://{name}.{namespace}.svc.{cluster_domain}:{GRPC_PORT}");
    if !ha {
        return vec![host(SERVICE)];
    }
    (0..HA_REPLICAS)
        .map(|i| host(&format!("{SERVICE}-{i}.{SERVICE}-headless")))
        .collect()
}

pub(super) fn objects(options: &InstallOptions) -> Vec<Value> {
    let ns = &options.namespace;
    let ports = || {
        seq([
            service_port("http", HTTP_PORT, Some("http")),
            service_port("grpc", GRPC_PORT, Some("grpc")),
        ])
    };
    let mut objects = vec![
        stateful_set(options),
        service(SERVICE, ns, ports(), false),
        // The StatefulSet's governing Service: stable DNS per replica.
        service(&format!("{SERVICE}-headless"), ns, ports(), true),
    ];
    if options.ha {
        objects.push(super::controller::disruption_budget(SERVICE, ns, COMPONENT));
    }
    objects
}

fn stateful_set(options: &InstallOptions) -> Value {
    let ns = &options.namespace;
    let mut args = vec![
        format!("--http-listen=0.0.0.0:{HTTP_PORT}"),
        format!("--grpc-listen=0.0.0.0:{GRPC_PORT}"),
        format!("--data-dir={DATA_DIR}"),
        // The gRPC API is mTLS with the store's own identity.
        format!(
            "--identity-addr=https://{}:{}",
            service_host(super::controller::SERVICE, options),
            crate::sidecar::MESH_PORT
        ),
        format!("--identity-trust-anchors={ANCHORS_DIR}/ca.crt"),
        format!("--identity-token-file={}", identity::TOKEN_FILE),
        format!("--namespace={ns}"),
    ];
    if let Some(url) = &options.remote_write_url {
        args.push(format!("--remote-write-url={url}"));
    }
    for (name, value) in &options.remote_write_external_labels {
        args.push(format!("--remote-write-external-label={name}={value}"));
    }
    let mut container = map([
        ("name", "store".into()),
        ("image", options.store_image.as_str().into()),
        ("imagePullPolicy", "IfNotPresent".into()),
        ("args", seq(args)),
        (
            "ports",
            seq([port("http", HTTP_PORT), port("grpc", GRPC_PORT)]),
        ),
        // Replaying a long WAL after a restart takes a while: up to five
        // minutes before liveness counts.
        (
            "startupProbe",
            map([
                (
                    "httpGet",
                    map([("path", "/-/healthy".into()), ("port", "http".into())]),
                ),
                ("periodSeconds", 5.into()),
                ("failureThreshold", 60.into()),
            ]),
        ),
        ("readinessProbe", http_probe("/-/ready", "http", 10)),
        ("livenessProbe", http_probe("/-/healthy", "http", 10)),
        ("resources", resources("100m", "256Mi", "2Gi")),
        ("securityContext", container_security_context()),
        (
            "volumeMounts",
            seq([
                map([("name", "data".into()), ("mountPath", DATA_DIR.into())]),
                identity::token_mount(),
                secret_mount("identity-trust-anchors", "trust-anchors"),
            ]),
        ),
    ]);
    if !options.remote_write_external_labels.is_empty() {
        // Kubernetes expands `$(POD_NAME)` in the args: each replica of a
        // pair labels its samples with its own name.
        container
            .as_map_mut()
            .expect("a container is a map")
            .insert_before(
                "ports",
                "env",
                seq([crate::sidecar::env_field(POD_NAME, "metadata.name")]),
            );
    }
    // No API token: only the projected one for the identity service.
    let mut pod_spec = Map::from_iter([
        ("serviceAccountName", Value::from(STORE_ACCOUNT)),
        ("automountServiceAccountToken", false.into()),
        ("securityContext", pod_security_context()),
        ("containers", seq([container])),
        (
            "volumes",
            seq([
                identity::token_volume(),
                secret_volume("identity-trust-anchors", TRUST_ANCHORS_SECRET),
            ]),
        ),
    ]);
    if options.ha {
        pod_spec.insert_before(
            "containers",
            "affinity",
            spread_over_nodes(selector(COMPONENT)),
        );
    }
    let replicas = if options.ha { HA_REPLICAS } else { 1 };
    map([
        ("apiVersion", "apps/v1".into()),
        ("kind", "StatefulSet".into()),
        ("metadata", metadata(SERVICE, ns, COMPONENT)),
        (
            "spec",
            map([
                ("serviceName", format!("{SERVICE}-headless").into()),
                ("replicas", replicas.into()),
                ("selector", map([("matchLabels", selector(COMPONENT))])),
                (
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
                ),
                (
                    "volumeClaimTemplates",
                    seq([map([
                        ("metadata", map([("name", "data".into())])),
                        (
                            "spec",
                            map([
                                ("accessModes", seq(["ReadWriteOnce"])),
                                (
                                    "resources",
                                    map([(
                                        "requests",
                                        map([(
                                            "storage",
                                            options.store_volume_size.as_str().into(),
                                        )]),
                                    )]),
                                ),
                            ]),
                        ),
                    ])]),
                ),
            ]),
        ),
    ])
}

fn service(name: &str, namespace: &str, ports: Value, headless: bool) -> Value {
    let mut spec = Map::from_iter([("type", Value::from("ClusterIP"))]);
    if headless {
        spec.insert("clusterIP", "None");
    }
    spec.insert("selector", selector(COMPONENT));
    spec.insert("ports", ports);
    map([
        ("apiVersion", "v1".into()),
        ("kind", "Service".into()),
        ("metadata", metadata(name, namespace, COMPONENT)),
        ("spec", spec.into()),
    ])
}
