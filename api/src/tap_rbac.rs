//! How Kubernetes RBAC names the right to tap, so the controller's check
//! and the ClusterRole `conduit install` emits cannot drift apart: verb
//! `tap` on `deployments` in the API group `tap.conduit.io`, namespaced
//! like the Deployments it covers.

pub const GROUP: &str = "tap.conduit.io";
pub const RESOURCE: &str = "deployments";
pub const VERB: &str = "tap";

/// The ClusterRole `conduit install` emits for it, to bind to whoever may
/// tap (a RoleBinding limits it to one namespace).
pub fn cluster_role(control_plane_namespace: &str) -> String {
    format!("conduit-{control_plane_namespace}-tap")
}
