//! The mesh's inbound policy compiled per port: a Server's port gets the
//! authorizations of the policies that target it (or its namespace) and
//! its routes; every other port gets the default policy of its workload,
//! else of its namespace, else of the mesh.
//!
//! Compiling checks every reference (a route's Server, a policy's target
//! and authentications) and every network, identity pattern and regex, so
//! a broken resource is an error naming it at load time and the previous
//! policy stays in force, instead of a proxy finding out per request.

use std::collections::{BTreeMap, BTreeSet};

use conduit_api::DeploymentRef;
use conduit_api::deployment::{validate_name, validate_namespace};
use conduit_api::discovery_file::{self as schema, DiscoveryFile};
use conduit_api::policy::{self, Cidr, DEFAULT_CLUSTER_NETWORKS, DefaultPolicy};
use conduit_api::proto::policy::v1 as pb;

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyIndex {
    /// Ports some Server selects.
    servers: BTreeMap<(DeploymentRef, u16), pb::Server>,
    workload_defaults: BTreeMap<DeploymentRef, DefaultPolicy>,
    namespace_defaults: BTreeMap<String, DefaultPolicy>,
    mesh_default: DefaultPolicy,
    cluster_networks: Vec<String>,
    /// Its sources are still being read: the policy of no port is known.
    pending: bool,
}

/// What one namespace's resources and annotations compile to. The
/// Kubernetes backend keeps each namespace's last good one, so a namespace
/// whose resources stop compiling keeps its previous policy while the
/// others update.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct NamespacePolicy {
    pub(crate) servers: BTreeMap<(DeploymentRef, u16), pb::Server>,
    pub(crate) workload_defaults: BTreeMap<DeploymentRef, DefaultPolicy>,
    pub(crate) default: Option<DefaultPolicy>,
}

/// A Server as the compiler takes it: the workload ports it selects, which
/// each source resolves its own way (a Deployment and port in the file, a
/// pod selector and a port number or name on Kubernetes).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SelectedServer {
    pub(crate) protocol: schema::ServerProtocol,
    /// Deployments of the namespace, with the port of each.
    pub(crate) ports: BTreeSet<(String, u16)>,
}

/// How errors name the kinds of resources: as the keys of the discovery
/// file, or as the Kubernetes kinds, whichever the operator wrote.
pub(crate) struct Words {
    pub(crate) server: &'static str,
    pub(crate) http_route: &'static str,
    pub(crate) authorization_policy: &'static str,
    pub(crate) mesh_tls_authentication: &'static str,
    pub(crate) network_authentication: &'static str,
}

pub(crate) const FILE_WORDS: Words = Words {
    server: "server",
    http_route: "http_route",
    authorization_policy: "authorization_policy",
    mesh_tls_authentication: "mesh_tls_authentication",
    network_authentication: "network_authentication",
};

impl Default for PolicyIndex {
    fn default() -> Self {
        Self {
            servers: BTreeMap::new(),
            workload_defaults: BTreeMap::new(),
            namespace_defaults: BTreeMap::new(),
            mesh_default: DefaultPolicy::default(),
            cluster_networks: DEFAULT_CLUSTER_NETWORKS
                .iter()
                .map(|n| n.to_string())
                .collect(),
            pending: false,
        }
    }
}

impl PolicyIndex {
    /// The policy of `workload`'s application port `port`.
    pub fn port(&self, workload: &DeploymentRef, port: u16) -> pb::Server {
        match self.servers.get(&(workload.clone(), port)) {
            Some(server) => server.clone(),
            None => self.default_server(workload),
        }
    }

    /// The ports of `workload` that Servers select, with their policies.
    pub fn servers_of<'a>(
        &'a self,
        workload: &'a DeploymentRef,
    ) -> impl Iterator<Item = (u16, &'a pb::Server)> + 'a {
        self.servers
            .range((workload.clone(), 0)..=(workload.clone(), u16::MAX))
            .map(|((_, port), server)| (*port, server))
    }

    /// What the ports of `workload` that no Server selects get.
    pub fn default_server(&self, workload: &DeploymentRef) -> pb::Server {
        self.default_for(workload).server(&self.cluster_networks)
    }

    pub fn default_for(&self, workload: &DeploymentRef) -> DefaultPolicy {
        self.workload_defaults
            .get(workload)
            .or_else(|| self.namespace_defaults.get(&workload.namespace))
            .copied()
            .unwrap_or(self.mesh_default)
    }

    /// An index whose sources have not been read yet: policy services
    /// answer nothing from it, so proxies keep what they apply already
    /// instead of a default that the resources may be about to override.
    pub fn pending() -> Self {
        Self {
            pending: true,
            ..Self::default()
        }
    }

    pub fn is_pending(&self) -> bool {
        self.pending
    }

    /// The index of compiled namespaces, with the mesh-wide default and
    /// the networks `cluster-*` defaults admit.
    pub(crate) fn from_namespaces<'a>(
        mesh_default: DefaultPolicy,
        cluster_networks: Vec<String>,
        namespaces: impl IntoIterator<Item = (&'a String, &'a NamespacePolicy)>,
    ) -> Self {
        let mut index = Self {
            mesh_default,
            cluster_networks,
            ..Self::default()
        };
        for (ns, policy) in namespaces {
            index.servers.extend(policy.servers.clone());
            index
                .workload_defaults
                .extend(policy.workload_defaults.clone());
            if let Some(d) = policy.default {
                index.namespace_defaults.insert(ns.clone(), d);
            }
        }
        index
    }

    /// Compiles the `policy` sections and default policies of a discovery
    /// file.
    pub fn from_file(file: &DiscoveryFile) -> Result<Self, String> {
        let mut index = Self {
            mesh_default: file.default_inbound_policy.unwrap_or_default(),
            ..Self::default()
        };
        if let Some(networks) = &file.cluster_networks {
            for n in networks {
                n.parse::<Cidr>()
                    .map_err(|e| format!("cluster_networks: {e}"))?;
            }
            index.cluster_networks = networks.clone();
        }
        for (ns, namespace) in &file.namespaces {
            if let Some(d) = namespace.default_inbound_policy {
                index.namespace_defaults.insert(ns.clone(), d);
            }
            for (name, deployment) in &namespace.deployments {
                if let Some(d) = deployment.default_inbound_policy {
                    index
                        .workload_defaults
                        .insert(DeploymentRef::new(ns, name), d);
                }
            }
            let compiled = file_servers(namespace)
                .and_then(|servers| compile_servers(ns, &servers, &namespace.policy, &FILE_WORDS))
                .map_err(|e| format!("namespace {ns}: policy {e}"))?;
            index.servers.extend(compiled);
        }
        Ok(index)
    }
}

/// The file's Servers, each selecting one port of one of its Deployments.
fn file_servers(namespace: &schema::Namespace) -> Result<BTreeMap<String, SelectedServer>, String> {
    namespace
        .policy
        .servers
        .iter()
        .map(|(name, server)| {
            if !namespace.deployments.contains_key(&server.deployment) {
                return Err(format!(
                    "server {name}: there is no deployment {} in the namespace",
                    server.deployment
                ));
            }
            let selected = SelectedServer {
                protocol: server.protocol,
                ports: BTreeSet::from([(server.deployment.clone(), server.port)]),
            };
            Ok((name.clone(), selected))
        })
        .collect()
}

/// Compiles one namespace's resources into the policy of each port its
/// Servers select. `selected` stands for `p.servers`, resolved to ports by
/// the caller; the other resources are read from `p`.
pub(crate) fn compile_servers(
    ns: &str,
    selected: &BTreeMap<String, SelectedServer>,
    p: &schema::Policy,
    w: &Words,
) -> Result<BTreeMap<(DeploymentRef, u16), pb::Server>, String> {
    let mut servers = BTreeMap::new();
    for (name, server) in selected {
        validate_name(name).map_err(|e| format!("{} {name:?}: {e}", w.server))?;
        servers.insert(
            name.as_str(),
            pb::Server {
                name: name.clone(),
                protocol: protocol(server.protocol) as i32,
                ..Default::default()
            },
        );
    }
    let mut route_server = BTreeMap::new();
    for (name, route) in &p.http_routes {
        validate_name(name).map_err(|e| format!("{} {name:?}: {e}", w.http_route))?;
        let server = servers.get_mut(route.server.as_str()).ok_or_else(|| {
            format!(
                "{} {name}: there is no {} {} in the namespace",
                w.http_route, w.server, route.server
            )
        })?;
        let matches = route
            .matches
            .iter()
            .map(route_match)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} {name}: {e}", w.http_route))?;
        server.routes.push(pb::HttpRoute {
            name: name.clone(),
            matches,
            ..Default::default()
        });
        route_server.insert(name.as_str(), route.server.as_str());
    }
    for (name, ap) in &p.authorization_policies {
        let what = w.authorization_policy;
        validate_name(name).map_err(|e| format!("{what} {name:?}: {e}"))?;
        let authorization =
            authorization(name, ap, ns, p, w).map_err(|e| format!("{what} {name}: {e}"))?;
        let targets: Vec<&str> = match &ap.target {
            schema::PolicyTarget::Server(s) => {
                if !servers.contains_key(s.as_str()) {
                    return Err(format!(
                        "{what} {name}: there is no {} {s} in the namespace",
                        w.server
                    ));
                }
                vec![s]
            }
            schema::PolicyTarget::Namespace(target) if target == ns => {
                servers.keys().copied().collect()
            }
            schema::PolicyTarget::Namespace(target) => {
                return Err(format!(
                    "{what} {name}: it targets namespace {target}, but a policy applies to its own namespace only"
                ));
            }
            schema::PolicyTarget::HttpRoute(r) => {
                let server = route_server.get(r.as_str()).ok_or_else(|| {
                    format!(
                        "{what} {name}: there is no {} {r} in the namespace",
                        w.http_route
                    )
                })?;
                let server = servers.get_mut(server).expect("routes name known servers");
                let route = server
                    .routes
                    .iter_mut()
                    .find(|route| route.name == *r)
                    .expect("the route was compiled");
                route.authorizations.push(authorization);
                route.audit |= ap.audit;
                continue;
            }
        };
        for s in targets {
            let server = servers.get_mut(s).expect("targets are known servers");
            server.authorizations.push(authorization.clone());
            server.audit |= ap.audit;
        }
    }
    let mut out: BTreeMap<(DeploymentRef, u16), pb::Server> = BTreeMap::new();
    for (name, server) in selected {
        for (deployment, port) in &server.ports {
            let key = (DeploymentRef::new(ns, deployment), *port);
            if let Some(other) = out.get(&key) {
                return Err(format!(
                    "{} {name}: deployment {deployment} port {port} is already selected by {} {}",
                    w.server, w.server, other.name
                ));
            }
            out.insert(key, servers[name.as_str()].clone());
        }
    }
    Ok(out)
}

fn protocol(p: schema::ServerProtocol) -> pb::ProxyProtocol {
    match p {
        schema::ServerProtocol::Detect => pb::ProxyProtocol::Detect,
        schema::ServerProtocol::Http1 => pb::ProxyProtocol::Http1,
        schema::ServerProtocol::Http2 => pb::ProxyProtocol::Http2,
        schema::ServerProtocol::Grpc => pb::ProxyProtocol::Grpc,
        schema::ServerProtocol::Opaque => pb::ProxyProtocol::Opaque,
    }
}

fn route_match(m: &schema::HttpRouteMatch) -> Result<pb::RouteMatch, String> {
    use pb::path_match::Kind;
    let path = match &m.path {
        None => None,
        Some(schema::PathMatch::Exact(p)) => Some(Kind::Exact(absolute(p)?)),
        Some(schema::PathMatch::Prefix(p)) => Some(Kind::Prefix(absolute(p)?)),
        Some(schema::PathMatch::Regex(r)) => {
            regex::Regex::new(&format!("^(?:{r})$"))
                .map_err(|e| format!("path regex {r:?}: {e}"))?;
            Some(Kind::Regex(r.clone()))
        }
    };
    let method = m.method.clone().unwrap_or_default();
    if !method.is_empty() && http::Method::from_bytes(method.as_bytes()).is_err() {
        return Err(format!("{method:?} is not an HTTP method"));
    }
    let headers = m
        .headers
        .iter()
        .map(|h| {
            http::HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| format!("{:?} is not a header name", h.name))?;
            Ok(pb::HeaderMatch {
                name: h.name.to_ascii_lowercase(),
                value: h.value.clone(),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(pb::RouteMatch {
        path: path.map(|kind| pb::PathMatch { kind: Some(kind) }),
        method,
        headers,
    })
}

fn absolute(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        Ok(path.to_string())
    } else {
        Err(format!("path {path:?} must start with /"))
    }
}

/// The authorization a policy grants: its network authentication's
/// networks (any address without one), and its mesh TLS
/// authentication's identities (any client, meshed or not, without one).
fn authorization(
    name: &str,
    ap: &schema::AuthorizationPolicy,
    ns: &str,
    p: &schema::Policy,
    w: &Words,
) -> Result<pb::Authorization, String> {
    let mut tls = None;
    let mut networks = None;
    for r in &ap.required_authentications {
        match r {
            schema::AuthenticationRef::MeshTls(a) => {
                let auth = p.mesh_tls_authentications.get(a).ok_or_else(|| {
                    format!(
                        "there is no {} {a} in the namespace",
                        w.mesh_tls_authentication
                    )
                })?;
                if tls
                    .replace(mesh_tls(auth, ns).map_err(|e| format!("{a}: {e}"))?)
                    .is_some()
                {
                    return Err(format!(
                        "at most one {} per policy",
                        w.mesh_tls_authentication
                    ));
                }
            }
            schema::AuthenticationRef::Network(n) => {
                let auth = p.network_authentications.get(n).ok_or_else(|| {
                    format!(
                        "there is no {} {n} in the namespace",
                        w.network_authentication
                    )
                })?;
                // No networks would read as any network: refuse it
                // rather than open the target to every address.
                if auth.networks.is_empty() {
                    return Err(format!("{n}: name at least one network"));
                }
                let nets = auth
                    .networks
                    .iter()
                    .map(network)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{n}: {e}"))?;
                if networks.replace(nets).is_some() {
                    return Err(format!(
                        "at most one {} per policy",
                        w.network_authentication
                    ));
                }
            }
        }
    }
    let permit = match tls {
        Some(tls) => pb::authentication::Permit::Tls(tls),
        None => pb::authentication::Permit::Unauthenticated(Default::default()),
    };
    Ok(pb::Authorization {
        name: name.to_string(),
        networks: networks.unwrap_or_default(),
        authentication: Some(pb::Authentication {
            permit: Some(permit),
        }),
    })
}

fn mesh_tls(
    auth: &schema::MeshTlsAuthentication,
    ns: &str,
) -> Result<pb::authentication::Tls, String> {
    for pattern in &auth.identities {
        policy::validate_identity_pattern(pattern)?;
    }
    if auth.identities.is_empty() && auth.service_accounts.is_empty() && auth.namespaces.is_empty()
    {
        return Err(
            "name identities, service_accounts or namespaces (`*` for any identity)".into(),
        );
    }
    for namespace in &auth.namespaces {
        validate_namespace(namespace).map_err(|e| format!("namespace: {e}"))?;
    }
    let service_accounts = auth
        .service_accounts
        .iter()
        .map(|sa| {
            let namespace = sa.namespace.clone().unwrap_or_else(|| ns.to_string());
            validate_name(&sa.name).map_err(|e| format!("service account: {e}"))?;
            validate_namespace(&namespace)
                .map_err(|e| format!("service account namespace: {e}"))?;
            Ok(pb::authentication::ServiceAccount {
                name: sa.name.clone(),
                namespace,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(pb::authentication::Tls {
        identities: auth.identities.clone(),
        namespaces: auth.namespaces.clone(),
        service_accounts,
    })
}

fn network(n: &schema::NetworkSpec) -> Result<pb::Network, String> {
    n.cidr.parse::<Cidr>()?;
    for e in &n.except {
        e.parse::<Cidr>()?;
    }
    Ok(pb::Network {
        cidr: n.cidr.clone(),
        except: n.except.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(yaml: &str) -> Result<PolicyIndex, String> {
        let file: DiscoveryFile = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        PolicyIndex::from_file(&file)
    }

    const HEAD: &str = "version: 1\nnamespaces:\n  demo:\n    deployments: {web: {}, db: {default_inbound_policy: deny}}\n";

    #[test]
    fn defaults_go_from_workload_to_namespace_to_mesh() {
        let i = index(&format!("{HEAD}    default_inbound_policy: all-authenticated\ndefault_inbound_policy: cluster-authenticated\n")).unwrap();
        assert_eq!(
            i.default_for(&DeploymentRef::new("demo", "db")),
            DefaultPolicy::Deny
        );
        assert_eq!(
            i.default_for(&DeploymentRef::new("demo", "web")),
            DefaultPolicy::AllAuthenticated
        );
        assert_eq!(
            i.default_for(&DeploymentRef::new("else", "web")),
            DefaultPolicy::ClusterAuthenticated
        );
        assert_eq!(
            i.port(&DeploymentRef::new("demo", "db"), 80).name,
            "default:deny"
        );
    }

    #[test]
    fn servers_get_the_policies_that_target_them() {
        let i = index(&format!(
            "{HEAD}    policy:\n      servers: {{web-http: {{deployment: web, port: 8080}}}}\n      \
             authorization_policies:\n        all-ns: {{target: {{namespace: demo}}, required_authentications: [{{network: lo}}]}}\n      \
             network_authentications: {{lo: {{networks: [{{cidr: 127.0.0.0/8}}]}}}}\n"
        ))
        .unwrap();
        let s = i.port(&DeploymentRef::new("demo", "web"), 8080);
        assert_eq!(s.name, "web-http");
        assert_eq!(s.authorizations[0].name, "all-ns");
        assert_eq!(s.authorizations[0].networks[0].cidr, "127.0.0.0/8");
        // Another port of the workload keeps the default.
        assert_eq!(
            i.port(&DeploymentRef::new("demo", "web"), 9090).name,
            "default:all-unauthenticated"
        );
    }

    #[test]
    fn broken_resources_are_named() {
        let cases = [
            (
                "servers: {s: {deployment: nope, port: 1}}",
                "server s: there is no deployment nope",
            ),
            (
                "servers: {a: {deployment: web, port: 1}, b: {deployment: web, port: 1}}",
                "already selected by server a",
            ),
            (
                "http_routes: {r: {server: nope}}",
                "http_route r: there is no server nope",
            ),
            (
                "authorization_policies: {p: {target: {server: nope}}}",
                "authorization_policy p: there is no server nope",
            ),
            (
                "authorization_policies: {p: {target: {namespace: other}}}",
                "own namespace only",
            ),
            (
                "authorization_policies: {p: {target: {namespace: demo}, required_authentications: [{mesh_tls: nope}]}}",
                "no mesh_tls_authentication nope",
            ),
            (
                "network_authentications: {n: {networks: [{cidr: 10.0.0.0/33}]}}\n      authorization_policies: {p: {target: {namespace: demo}, required_authentications: [{network: n}]}}",
                "n: invalid network",
            ),
            (
                "mesh_tls_authentications: {m: {identities: [\"Bad Name\"]}}\n      authorization_policies: {p: {target: {namespace: demo}, required_authentications: [{mesh_tls: m}]}}",
                "is not a mesh identity",
            ),
            (
                "network_authentications: {n: {networks: []}}\n      authorization_policies: {p: {target: {namespace: demo}, required_authentications: [{network: n}]}}",
                "n: name at least one network",
            ),
            (
                "mesh_tls_authentications: {m: {namespaces: [Ops]}}\n      authorization_policies: {p: {target: {namespace: demo}, required_authentications: [{mesh_tls: m}]}}",
                "m: namespace: ",
            ),
            (
                "servers: {s: {deployment: web, port: 1}}\n      http_routes: {r: {server: s, matches: [{path: {regex: \"(\"}}]}}",
                "http_route r: path regex",
            ),
        ];
        for (policy, want) in cases {
            let err = index(&format!("{HEAD}    policy:\n      {policy}\n")).unwrap_err();
            assert!(err.contains(want), "{policy}: {err}");
            assert!(err.starts_with("namespace demo: policy"), "{err}");
        }
    }
}
