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
//! ```
//!
//! A service answers to `name.namespace.svc.<cluster_domain>:port`,
//! `name.namespace.svc:port`, `name.namespace:port`, and `name:port` from
//! inside its namespace.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
}

impl Default for DiscoveryFile {
    fn default() -> Self {
        Self {
            version: VERSION,
            cluster_domain: default_cluster_domain(),
            namespaces: BTreeMap::new(),
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
}

impl Default for Deployment {
    fn default() -> Self {
        Self {
            service_account: default_service_account(),
            labels: BTreeMap::new(),
            pods: Vec::new(),
        }
    }
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
