//! The static discovery file: the mesh's service registry when there is no
//! Kubernetes API, as `conduit demo` writes it and `conduit-controller
//! --discovery static:PATH` reads it (and re-reads when it changes).
//!
//! The types live here, not in the controller, because the file is a
//! contract between two programs: whoever writes it builds these structs
//! and serializes them, the controller deserializes and validates them.
//! Maps are keyed by name so a name cannot appear twice; unknown fields are
//! rejected so a typo is an error instead of a silently ignored setting.
//!
//! ```yaml
//! version: 1
//! cluster_domain: cluster.local      # optional, this is the default
//! namespaces:
//!   demo:
//!     deployments:
//!       web:
//!         service_account: web       # identity web.demo.serviceaccount.identity.conduit.cluster.local
//!         labels: {app: web}
//!         pods:
//!           - name: web-0
//!             addr: 127.0.0.1:14143  # the pod's proxy inbound listener: where peers connect
//!             tap: 127.0.0.1:14190   # the proxy's tap server
//!             admin: 127.0.0.1:14191 # the proxy's admin server (/metrics, /ready)
//!       voting:
//!         pods:
//!           - {name: voting-0, addr: 127.0.0.1:14243, tap: 127.0.0.1:14290}
//!           - name: voting-1
//!             addr: 127.0.0.1:14343
//!             tap: 127.0.0.1:14390
//!             ports: {db: 127.0.0.1:14344}   # another listener of the same pod
//!     services:
//!       web:     {deployment: web, ports: [{port: 8080}]}
//!       voting:
//!         deployment: voting
//!         ports:
//!           - {port: 8080}                                  # HTTP/gRPC: meshed endpoints get the h2 hint
//!           - {port: 5432, target: db, protocol: opaque}    # TCP: never detected
//!     profiles:
//!       voting:                        # the service it applies to
//!         timeout: 10s
//!         retry_budget: {retry_ratio: 0.2, min_retries_per_second: 10, ttl: 10s}
//!         routes:
//!           - name: vote
//!             condition: {all: [{method: POST}, {path: '^/emojivoto\.v1\.VotingService/Vote.*$'}]}
//!             response_classes:
//!               - {condition: {status: {min: 500, max: 599}}, is_failure: true}
//!               - {condition: {grpc: [14]}, is_failure: true}
//!             retry: {statuses: [{min: 503, max: 503}], grpc_codes: [14], max_attempts: 3}
//!             timeout: 500ms
//!
//!     default_inbound_policy: all-authenticated   # optional; also per deployment, and mesh-wide at the top
//!     policy:
//!       servers:
//!         voting-http: {deployment: voting, port: 8080, protocol: HTTP/2}   # port: the application's
//!       http_routes:
//!         voting-list:
//!           server: voting-http
//!           matches: [{path: {prefix: /api/list}, method: GET}]
//!       authorization_policies:
//!         web-lists:
//!           target: {http_route: voting-list}          # or {server: NAME}, or {namespace: demo}
//!           required_authentications: [{mesh_tls: web-only}, {network: local}]
//!       mesh_tls_authentications:
//!         web-only: {identities: ["web.demo.serviceaccount.identity.conduit.cluster.local"]}
//!         ops: {service_accounts: [{name: deployer, namespace: ci}], namespaces: [ops]}
//!       network_authentications:
//!         local: {networks: [{cidr: 127.0.0.0/8, except: [127.0.0.2/32]}]}
//! ```
//!
//! A service answers to `name.namespace.svc.<cluster_domain>:port`,
//! `name.namespace.svc:port`, `name.namespace:port`, and `name:port` from
//! inside its namespace.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::policy::DefaultPolicy;

/// The schema version this module describes.
pub const VERSION: u32 = 1;
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Kubernetes gives pods this service account unless told otherwise.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryFile {
    /// Must be [`VERSION`].
    pub version: u32,
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    #[serde(default)]
    pub namespaces: BTreeMap<String, Namespace>,
    /// The mesh-wide default inbound policy (default: all-unauthenticated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_inbound_policy: Option<DefaultPolicy>,
    /// What `cluster-*` policies admit (default:
    /// [`crate::policy::DEFAULT_CLUSTER_NETWORKS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_networks: Option<Vec<String>>,
}

impl Default for DiscoveryFile {
    fn default() -> Self {
        Self {
            version: VERSION,
            cluster_domain: default_cluster_domain(),
            namespaces: BTreeMap::new(),
            default_inbound_policy: None,
            cluster_networks: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, Deployment>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Service>,
    /// Service profiles, by the name of the service they apply to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, Profile>,
    /// The namespace's default inbound policy (the annotation
    /// `config.conduit.io/default-inbound-policy` on Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_inbound_policy: Option<DefaultPolicy>,
    /// The namespace's policy resources.
    #[serde(default, skip_serializing_if = "Policy::is_empty")]
    pub policy: Policy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The pods' service account, which names their mTLS identity.
    #[serde(default = "default_service_account")]
    pub service_account: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub pods: Vec<Pod>,
    /// The workload's default inbound policy, over the namespace's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_inbound_policy: Option<DefaultPolicy>,
}

impl Default for Deployment {
    fn default() -> Self {
        Self {
            service_account: default_service_account(),
            labels: BTreeMap::new(),
            pods: Vec::new(),
            default_inbound_policy: None,
        }
    }
}

/// A namespace's policy resources, shaped like Linkerd's
/// (`policy.linkerd.io`) and named as on Kubernetes (`policy.conduit.io/v1`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub servers: BTreeMap<String, Server>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub http_routes: BTreeMap<String, HttpRoute>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorization_policies: BTreeMap<String, AuthorizationPolicy>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mesh_tls_authentications: BTreeMap<String, MeshTlsAuthentication>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_authentications: BTreeMap<String, NetworkAuthentication>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A port of a workload that policy applies to. Once a Server selects a
/// port, only what an AuthorizationPolicy admits reaches it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The Deployment whose pods it selects (a pod selector on Kubernetes).
    pub deployment: String,
    /// The application's port (what the proxy forwards to).
    pub port: u16,
    #[serde(default)]
    pub protocol: ServerProtocol,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerProtocol {
    /// `unknown` is Linkerd's name for it, which Kubernetes Servers use.
    #[default]
    #[serde(rename = "detect", alias = "unknown")]
    Detect,
    #[serde(rename = "HTTP/1")]
    Http1,
    #[serde(rename = "HTTP/2")]
    Http2,
    #[serde(rename = "gRPC")]
    Grpc,
    #[serde(rename = "opaque")]
    Opaque,
}

/// Requests on a Server that a policy can target on their own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    pub server: String,
    /// Any of them; none matches every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpRouteMatch>,
}

/// All of the given parts must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// A map with exactly one of these keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    /// Anchored, Rust `regex` syntax.
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    pub value: String,
}

/// Admits the clients that satisfy all of its authentications to its
/// target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationPolicy {
    pub target: PolicyTarget,
    /// At most one of each kind; none admits every client.
    #[serde(default)]
    pub required_authentications: Vec<AuthenticationRef>,
    /// Trying the policy out: requests or connections on its target that
    /// nothing admits are let through, logged and counted as audited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub audit: bool,
}

/// A map with exactly one key: what the policy applies to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyTarget {
    Server(String),
    HttpRoute(String),
    /// Every Server of the namespace (which must be the policy's own).
    Namespace(String),
}

/// A map with exactly one key, naming an authentication of the namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthenticationRef {
    MeshTls(String),
    Network(String),
}

/// Clients proving one of these mesh identities.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshTlsAuthentication {
    /// Names, `*` (any identity) or `*.SUFFIX`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccountRef>,
    /// Every service account of these namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountRef {
    pub name: String,
    /// Default: the authentication's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Clients from one of these networks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAuthentication {
    pub networks: Vec<NetworkSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    /// Unique within the namespace.
    pub name: String,
    /// Where peers connect: the proxy's inbound listener for a meshed pod,
    /// the application itself for an unmeshed one.
    pub addr: SocketAddr,
    /// Whether a Conduit proxy fronts the pod (and so reports metrics, can
    /// be tapped, and proves an identity).
    #[serde(default = "yes")]
    pub meshed: bool,
    /// The proxy's tap server (`conduit.tap.v1.Tap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<SocketAddr>,
    /// The proxy's admin server (`/metrics`, `/ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    /// More listeners of the pod by port name, for service ports whose
    /// `target` names them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The Deployment (same namespace) whose pods serve it.
    pub deployment: String,
    pub ports: Vec<ServicePort>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    /// The port clients put in the authority (`web.demo:8080`).
    pub port: u16,
    /// A key of the pods' `ports`; absent means each pod's `addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
}

/// What a service port carries, which decides the protocol hint clients get.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1, HTTP/2 or gRPC: detected, and upgraded to HTTP/2 between
    /// meshed proxies.
    #[default]
    Http,
    /// Any other TCP protocol: bytes are forwarded, never inspected.
    Opaque,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Evaluated in order; the first route whose condition matches applies.
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    /// Timeout of requests that match no route with its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TextDuration>,
    /// Skip protocol detection for the whole authority.
    #[serde(default)]
    pub opaque: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique within the profile; the value of the `route` metric label.
    pub name: String,
    pub condition: RequestMatch,
    /// First match decides; none matching means status-code classification.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_classes: Vec<ResponseClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TextDuration>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metric_labels: BTreeMap<String, String>,
}

/// A request condition: a map with exactly one of these keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestMatch {
    All(Vec<RequestMatch>),
    Any(Vec<RequestMatch>),
    Not(Box<RequestMatch>),
    /// An anchored regular expression (Rust `regex` syntax) on the path.
    Path(String),
    /// An HTTP method, e.g. `GET`.
    Method(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseClass {
    pub condition: ResponseMatch,
    #[serde(default)]
    pub is_failure: bool,
}

/// A response condition: a map with exactly one of these keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMatch {
    All(Vec<ResponseMatch>),
    Any(Vec<ResponseMatch>),
    Not(Box<ResponseMatch>),
    Status(StatusRange),
    /// Any of these `grpc-status` codes.
    Grpc(Vec<u32>),
}

/// HTTP statuses from `min` to `max`, both included.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRange {
    pub min: u16,
    pub max: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<StatusRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grpc_codes: Vec<u32>,
    /// Methods that may be replayed; empty means the idempotent ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Attempts including the first; 0 means the proxy's default.
    #[serde(default)]
    pub max_attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Extra load retries may add, e.g. 0.2 for 20 %.
    pub retry_ratio: f32,
    #[serde(default)]
    pub min_retries_per_second: u32,
    pub ttl: TextDuration,
}

/// A duration written as text (`500ms`, `10s`), see [`crate::duration`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TextDuration(pub Duration);

impl Serialize for TextDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::duration::format(self.0))
    }
}

impl<'de> Deserialize<'de> for TextDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::duration::parse(&text)
            .map(TextDuration)
            .map_err(serde::de::Error::custom)
    }
}

fn default_cluster_domain() -> String {
    DEFAULT_CLUSTER_DOMAIN.to_string()
}

fn default_service_account() -> String {
    DEFAULT_SERVICE_ACCOUNT.to_string()
}

fn yes() -> bool {
    true
}
