//! What every control plane pod shares: the `restricted` Pod Security
//! Standard (non-root, read-only root filesystem, no privilege escalation,
//! no capabilities, the runtime's seccomp profile), and for `--ha`,
//! replicas spread over nodes.

use crate::value::{Value, map, seq};

/// Distroless' `nonroot` user.
const USER: u32 = 65532;

pub(super) fn pod_security_context() -> Value {
    map([
        ("runAsNonRoot", true.into()),
        ("runAsUser", USER.into()),
        ("runAsGroup", USER.into()),
        // Volumes (the store's data) are writable by the pod's group.
        ("fsGroup", USER.into()),
        ("seccompProfile", map([("type", "RuntimeDefault".into())])),
    ])
}

pub(super) fn container_security_context() -> Value {
    map([
        ("allowPrivilegeEscalation", false.into()),
        ("capabilities", map([("drop", seq(["ALL"]))])),
        ("readOnlyRootFilesystem", true.into()),
        ("runAsNonRoot", true.into()),
        ("seccompProfile", map([("type", "RuntimeDefault".into())])),
    ])
}

pub(super) fn resources(cpu_request: &str, memory_request: &str, memory_limit: &str) -> Value {
    map([
        (
            "requests",
            map([
                ("cpu", cpu_request.into()),
                ("memory", memory_request.into()),
            ]),
        ),
        ("limits", map([("memory", memory_limit.into())])),
    ])
}

/// Replicas of a component on different nodes: required, so that losing a
/// node never takes more than one replica.
pub(super) fn spread_over_nodes(selector: Value) -> Value {
    map([(
        "podAntiAffinity",
        map([(
            "requiredDuringSchedulingIgnoredDuringExecution",
            seq([map([
                ("labelSelector", map([("matchLabels", selector)])),
                ("topologyKey", "kubernetes.io/hostname".into()),
            ])]),
        )]),
    )])
}

pub(super) fn http_probe(path: &str, port: &str, period_seconds: u32) -> Value {
    map([
        (
            "httpGet",
            map([("path", path.into()), ("port", port.into())]),
        ),
        ("periodSeconds", period_seconds.into()),
        ("failureThreshold", 3.into()),
    ])
}

pub(super) fn port(name: &str, container_port: u16) -> Value {
    map([
        ("name", name.into()),
        ("containerPort", container_port.into()),
        ("protocol", "TCP".into()),
    ])
}
