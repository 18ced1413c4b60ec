//! The Kubernetes API of policy, `policy.conduit.io/v1`: its group, version
//! and kinds, which `conduit install` registers as CustomResourceDefinitions
//! (and grants the controller to read) and the controller watches.
//!
//! The kinds are named as Linkerd's (`policy.linkerd.io`) so that operators
//! who know those recognise them.

/// The API group of the policy resources.
pub const GROUP: &str = "policy.conduit.io";
/// The one served and stored version.
pub const VERSION: &str = "v1";

/// One kind of the API: its name in manifests and its resource name in
/// URLs and RBAC rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    pub kind: &'static str,
    pub plural: &'static str,
}

pub const SERVER: Kind = Kind {
    kind: "Server",
    plural: "servers",
};
pub const HTTP_ROUTE: Kind = Kind {
    kind: "HTTPRoute",
    plural: "httproutes",
};
pub const AUTHORIZATION_POLICY: Kind = Kind {
    kind: "AuthorizationPolicy",
    plural: "authorizationpolicies",
};
pub const MESH_TLS_AUTHENTICATION: Kind = Kind {
    kind: "MeshTLSAuthentication",
    plural: "meshtlsauthentications",
};
pub const NETWORK_AUTHENTICATION: Kind = Kind {
    kind: "NetworkAuthentication",
    plural: "networkauthentications",
};

pub const KINDS: [Kind; 5] = [
    SERVER,
    HTTP_ROUTE,
    AUTHORIZATION_POLICY,
    MESH_TLS_AUTHENTICATION,
    NETWORK_AUTHENTICATION,
];
