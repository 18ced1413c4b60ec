//! The containers and volume inject adds to a pod.
//!
//! The proxy runs as a Kubernetes native sidecar (an init container with
//! `restartPolicy: Always`, Kubernetes ≥ 1.29): the kubelet starts it right
//! after `conduit-init` has programmed iptables and waits for its startup
//! probe before starting the remaining init containers and the app, so no
//! container ever opens a connection that iptables sends to a proxy that is
//! not listening yet; and Jobs complete, since a native sidecar stops when
//! the main containers are done.

use conduit_api::sidecar::{
    ADMIN_PORT, INBOUND_PORT, OUTBOUND_PORT, PROXY_UID, PortRange, TAP_PORT, format_port_list,
};

use crate::identity::{TOKEN_FILE, token_mount};
use crate::value::{Map, Value, map, seq};

/// The sidecar's container name.
pub const PROXY_CONTAINER: &str = "conduit-proxy";
/// The iptables init container's name.
pub const INIT_CONTAINER: &str = "conduit-init";
/// Scratch space `conduit-init` mounts at `/run`: iptables takes its lock
/// file there, and the container's root filesystem is read-only.
pub const XTABLES_VOLUME: &str = "conduit-init-xtables-lock";

/// The annotation that says which proxy version a pod was injected with;
/// its presence marks a pod as injected.
pub const PROXY_VERSION_ANNOTATION: &str = "conduit.io/proxy-version";
/// `enabled` on injected pods; `disabled` makes inject skip a workload.
pub const INJECT_ANNOTATION: &str = "conduit.io/inject";
/// The label naming the control plane's namespace, on the control plane's
/// pods and on every pod inject meshes with it: the control plane's
/// NetworkPolicies admit the pods that carry it.
pub const CONTROL_PLANE_NS_LABEL: &str = "conduit.io/control-plane-ns";

/// What the containers are made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sidecar {
    pub proxy_image: String,
    pub init_image: String,
    /// Where the control plane runs: the proxy's destination and telemetry
    /// addresses point there.
    pub control_plane_namespace: String,
    /// The cluster's DNS domain, for those addresses.
    pub cluster_domain: String,
    /// Inbound ports iptables leaves alone, besides the proxy's own admin
    /// and tap ports.
    pub skip_inbound_ports: Vec<PortRange>,
    /// Outbound ports iptables leaves alone.
    pub skip_outbound_ports: Vec<PortRange>,
    /// Ports whose protocol the proxy must not try to detect.
    pub opaque_ports: Vec<PortRange>,
    /// `RUST_LOG` for the proxy; its default when absent.
    pub proxy_log_level: Option<String>,
    /// The mesh's trust anchors (PEM). Given: proxies certify themselves
    /// with a projected ServiceAccount token and speak mTLS. Absent:
    /// plaintext.
    pub trust_anchors_pem: Option<String>,
    /// The control plane runs a pair of stores (`conduit install --ha`):
    /// the proxy reports to both.
    pub store_pair: bool,
}

impl Sidecar {
    /// This release's images, control plane in `namespace`.
    pub fn new(control_plane_namespace: &str) -> Self {
        Self {
            proxy_image: crate::images::proxy(),
            init_image: crate::images::proxy_init(),
            control_plane_namespace: control_plane_namespace.to_string(),
            cluster_domain: crate::CLUSTER_DOMAIN.to_string(),
            skip_inbound_ports: Vec::new(),
            skip_outbound_ports: Vec::new(),
            opaque_ports: Vec::new(),
            proxy_log_level: None,
            trust_anchors_pem: None,
            store_pair: false,
        }
    }
}

/// Ports that reach the proxy itself from outside the pod (the kubelet's
/// probes, Prometheus scrapes, the controller's tap) and so must never be
/// redirected to the inbound listener.
const PROXY_OWN_INBOUND: [PortRange; 2] =
    [PortRange::single(TAP_PORT), PortRange::single(ADMIN_PORT)];

/// The proxy's container. `deployment` is the pod's Deployment, when it
/// has one; `default_policy`, what it applies before the policy service
/// first answers (the proxy's own default otherwise).
pub(crate) fn proxy_container(
    options: &Sidecar,
    deployment: Option<&str>,
    default_policy: Option<conduit_api::policy::DefaultPolicy>,
) -> Value {
    let ns = &options.control_plane_namespace;
    let domain = &options.cluster_domain;
    let mut env = vec![
        env_value("CONDUIT_PROXY_MODE", "transparent"),
        env_value(
            "CONDUIT_PROXY_INBOUND_LISTEN",
            &format!("0.0.0.0:{INBOUND_PORT}"),
        ),
        env_value(
            "CONDUIT_PROXY_OUTBOUND_LISTEN",
            &format!("127.0.0.1:{OUTBOUND_PORT}"),
        ),
        env_value(
            "CONDUIT_PROXY_ADMIN_LISTEN",
            &format!("0.0.0.0:{ADMIN_PORT}"),
        ),
        env_value("CONDUIT_PROXY_TAP_LISTEN", &format!("0.0.0.0:{TAP_PORT}")),
        env_field("CONDUIT_PROXY_NAMESPACE", "metadata.namespace"),
        env_field("CONDUIT_PROXY_POD", "metadata.name"),
        env_field("CONDUIT_PROXY_SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ];
    if let Some(deployment) = deployment {
        env.push(env_value("CONDUIT_PROXY_DEPLOYMENT", deployment));
        // The pod's ReplicaSet, so series tell the Deployment's versions
        // apart during a rollout.
        env.push(env_field(
            "CONDUIT_PROXY_WORKLOAD_VERSION",
            &format!(
                "metadata.labels['{}']",
                conduit_api::deployment::POD_TEMPLATE_HASH_LABEL
            ),
        ));
    }
    // With trust anchors, every control-plane link is mTLS.
    let scheme = match &options.trust_anchors_pem {
        Some(anchors) => {
            env.extend([
                env_value(
                    "CONDUIT_PROXY_IDENTITY_ADDR",
                    &format!("https://conduit-controller.{ns}.svc.{domain}:{MESH_PORT}"),
                ),
                env_value("CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS_PEM", anchors),
                env_value("CONDUIT_PROXY_IDENTITY_TOKEN_FILE", TOKEN_FILE),
                env_value("CONDUIT_PROXY_CONTROL_PLANE_NAMESPACE", ns),
            ]);
            "https"
        }
        None => "http",
    };
    env.push(env_value(
        "CONDUIT_PROXY_DESTINATION_ADDR",
        &format!("{scheme}://conduit-controller.{ns}.svc.{domain}:{MESH_PORT}"),
    ));
    env.push(env_value(
        "CONDUIT_PROXY_TELEMETRY_ADDR",
        &crate::install::store_grpc_addrs(ns, domain, scheme, options.store_pair).join(","),
    ));
    if !options.opaque_ports.is_empty() {
        env.push(env_value(
            "CONDUIT_PROXY_OPAQUE_PORTS",
            &format_port_list(&options.opaque_ports),
        ));
    }
    if let Some(policy) = default_policy {
        env.push(env_value(
            "CONDUIT_PROXY_DEFAULT_INBOUND_POLICY",
            policy.as_str(),
        ));
    }
    if let Some(level) = &options.proxy_log_level {
        env.push(env_value("RUST_LOG", level));
    }

    let mut container = map([
        ("name", PROXY_CONTAINER.into()),
        ("image", options.proxy_image.as_str().into()),
        ("imagePullPolicy", "IfNotPresent".into()),
        ("env", Value::Seq(env)),
        (
            "ports",
            seq([
                container_port("conduit-proxy", INBOUND_PORT),
                container_port("conduit-admin", ADMIN_PORT),
                container_port("conduit-tap", TAP_PORT),
            ]),
        ),
        (
            "resources",
            map([
                (
                    "requests",
                    map([("cpu", "10m".into()), ("memory", "20Mi".into())]),
                ),
                ("limits", map([("memory", "250Mi".into())])),
            ]),
        ),
        (
            "securityContext",
            map([
                ("allowPrivilegeEscalation", false.into()),
                ("capabilities", map([("drop", seq(["ALL"]))])),
                ("readOnlyRootFilesystem", true.into()),
                ("runAsNonRoot", true.into()),
                ("runAsUser", PROXY_UID.into()),
                ("seccompProfile", map([("type", "RuntimeDefault".into())])),
            ]),
        ),
        // The kubelet holds back the app until this passes.
        (
            "startupProbe",
            http_probe("/ready", [("periodSeconds", 1), ("failureThreshold", 120)]),
        ),
        (
            "readinessProbe",
            http_probe("/ready", [("periodSeconds", 10), ("failureThreshold", 3)]),
        ),
        (
            "livenessProbe",
            http_probe("/live", [("periodSeconds", 10), ("failureThreshold", 3)]),
        ),
        ("restartPolicy", "Always".into()),
        ("terminationMessagePolicy", "FallbackToLogsOnError".into()),
    ]);
    if options.trust_anchors_pem.is_some()
        && let Value::Map(fields) = &mut container
    {
        fields.insert("volumeMounts", seq([token_mount()]));
    }
    container
}

/// `conduit-proxy init`: programs the pod's iptables and exits. It needs
/// root with NET_ADMIN and NET_RAW, and nothing else.
pub(crate) fn init_container(options: &Sidecar) -> Value {
    let mut skip_inbound = PROXY_OWN_INBOUND.to_vec();
    skip_inbound.extend(&options.skip_inbound_ports);
    let mut args = vec![
        "init".to_string(),
        "--inbound-port".into(),
        INBOUND_PORT.to_string(),
        "--outbound-port".into(),
        OUTBOUND_PORT.to_string(),
        "--proxy-uid".into(),
        PROXY_UID.to_string(),
        "--skip-inbound-ports".into(),
        format_port_list(&skip_inbound),
    ];
    if !options.skip_outbound_ports.is_empty() {
        args.push("--skip-outbound-ports".into());
        args.push(format_port_list(&options.skip_outbound_ports));
    }
    map([
        ("name", INIT_CONTAINER.into()),
        ("image", options.init_image.as_str().into()),
        ("imagePullPolicy", "IfNotPresent".into()),
        ("args", seq(args)),
        (
            "resources",
            map([
                (
                    "requests",
                    map([("cpu", "10m".into()), ("memory", "10Mi".into())]),
                ),
                (
                    "limits",
                    map([("cpu", "100m".into()), ("memory", "50Mi".into())]),
                ),
            ]),
        ),
        (
            "securityContext",
            map([
                ("allowPrivilegeEscalation", false.into()),
                (
                    "capabilities",
                    map([
                        ("add", seq(["NET_ADMIN", "NET_RAW"])),
                        ("drop", seq(["ALL"])),
                    ]),
                ),
                ("privileged", false.into()),
                ("readOnlyRootFilesystem", true.into()),
                ("runAsNonRoot", false.into()),
                ("runAsUser", 0.into()),
                ("seccompProfile", map([("type", "RuntimeDefault".into())])),
            ]),
        ),
        ("terminationMessagePolicy", "FallbackToLogsOnError".into()),
        (
            "volumeMounts",
            seq([map([
                ("name", XTABLES_VOLUME.into()),
                ("mountPath", "/run".into()),
            ])]),
        ),
    ])
}

/// The controller's port for proxies: destination and identity.
pub const MESH_PORT: u16 = 8086;

pub(crate) fn xtables_volume() -> Value {
    map([
        ("name", XTABLES_VOLUME.into()),
        ("emptyDir", Map::new().into()),
    ])
}

fn env_value(name: &str, value: &str) -> Value {
    map([("name", name.into()), ("value", value.into())])
}

pub(crate) fn env_field(name: &str, field: &str) -> Value {
    map([
        ("name", name.into()),
        (
            "valueFrom",
            map([("fieldRef", map([("fieldPath", field.into())]))]),
        ),
    ])
}

fn container_port(name: &str, port: u16) -> Value {
    map([
        ("name", name.into()),
        ("containerPort", port.into()),
        ("protocol", "TCP".into()),
    ])
}

fn http_probe<const N: usize>(path: &str, timing: [(&str, u32); N]) -> Value {
    let mut probe = Map::new();
    probe.insert(
        "httpGet",
        map([("path", path.into()), ("port", ADMIN_PORT.into())]),
    );
    for (key, value) in timing {
        probe.insert(key, value);
    }
    Value::Map(probe)
}
