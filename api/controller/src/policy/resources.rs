//! The `policy.conduit.io/v1` objects as the controller reads them from
//! the Kubernetes API.
//!
//! The reflectors hold each object's spec as raw JSON, decoded only when
//! policy is compiled: were the spec decoded with the object, one object
//! the types below cannot read would fail the list of its whole kind, and
//! the error would name no object. Decoded late, it is an error about
//! that object alone.
//!
//! The shapes follow Linkerd's `policy.linkerd.io` kinds, minus what the
//! mesh cannot enforce (listed in the README); the CRDs `conduit install`
//! emits describe the same fields.

use std::borrow::Cow;
use std::marker::PhantomData;

use conduit_api::discovery_file::{NetworkSpec, ServerProtocol};
use conduit_api::policy::resources::{self as api, Kind};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The spec of one kind of the API.
pub trait Spec: DeserializeOwned {
    const KIND: Kind;
}

/// An object of the kind whose spec is `S`, its spec not decoded yet.
#[derive(Deserialize)]
pub struct Object<S> {
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: serde_json::Value,
    #[serde(skip)]
    kind: PhantomData<fn() -> S>,
}

// By hand: derives would ask `S` to be `Clone` and `Debug`, which specs
// need not be.
impl<S> Clone for Object<S> {
    fn clone(&self) -> Self {
        Self {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            kind: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for Object<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Object")
            .field("metadata", &self.metadata)
            .field("spec", &self.spec)
            .finish()
    }
}

impl<S: Spec> Object<S> {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or_default()
    }

    pub fn spec(&self) -> Result<S, String> {
        if self.spec.is_null() {
            return Err("it has no spec".into());
        }
        serde_json::from_value(self.spec.clone()).map_err(|e| format!("spec: {e}"))
    }
}

impl<S: Spec> Resource for Object<S> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        S::KIND.kind.into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        api::GROUP.into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        api::VERSION.into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        S::KIND.plural.into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A port of the pods a selector picks.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSpec {
    pub pod_selector: LabelSelector,
    /// A number, or the name of a container port.
    pub port: IntOrString,
    #[serde(default)]
    pub proxy_protocol: ServerProtocol,
}

impl Spec for ServerSpec {
    const KIND: Kind = api::SERVER;
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteSpec {
    pub parent_refs: Vec<Reference>,
    /// None matches every request, as in the Gateway API.
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

impl Spec for HttpRouteSpec {
    const KIND: Kind = api::HTTP_ROUTE;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteRule {
    /// Any of them; none matches every request.
    #[serde(default)]
    pub matches: Vec<HttpRouteMatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteMatch {
    #[serde(default)]
    pub path: Option<PathMatch>,
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMatch {
    #[serde(rename = "type", default)]
    pub kind: PathMatchType,
    #[serde(default = "root")]
    pub value: String,
}

fn root() -> String {
    "/".into()
}

/// The Gateway API's path match types (and its default).
#[derive(Deserialize, Default)]
pub enum PathMatchType {
    Exact,
    #[default]
    PathPrefix,
    RegularExpression,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Only `Exact`: the proxy compares header values exactly.
    #[serde(rename = "type", default)]
    pub kind: HeaderMatchType,
    pub name: String,
    pub value: String,
}

#[derive(Deserialize, Default)]
pub enum HeaderMatchType {
    #[default]
    Exact,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// A Server, an HTTPRoute, or the policy's Namespace.
    pub target_ref: Reference,
    /// At most one MeshTLSAuthentication and one NetworkAuthentication;
    /// none admits every client.
    pub required_authentication_refs: Vec<Reference>,
    /// Trying the policy out: what it would deny on its target is let
    /// through, logged and counted as audited.
    #[serde(default)]
    pub audit: bool,
}

impl Spec for AuthorizationPolicySpec {
    const KIND: Kind = api::AUTHORIZATION_POLICY;
}

/// A reference to another object, as the Gateway API writes them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reference {
    #[serde(default)]
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTlsAuthenticationSpec {
    /// Names, `*` (any identity) or `*.SUFFIX`.
    #[serde(default)]
    pub identities: Vec<String>,
    /// ServiceAccounts, whose identities these are.
    #[serde(default)]
    pub identity_refs: Vec<Reference>,
}

impl Spec for MeshTlsAuthenticationSpec {
    const KIND: Kind = api::MESH_TLS_AUTHENTICATION;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAuthenticationSpec {
    pub networks: Vec<NetworkSpec>,
}

impl Spec for NetworkAuthenticationSpec {
    const KIND: Kind = api::NETWORK_AUTHENTICATION;
}
