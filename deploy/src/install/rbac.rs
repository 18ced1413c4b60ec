//! ServiceAccounts and least-privilege RBAC: the controller may read what
//! its discovery and policy watch across the cluster and nothing else; the store
//! talks to no Kubernetes API and gets no token at all.

use conduit_api::policy::resources as policy_api;
use conduit_api::tap_rbac;

use crate::value::{Value, map, seq};

use super::{labels, metadata};

pub(super) use conduit_api::identity::CONTROLLER_SERVICE_ACCOUNT as CONTROLLER_ACCOUNT;
pub(super) use conduit_api::identity::STORE_SERVICE_ACCOUNT as STORE_ACCOUNT;

pub(super) fn objects(namespace: &str) -> Vec<Value> {
    vec![
        service_account(CONTROLLER_ACCOUNT, namespace, "controller", true),
        service_account(STORE_ACCOUNT, namespace, "telemetry-store", false),
        cluster_role(namespace),
        cluster_role_binding(namespace),
        tap_cluster_role(namespace),
    ]
}

/// The right to tap, for operators to bind (nobody has it by default): a
/// ClusterRoleBinding for the whole mesh, a RoleBinding per namespace.
fn tap_cluster_role(namespace: &str) -> Value {
    map([
        ("apiVersion", "rbac.authorization.k8s.io/v1".into()),
        ("kind", "ClusterRole".into()),
        (
            "metadata",
            map([
                ("name", tap_rbac::cluster_role(namespace).into()),
                ("labels", labels("controller", namespace).into()),
            ]),
        ),
        (
            "rules",
            seq([map([
                ("apiGroups", seq([tap_rbac::GROUP])),
                ("resources", seq([tap_rbac::RESOURCE])),
                ("verbs", seq([tap_rbac::VERB])),
            ])]),
        ),
    ])
}

fn service_account(name: &str, namespace: &str, component: &str, token: bool) -> Value {
    map([
        ("apiVersion", "v1".into()),
        ("kind", "ServiceAccount".into()),
        ("metadata", metadata(name, namespace, component)),
        ("automountServiceAccountToken", token.into()),
    ])
}

/// Cluster-scoped objects carry the namespace in their name, so two
/// control planes in different namespaces do not overwrite each other's.
fn cluster_name(namespace: &str) -> String {
    format!("conduit-{namespace}-controller")
}

fn cluster_metadata(namespace: &str) -> Value {
    map([
        ("name", cluster_name(namespace).into()),
        ("labels", labels("controller", namespace).into()),
    ])
}

fn cluster_role(namespace: &str) -> Value {
    let read = || seq(["get", "list", "watch"]);
    map([
        ("apiVersion", "rbac.authorization.k8s.io/v1".into()),
        ("kind", "ClusterRole".into()),
        ("metadata", cluster_metadata(namespace)),
        (
            "rules",
            seq([
                // Namespaces for their default-policy annotation.
                map([
                    ("apiGroups", seq([""])),
                    ("resources", seq(["pods", "services", "namespaces"])),
                    ("verbs", read()),
                ]),
                map([
                    ("apiGroups", seq(["apps"])),
                    ("resources", seq(["replicasets"])),
                    ("verbs", read()),
                ]),
                map([
                    ("apiGroups", seq(["discovery.k8s.io"])),
                    ("resources", seq(["endpointslices"])),
                    ("verbs", read()),
                ]),
                map([
                    ("apiGroups", seq([policy_api::GROUP])),
                    ("resources", seq(policy_api::KINDS.map(|k| k.plural))),
                    ("verbs", read()),
                ]),
                // The identity service checks each proxy's token, and the
                // public API each tapping user's.
                map([
                    ("apiGroups", seq(["authentication.k8s.io"])),
                    ("resources", seq(["tokenreviews"])),
                    ("verbs", seq(["create"])),
                ]),
                // Whether that user may tap the namespace it asks for.
                map([
                    ("apiGroups", seq(["authorization.k8s.io"])),
                    ("resources", seq(["subjectaccessreviews"])),
                    ("verbs", seq(["create"])),
                ]),
            ]),
        ),
    ])
}

fn cluster_role_binding(namespace: &str) -> Value {
    map([
        ("apiVersion", "rbac.authorization.k8s.io/v1".into()),
        ("kind", "ClusterRoleBinding".into()),
        ("metadata", cluster_metadata(namespace)),
        (
            "roleRef",
            map([
                ("apiGroup", "rbac.authorization.k8s.io".into()),
                ("kind", "ClusterRole".into()),
                ("name", cluster_name(namespace).into()),
            ]),
        ),
        (
            "subjects",
            seq([map([
                ("kind", "ServiceAccount".into()),
                ("name", CONTROLLER_ACCOUNT.into()),
                ("namespace", namespace.into()),
            ])]),
        ),
    ])
}
