//! Policy on Kubernetes: the `policy.conduit.io/v1` resources and the
//! default-policy annotations of namespaces and workloads, translated into
//! the discovery file's form and compiled by [`super::index`], so that each
//! rule lives in one place for both sources.
//!
//! - A Server selects the pods its `podSelector` matches and applies to
//!   their Deployments (a proxy asks for its Deployment's port), at its
//!   port number, or at the container port of that name in each selected
//!   pod. A Deployment's pods are its live pods and the pod template of its
//!   current ReplicaSet: a new Deployment's pods have their policy before
//!   they start, and a template changed in a rollout counts at once.
//! - A workload's default is the annotation on its current pod template,
//!   a namespace's the annotation on the Namespace.
//! - Each namespace compiles on its own. One whose resources do not
//!   compile keeps its previous policy while the others update; the error
//!   names the resource, is logged when it first appears, and stays in
//!   [`Compiler::errors`] (for `conduit check`) until it is fixed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use conduit_api::DeploymentRef;
use conduit_api::discovery_file as schema;
use conduit_api::policy::resources as api;
use conduit_api::policy::{DEFAULT_CLUSTER_NETWORKS, DEFAULT_POLICY_ANNOTATION, DefaultPolicy};
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};
use tracing::{info, warn};

use super::index::{NamespacePolicy, PolicyIndex, SelectedServer, Words, compile_servers};
use super::resources::{
    AuthorizationPolicySpec, HeaderMatchType, HttpRouteSpec, MeshTlsAuthenticationSpec,
    NetworkAuthenticationSpec, Object, PathMatchType, Reference, ServerSpec, Spec,
};

const WORDS: Words = Words {
    server: api::SERVER.kind,
    http_route: api::HTTP_ROUTE.kind,
    authorization_policy: api::AUTHORIZATION_POLICY.kind,
    mesh_tls_authentication: api::MESH_TLS_AUTHENTICATION.kind,
    network_authentication: api::NETWORK_AUTHENTICATION.kind,
};

/// What applies where neither a workload nor its namespace says: the
/// controller's `--default-inbound-policy` and `--cluster-networks`.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub mesh: DefaultPolicy,
    pub cluster_networks: Vec<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            mesh: DefaultPolicy::default(),
            cluster_networks: DEFAULT_CLUSTER_NETWORKS
                .iter()
                .map(|n| n.to_string())
                .collect(),
        }
    }
}

/// What policy reads of a Deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub deployment: DeploymentRef,
    /// Its live pods and its current pod template.
    pub pods: Vec<PodShape>,
    /// The default-policy annotation of its current pod template.
    pub default_policy: Option<String>,
}

/// What a Server's selector and port see of a pod or pod template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodShape {
    labels: BTreeMap<String, String>,
    /// Named container ports.
    ports: BTreeMap<String, u16>,
}

impl PodShape {
    pub fn new(labels: Option<&BTreeMap<String, String>>, spec: Option<&PodSpec>) -> Self {
        let ports = spec
            .into_iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
            .collect();
        Self {
            labels: labels.cloned().unwrap_or_default(),
            ports,
        }
    }
}

/// Everything policy is compiled from, as the reflectors hold it.
#[derive(Default)]
pub struct Sources {
    pub servers: Vec<Arc<Object<ServerSpec>>>,
    pub http_routes: Vec<Arc<Object<HttpRouteSpec>>>,
    pub authorization_policies: Vec<Arc<Object<AuthorizationPolicySpec>>>,
    pub mesh_tls_authentications: Vec<Arc<Object<MeshTlsAuthenticationSpec>>>,
    pub network_authentications: Vec<Arc<Object<NetworkAuthenticationSpec>>>,
    pub workloads: Vec<Workload>,
    /// Every namespace, with its default-policy annotation.
    pub namespaces: BTreeMap<String, Option<String>>,
}

/// One namespace's share of the sources.
#[derive(Default)]
struct NamespaceSources<'a> {
    annotation: Option<&'a String>,
    workloads: Vec<&'a Workload>,
    servers: Vec<&'a Object<ServerSpec>>,
    http_routes: Vec<&'a Object<HttpRouteSpec>>,
    authorization_policies: Vec<&'a Object<AuthorizationPolicySpec>>,
    mesh_tls_authentications: Vec<&'a Object<MeshTlsAuthenticationSpec>>,
    network_authentications: Vec<&'a Object<NetworkAuthenticationSpec>>,
}

/// Compiles sources into an index, namespace by namespace, remembering
/// each namespace's last good policy.
pub struct Compiler {
    defaults: Defaults,
    last_good: BTreeMap<String, NamespacePolicy>,
    errors: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Compiler {
    pub fn new(defaults: Defaults) -> Self {
        Self {
            defaults,
            last_good: BTreeMap::new(),
            errors: Arc::default(),
        }
    }

    /// Why each namespace that does not compile is refused, by namespace;
    /// shared, so health checks read it while compiles go on.
    pub fn errors(&self) -> Arc<Mutex<BTreeMap<String, String>>> {
        self.errors.clone()
    }

    pub fn compile(&mut self, sources: &Sources) -> PolicyIndex {
        let by_namespace = split(sources);
        let mut errors = self.errors.lock().expect("policy errors lock");
        self.last_good
            .retain(|ns, _| by_namespace.contains_key(ns.as_str()));
        errors.retain(|ns, _| by_namespace.contains_key(ns.as_str()));
        for (ns, resources) in &by_namespace {
            match compile_namespace(ns, resources) {
                Ok(policy) => {
                    if errors.remove(*ns).is_some() {
                        info!(namespace = ns, "policy resources compile again");
                    }
                    self.last_good.insert(ns.to_string(), policy);
                }
                Err(e) => {
                    if errors.get(*ns) != Some(&e) {
                        warn!(namespace = ns, error = %e, "policy refused; the namespace's previous policy stays in force");
                    }
                    errors.insert(ns.to_string(), e);
                }
            }
        }
        PolicyIndex::from_namespaces(
            self.defaults.mesh,
            self.defaults.cluster_networks.clone(),
            &self.last_good,
        )
    }
}

fn split(sources: &Sources) -> BTreeMap<&str, NamespaceSources<'_>> {
    let mut out: BTreeMap<&str, NamespaceSources<'_>> = BTreeMap::new();
    for (ns, annotation) in &sources.namespaces {
        out.entry(ns).or_default().annotation = annotation.as_ref();
    }
    for w in &sources.workloads {
        out.entry(&w.deployment.namespace)
            .or_default()
            .workloads
            .push(w);
    }
    // In name order, so that of several broken resources the same one is
    // reported on every compile.
    macro_rules! objects {
        ($($field:ident),*) => {
            $(
                for o in &sources.$field {
                    out.entry(o.namespace()).or_default().$field.push(o);
                }
            )*
            for namespace in out.values_mut() {
                $(namespace.$field.sort_by(|a, b| a.name().cmp(b.name()));)*
            }
        };
    }
    objects!(
        servers,
        http_routes,
        authorization_policies,
        mesh_tls_authentications,
        network_authentications
    );
    out
}

fn compile_namespace(ns: &str, sources: &NamespaceSources<'_>) -> Result<NamespacePolicy, String> {
    let default = default_policy(sources.annotation, || format!("Namespace {ns}"))?;
    let mut workload_defaults = BTreeMap::new();
    for w in &sources.workloads {
        let whose = || format!("Deployment {}", w.deployment);
        if let Some(d) = default_policy(w.default_policy.as_ref(), whose)? {
            workload_defaults.insert(w.deployment.clone(), d);
        }
    }
    let (selected, policy) = translate(ns, sources)?;
    let servers = compile_servers(ns, &selected, &policy, &WORDS)?;
    Ok(NamespacePolicy {
        servers,
        workload_defaults,
        default,
    })
}

fn default_policy(
    annotation: Option<&String>,
    whose: impl FnOnce() -> String,
) -> Result<Option<DefaultPolicy>, String> {
    annotation
        .map(|v| {
            v.parse()
                .map_err(|e| format!("{}: annotation {DEFAULT_POLICY_ANNOTATION}: {e}", whose()))
        })
        .transpose()
}

/// The namespace's resources in the discovery file's form, with its
/// Servers resolved to the workload ports they select.
fn translate(
    ns: &str,
    sources: &NamespaceSources<'_>,
) -> Result<(BTreeMap<String, SelectedServer>, schema::Policy), String> {
    let mut selected = BTreeMap::new();
    for o in &sources.servers {
        selected.insert(
            o.name().to_string(),
            named(o, |s| server(s, &sources.workloads))?,
        );
    }
    let mut policy = schema::Policy::default();
    for o in &sources.http_routes {
        let route = named(o, |s| http_route(s, ns))?;
        policy.http_routes.insert(o.name().to_string(), route);
    }
    for o in &sources.authorization_policies {
        let ap = named(o, |s| authorization_policy(s, ns))?;
        policy
            .authorization_policies
            .insert(o.name().to_string(), ap);
    }
    for o in &sources.mesh_tls_authentications {
        let auth = named(o, |s| mesh_tls_authentication(s, ns))?;
        policy
            .mesh_tls_authentications
            .insert(o.name().to_string(), auth);
    }
    for o in &sources.network_authentications {
        let auth = named(o, |s| {
            Ok(schema::NetworkAuthentication {
                networks: s.networks,
            })
        })?;
        policy
            .network_authentications
            .insert(o.name().to_string(), auth);
    }
    Ok((selected, policy))
}

/// Decodes and translates one object; errors name it.
fn named<S: Spec, T>(
    object: &Object<S>,
    translate: impl FnOnce(S) -> Result<T, String>,
) -> Result<T, String> {
    object
        .spec()
        .and_then(translate)
        .map_err(|e| format!("{} {}: {e}", S::KIND.kind, object.name()))
}

enum Port {
    Number(u16),
    Name(String),
}

fn server(spec: ServerSpec, workloads: &[&Workload]) -> Result<SelectedServer, String> {
    let selector =
        Selector::try_from(spec.pod_selector).map_err(|e| format!("podSelector: {e}"))?;
    let port = port(spec.port)?;
    let mut ports = BTreeSet::new();
    for w in workloads {
        for pod in w.pods.iter().filter(|p| selector.matches(&p.labels)) {
            let number = match &port {
                Port::Number(n) => Some(*n),
                Port::Name(name) => pod.ports.get(name).copied(),
            };
            if let Some(n) = number {
                ports.insert((w.deployment.name.clone(), n));
            }
        }
    }
    Ok(SelectedServer {
        protocol: spec.proxy_protocol,
        ports,
    })
}

fn port(port: IntOrString) -> Result<Port, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .map(Port::Number)
            .ok_or_else(|| format!("port {n} is not a TCP port (1-65535)")),
        IntOrString::String(name) if is_port_name(&name) => Ok(Port::Name(name)),
        IntOrString::String(name) => Err(format!(
            "port {name:?} is neither a number nor a container port name \
             (up to 15 lower-case letters, digits and dashes, with a letter)"
        )),
    }
}

/// Kubernetes' rule for container port names (IANA service names).
fn is_port_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn http_route(spec: HttpRouteSpec, ns: &str) -> Result<schema::HttpRoute, String> {
    let [parent] = spec.parent_refs.as_slice() else {
        return Err(format!(
            "parentRefs must name exactly one Server, not {}",
            spec.parent_refs.len()
        ));
    };
    local_ref("parentRefs", parent, ns, &[api::SERVER.kind], api::GROUP)?;
    // A rule without matches matches every request, and so does the route
    // (no rules at all, too: the empty list of matches means every request).
    let every_request = spec.rules.iter().any(|r| r.matches.is_empty());
    let matches = if every_request {
        Vec::new()
    } else {
        let rules = spec.rules.into_iter();
        rules.flat_map(|r| r.matches).map(route_match).collect()
    };
    Ok(schema::HttpRoute {
        server: parent.name.clone(),
        matches,
    })
}

fn route_match(m: super::resources::HttpRouteMatch) -> schema::HttpRouteMatch {
    let path = m.path.map(|p| match p.kind {
        PathMatchType::Exact => schema::PathMatch::Exact(p.value),
        PathMatchType::PathPrefix => schema::PathMatch::Prefix(p.value),
        PathMatchType::RegularExpression => schema::PathMatch::Regex(p.value),
    });
    let headers = m
        .headers
        .into_iter()
        .map(|h| {
            let HeaderMatchType::Exact = h.kind;
            schema::HeaderMatch {
                name: h.name,
                value: h.value,
            }
        })
        .collect();
    schema::HttpRouteMatch {
        path,
        method: m.method,
        headers,
    }
}

fn authorization_policy(
    spec: AuthorizationPolicySpec,
    ns: &str,
) -> Result<schema::AuthorizationPolicy, String> {
    let t = &spec.target_ref;
    let target = match t.kind.as_str() {
        "Namespace" => {
            local_ref("targetRef", t, ns, &["Namespace"], "")?;
            schema::PolicyTarget::Namespace(t.name.clone())
        }
        kind => {
            let kinds = [api::SERVER.kind, api::HTTP_ROUTE.kind];
            local_ref("targetRef", t, ns, &kinds, api::GROUP)?;
            if kind == api::SERVER.kind {
                schema::PolicyTarget::Server(t.name.clone())
            } else {
                schema::PolicyTarget::HttpRoute(t.name.clone())
            }
        }
    };
    let required_authentications = spec
        .required_authentication_refs
        .iter()
        .map(|r| {
            let kinds = [
                api::MESH_TLS_AUTHENTICATION.kind,
                api::NETWORK_AUTHENTICATION.kind,
            ];
            local_ref("requiredAuthenticationRefs", r, ns, &kinds, api::GROUP)?;
            Ok(if r.kind == api::MESH_TLS_AUTHENTICATION.kind {
                schema::AuthenticationRef::MeshTls(r.name.clone())
            } else {
                schema::AuthenticationRef::Network(r.name.clone())
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(schema::AuthorizationPolicy {
        target,
        required_authentications,
        audit: spec.audit,
    })
}

fn mesh_tls_authentication(
    spec: MeshTlsAuthenticationSpec,
    ns: &str,
) -> Result<schema::MeshTlsAuthentication, String> {
    if spec.identities.is_empty() && spec.identity_refs.is_empty() {
        return Err("name identities or identityRefs (`*` for any identity)".into());
    }
    let mut auth = schema::MeshTlsAuthentication {
        identities: spec.identities,
        ..Default::default()
    };
    for r in spec.identity_refs {
        check_group("identityRefs", &r, "")?;
        match r.kind.as_str() {
            "ServiceAccount" => auth.service_accounts.push(schema::ServiceAccountRef {
                name: r.name,
                namespace: Some(r.namespace.unwrap_or_else(|| ns.to_string())),
            }),
            "Namespace" => auth.namespaces.push(r.name),
            kind => {
                return Err(format!(
                    "identityRefs: kind {kind} is neither ServiceAccount nor Namespace"
                ));
            }
        }
    }
    Ok(auth)
}

/// Checks that `r`, found at `field`, names an object of one of `kinds`
/// in `group` and in the namespace `ns`: policy resources refer only
/// within their namespace.
fn local_ref(
    field: &str,
    r: &Reference,
    ns: &str,
    kinds: &[&str],
    group: &str,
) -> Result<(), String> {
    if !kinds.contains(&r.kind.as_str()) {
        return Err(format!(
            "{field}: kind {} is not {}",
            r.kind,
            kinds.join(" or ")
        ));
    }
    check_group(field, r, group)?;
    match &r.namespace {
        Some(other) if other != ns => Err(format!(
            "{field}: {} {other}/{} is in another namespace; policy resources refer only to their own namespace's",
            r.kind, r.name
        )),
        _ => Ok(()),
    }
}

/// An absent group is the kind's own; the core group is also written
/// `core`.
fn check_group(field: &str, r: &Reference, group: &str) -> Result<(), String> {
    let Some(given) = r.group.as_deref() else {
        return Ok(());
    };
    if given == group || (group.is_empty() && given == "core") {
        return Ok(());
    }
    let expected = if group.is_empty() { "core" } else { group };
    Err(format!(
        "{field}: {} {} is in API group {expected}, not {given}",
        r.kind, r.name
    ))
}
