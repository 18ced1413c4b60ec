//! A port's policy as the inbound side checks it: compiled once from the
//! controller's `Server` (networks parsed, regexes built, service accounts
//! turned into identity names), then consulted per connection (TCP) or per
//! request (HTTP) without allocating.

use std::net::IpAddr;
use std::sync::Arc;

use conduit_api::IdentityName;
use conduit_api::identity::IDENTITY_INFIX;
use conduit_api::policy::{Cidr, identity_matches};
use conduit_api::proto::policy::v1 as pb;
use http::Method;
use http::Request;

/// Who is asking: the address it connects from and the identity it proved.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    pub ip: IpAddr,
    pub identity: Option<&'a str>,
}

/// The outcome of a check, with the names its counters carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// A denial let through because the target is in audit mode.
    pub(crate) audited: bool,
    pub(crate) server: Arc<str>,
    pub(crate) route: Arc<str>,
    /// The authorization that admitted the client; empty when none did.
    pub(crate) authorization: Arc<str>,
}

#[derive(Debug)]
pub struct PortPolicy {
    name: Arc<str>,
    pub(crate) protocol: pb::ProxyProtocol,
    authorizations: Vec<Authorization>,
    routes: Vec<Route>,
    audit: bool,
}

#[derive(Debug)]
struct Route {
    name: Arc<str>,
    matches: Vec<RouteMatch>,
    authorizations: Vec<Authorization>,
    audit: bool,
}

#[derive(Debug)]
struct RouteMatch {
    path: Option<PathMatch>,
    method: Option<Method>,
    headers: Vec<(http::HeaderName, String)>,
}

#[derive(Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

#[derive(Debug)]
struct Authorization {
    name: Arc<str>,
    /// Empty: any address.
    networks: Vec<(Cidr, Vec<Cidr>)>,
    authentication: Authentication,
}

#[derive(Debug)]
enum Authentication {
    Unauthenticated,
    /// Any identity when all are empty.
    Tls {
        patterns: Vec<String>,
        /// `.<ns>.serviceaccount.identity.conduit.<trust domain>`
        namespace_suffixes: Vec<String>,
        names: Vec<String>,
    },
}

/// The route every request of a Server without routes is on.
const DEFAULT_ROUTE: &str = "default";

impl PortPolicy {
    /// Compiles the controller's (or the default policy's) `Server`;
    /// service accounts are named in `trust_domain`.
    /// The policy as `conduit diagnostics policy` shows it: route-level
    /// authorizations as `route/authorization`.
    pub(crate) fn diagnostics(
        &self,
        port: u16,
        source: &str,
    ) -> conduit_api::proto::diagnostics::v1::PortPolicy {
        let mut authorizations: Vec<String> = self
            .authorizations
            .iter()
            .map(|a| a.name.to_string())
            .collect();
        for r in &self.routes {
            authorizations.extend(
                r.authorizations
                    .iter()
                    .map(|a| format!("{}/{}", r.name, a.name)),
            );
        }
        conduit_api::proto::diagnostics::v1::PortPolicy {
            port: u32::from(port),
            server: self.name.to_string(),
            source: source.to_string(),
            protocol: self.protocol.as_str_name().to_ascii_lowercase(),
            routes: self.routes.iter().map(|r| r.name.to_string()).collect(),
            authorizations,
            audit: self.audit,
        }
    }

    pub fn compile(server: &pb::Server, trust_domain: &str) -> Result<Self, String> {
        let authorizations = |list: &[pb::Authorization]| {
            list.iter()
                .map(|a| Authorization::compile(a, trust_domain))
                .collect::<Result<Vec<_>, _>>()
        };
        let routes = server
            .routes
            .iter()
            .map(|r| {
                Ok(Route {
                    name: r.name.as_str().into(),
                    matches: r
                        .matches
                        .iter()
                        .map(RouteMatch::compile)
                        .collect::<Result<_, String>>()?,
                    authorizations: authorizations(&r.authorizations)?,
                    audit: r.audit,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            name: server.name.as_str().into(),
            protocol: pb::ProxyProtocol::try_from(server.protocol)
                .unwrap_or(pb::ProxyProtocol::Detect),
            authorizations: authorizations(&server.authorizations)?,
            routes,
            audit: server.audit,
        })
    }

    /// A TCP connection: the Server's own authorizations.
    pub fn connection(&self, client: Client<'_>) -> Decision {
        let admitted = admit(&self.authorizations, client);
        self.decide(admitted, self.audit, DEFAULT_ROUTE.into())
    }

    /// An HTTP request: the Server's authorizations and those of the first
    /// route it matches. With routes declared, a request on none of them is
    /// denied.
    pub fn request<B>(&self, client: Client<'_>, req: &Request<B>) -> Decision {
        if self.routes.is_empty() {
            return self.connection(client);
        }
        let Some(route) = self.routes.iter().find(|r| r.matches(req)) else {
            return self.decide(None, self.audit, "".into());
        };
        let admitted =
            admit(&self.authorizations, client).or_else(|| admit(&route.authorizations, client));
        self.decide(admitted, self.audit || route.audit, route.name.clone())
    }

    fn decide(&self, admitted: Option<&Arc<str>>, audit: bool, route: Arc<str>) -> Decision {
        Decision {
            allowed: admitted.is_some() || audit,
            audited: admitted.is_none() && audit,
            server: self.name.clone(),
            route,
            authorization: admitted.cloned().unwrap_or_default(),
        }
    }
}

fn admit<'a>(list: &'a [Authorization], client: Client<'_>) -> Option<&'a Arc<str>> {
    list.iter().find(|a| a.admits(client)).map(|a| &a.name)
}

impl Authorization {
    fn compile(a: &pb::Authorization, trust_domain: &str) -> Result<Self, String> {
        let networks = a
            .networks
            .iter()
            .map(|n| {
                let except = n
                    .except
                    .iter()
                    .map(|e| e.parse())
                    .collect::<Result<_, _>>()?;
                Ok((n.cidr.parse()?, except))
            })
            .collect::<Result<_, String>>()?;
        let permit = a.authentication.as_ref().and_then(|a| a.permit.as_ref());
        let authentication = match permit {
            Some(pb::authentication::Permit::Tls(tls)) => Authentication::Tls {
                patterns: tls.identities.clone(),
                namespace_suffixes: tls
                    .namespaces
                    .iter()
                    .map(|ns| format!(".{ns}.{IDENTITY_INFIX}.{trust_domain}"))
                    .collect(),
                names: tls
                    .service_accounts
                    .iter()
                    .map(|sa| {
                        IdentityName::in_domain(&sa.name, &sa.namespace, trust_domain).to_string()
                    })
                    .collect(),
            },
            Some(pb::authentication::Permit::Unauthenticated(_)) => Authentication::Unauthenticated,
            None => return Err(format!("authorization {:?} has no authentication", a.name)),
        };
        Ok(Self {
            name: a.name.as_str().into(),
            networks,
            authentication,
        })
    }

    fn admits(&self, client: Client<'_>) -> bool {
        let from_network = self.networks.is_empty()
            || self.networks.iter().any(|(net, except)| {
                net.contains(client.ip) && !except.iter().any(|e| e.contains(client.ip))
            });
        from_network && self.authentication.admits(client.identity)
    }
}

impl Authentication {
    fn admits(&self, identity: Option<&str>) -> bool {
        let (patterns, namespace_suffixes, names) = match self {
            Self::Unauthenticated => return true,
            Self::Tls {
                patterns,
                namespace_suffixes,
                names,
            } => (patterns, namespace_suffixes, names),
        };
        let Some(id) = identity else {
            return false;
        };
        if patterns.is_empty() && namespace_suffixes.is_empty() && names.is_empty() {
            return true;
        }
        patterns.iter().any(|p| identity_matches(p, id))
            || names.iter().any(|n| n == id)
            || namespace_suffixes.iter().any(|suffix| {
                // One label (the service account) before the namespace.
                id.strip_suffix(suffix.as_str())
                    .is_some_and(|sa| !sa.is_empty() && !sa.contains('.'))
            })
    }
}

impl RouteMatch {
    fn compile(m: &pb::RouteMatch) -> Result<Self, String> {
        use pb::path_match::Kind;
        let path = match m.path.as_ref().and_then(|p| p.kind.as_ref()) {
            None => None,
            Some(Kind::Exact(p)) => Some(PathMatch::Exact(p.clone())),
            Some(Kind::Prefix(p)) => Some(PathMatch::Prefix(p.clone())),
            Some(Kind::Regex(r)) => Some(PathMatch::Regex(
                regex::Regex::new(&format!("^(?:{r})$")).map_err(|e| format!("{r:?}: {e}"))?,
            )),
        };
        let method = match m.method.as_str() {
            "" => None,
            m => Some(Method::from_bytes(m.as_bytes()).map_err(|e| format!("{m:?}: {e}"))?),
        };
        let headers = m
            .headers
            .iter()
            .map(|h| {
                let name = http::HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|e| format!("{:?}: {e}", h.name))?;
                Ok((name, h.value.clone()))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            path,
            method,
            headers,
        })
    }

    fn matches<B>(&self, req: &Request<B>) -> bool {
        let path = req.uri().path();
        let path_ok = match &self.path {
            None => true,
            Some(PathMatch::Exact(p)) => path == p,
            // On segment boundaries, as Gateway API prefixes match.
            Some(PathMatch::Prefix(p)) => path
                .strip_prefix(p.trim_end_matches('/'))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            Some(PathMatch::Regex(r)) => r.is_match(path),
        };
        path_ok
            && self.method.as_ref().is_none_or(|m| m == req.method())
            && self.headers.iter().all(|(name, value)| {
                req.headers()
                    .get_all(name)
                    .iter()
                    .any(|v| v.as_bytes() == value.as_bytes())
            })
    }
}

impl Route {
    fn matches<B>(&self, req: &Request<B>) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: &str = "cluster.local";

    fn tls(identities: &[&str], namespaces: &[&str], sas: &[(&str, &str)]) -> pb::Authorization {
        pb::Authorization {
            name: "a".into(),
            networks: vec![pb::Network {
                cidr: "127.0.0.0/8".into(),
                except: vec!["127.0.0.2".into()],
            }],
            authentication: Some(pb::Authentication {
                permit: Some(pb::authentication::Permit::Tls(pb::authentication::Tls {
                    identities: identities.iter().map(|s| s.to_string()).collect(),
                    namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                    service_accounts: sas
                        .iter()
                        .map(|(name, namespace)| pb::authentication::ServiceAccount {
                            name: name.to_string(),
                            namespace: namespace.to_string(),
                        })
                        .collect(),
                })),
            }),
        }
    }

    fn server(authorizations: Vec<pb::Authorization>, routes: Vec<pb::HttpRoute>) -> PortPolicy {
        PortPolicy::compile(
            &pb::Server {
                name: "s".into(),
                authorizations,
                routes,
                ..Default::default()
            },
            TD,
        )
        .unwrap()
    }

    fn client<'a>(ip: &str, identity: Option<&'a str>) -> Client<'a> {
        Client {
            ip: ip.parse().unwrap(),
            identity,
        }
    }

    #[test]
    fn mesh_tls_admits_identities_namespaces_and_service_accounts() {
        let voting = IdentityName::new("voting", "demo").to_string();
        let web = IdentityName::new("web", "demo").to_string();
        let other = IdentityName::new("web", "other").to_string();
        let by_ns = server(vec![tls(&[], &["demo"], &[])], vec![]);
        assert!(by_ns.connection(client("127.0.0.1", Some(&web))).allowed);
        assert!(!by_ns.connection(client("127.0.0.1", Some(&other))).allowed);
        assert!(!by_ns.connection(client("127.0.0.1", None)).allowed);
        let by_sa = server(vec![tls(&[], &[], &[("voting", "demo")])], vec![]);
        assert!(by_sa.connection(client("127.0.0.1", Some(&voting))).allowed);
        assert!(!by_sa.connection(client("127.0.0.1", Some(&web))).allowed);
        let any = server(vec![tls(&[], &[], &[])], vec![]);
        assert!(any.connection(client("127.0.0.1", Some(&other))).allowed);
        // Networks, with their exceptions, hold as well as the identity.
        assert!(!any.connection(client("127.0.0.2", Some(&other))).allowed);
        assert!(!any.connection(client("10.0.0.1", Some(&other))).allowed);
    }

    #[test]
    fn routes_match_paths_methods_and_headers() {
        use pb::path_match::Kind;
        let route =
            |name: &str, kind: Kind, method: &str, headers: Vec<pb::HeaderMatch>| pb::HttpRoute {
                name: name.into(),
                matches: vec![pb::RouteMatch {
                    path: Some(pb::PathMatch { kind: Some(kind) }),
                    method: method.into(),
                    headers,
                }],
                authorizations: vec![tls(&["*"], &[], &[])],
                audit: false,
            };
        let p = server(
            vec![],
            vec![
                route("list", Kind::Exact("/api/list".into()), "GET", vec![]),
                route("vote", Kind::Prefix("/api/vote/".into()), "", vec![]),
                route(
                    "id",
                    Kind::Regex("/item/[0-9]+".into()),
                    "",
                    vec![pb::HeaderMatch {
                        name: "x-team".into(),
                        value: "a".into(),
                    }],
                ),
            ],
        );
        let id = IdentityName::new("web", "demo").to_string();
        let check = |method: &str, path: &str, header: Option<&str>| {
            let mut req = Request::builder().method(method).uri(path);
            if let Some(h) = header {
                req = req.header("x-team", h);
            }
            p.request(client("127.0.0.1", Some(&id)), &req.body(()).unwrap())
        };
        assert_eq!(&*check("GET", "/api/list", None).route, "list");
        assert!(check("GET", "/api/list", None).allowed);
        assert!(!check("POST", "/api/list", None).allowed, "wrong method");
        assert_eq!(&*check("POST", "/api/vote", None).route, "vote");
        assert_eq!(&*check("POST", "/api/vote/7", None).route, "vote");
        assert!(
            !check("POST", "/api/voter", None).allowed,
            "prefixes end at a segment"
        );
        assert!(check("GET", "/item/12", Some("a")).allowed);
        assert!(!check("GET", "/item/12", Some("b")).allowed);
        assert!(
            !check("GET", "/item/12x", Some("a")).allowed,
            "regexes are anchored"
        );
        // On no route: denied, with no route name.
        assert_eq!(&*check("GET", "/else", None).route, "");
    }
}
