//! The tap filter: which requests a live tap or a tap search wants.
//!
//! One rule, used in three places: the proxy picks the requests it streams
//! to a live tap, the controller re-checks what the proxies send, and a
//! search hands the telemetry store the same rule written in the store's
//! query language ([`Filter::to_query`]). So a filter matches the same
//! requests live and in the history, and a search can ask the store for
//! exactly as many events as it returns.
//!
//! Every set field must match; an unset field matches anything:
//! - `direction`: the side of the proxy that handled the request;
//! - `path_prefix`: a prefix of the path, byte for byte;
//! - `method`: the method as sent (HTTP methods are case-sensitive);
//! - `authority`: `host:port`, or a bare `host` for any port of it. Proxies
//!   record authorities in lowercase, so the filter's is lowercased too;
//! - `source`, `destination`: a Deployment (`namespace/name`), or every
//!   Deployment of a namespace when only the namespace is given.

use std::fmt::Write as _;

use crate::deployment::{ParseError, validate_name, validate_namespace};
use crate::proto::mesh::v1 as mesh;
use crate::proto::tap::v1 as pb;
use crate::{DeploymentRef, Direction};

/// A validated tap filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    direction: Option<Direction>,
    path_prefix: String,
    method: Option<String>,
    authority: Option<String>,
    source: Option<Workloads>,
    destination: Option<Workloads>,
}

/// A Deployment, or every Deployment of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Workloads {
    namespace: Option<String>,
    name: Option<String>,
}

/// One side of a request: the Deployment its proxy belongs to, if known.
#[derive(Clone, Copy, Debug, Default)]
pub struct Workload<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// What a filter looks at: the same whether the request is starting in a
/// proxy or is an event in the tap history.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub direction: Option<Direction>,
    pub method: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub source: Option<Workload<'a>>,
    pub destination: Option<Workload<'a>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("unknown direction {0} (use 0 = any, 1 = inbound, 2 = outbound)")]
    Direction(i32),
    #[error("path filter {0:?} must be a path starting with '/'")]
    Path(String),
    #[error("method filter {0:?} is not an HTTP method in capitals (e.g. GET, POST)")]
    Method(String),
    #[error("authority filter {0:?} is not host[:port]")]
    Authority(String),
    #[error("{0} filter: {1}")]
    Workload(&'static str, crate::deployment::ParseError),
}

impl TryFrom<pb::Filter> for Filter {
    type Error = FilterError;

    fn try_from(f: pb::Filter) -> Result<Self, FilterError> {
        Ok(Self {
            direction: direction(f.direction)?,
            path_prefix: path_prefix(f.path_prefix)?,
            method: method(f.method)?,
            authority: authority(f.authority)?,
            source: workloads("source", f.source)?,
            destination: workloads("destination", f.destination)?,
        })
    }
}

fn direction(d: i32) -> Result<Option<Direction>, FilterError> {
    match mesh::Direction::try_from(d) {
        Ok(mesh::Direction::Unspecified) => Ok(None),
        Ok(d) => Ok(Direction::try_from(d).ok()),
        Err(_) => Err(FilterError::Direction(d)),
    }
}

fn path_prefix(p: String) -> Result<String, FilterError> {
    let is_path = p.is_empty()
        || (p.starts_with('/') && !p.contains(['?', '#']) && p.parse::<http::Uri>().is_ok());
    if is_path {
        Ok(p)
    } else {
        Err(FilterError::Path(p))
    }
}

fn method(m: String) -> Result<Option<String>, FilterError> {
    if m.is_empty() {
        return Ok(None);
    }
    let token = http::Method::from_bytes(m.as_bytes()).is_ok();
    if !token || m.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(FilterError::Method(m));
    }
    Ok(Some(m))
}

/// A DNS name or an IP address, with an optional port: the authorities
/// proxies record (a URI's reg-name may hold more, which no service is
/// called by).
fn authority(a: String) -> Result<Option<String>, FilterError> {
    if a.is_empty() {
        return Ok(None);
    }
    let host_chars = |b: u8| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b);
    match a.parse::<http::uri::Authority>() {
        Ok(parsed) if parsed.as_str().len() == a.len() && a.bytes().all(host_chars) => {
            Ok(Some(a.to_ascii_lowercase()))
        }
        _ => Err(FilterError::Authority(a)),
    }
}

fn workloads(
    what: &'static str,
    d: Option<mesh::DeploymentRef>,
) -> Result<Option<Workloads>, FilterError> {
    let Some(d) = d else { return Ok(None) };
    let part = |s: String, valid: fn(&str) -> Result<(), ParseError>| {
        if s.is_empty() {
            return Ok(None);
        }
        valid(&s).map_err(|e| FilterError::Workload(what, e))?;
        Ok(Some(s))
    };
    let w = Workloads {
        namespace: part(d.namespace, validate_namespace)?,
        name: part(d.name, validate_name)?,
    };
    Ok((w.namespace.is_some() || w.name.is_some()).then_some(w))
}

impl Filter {
    /// Whether every set field matches the request.
    pub fn matches(&self, r: &Request<'_>) -> bool {
        self.direction.is_none_or(|d| r.direction == Some(d))
            && r.path.starts_with(&self.path_prefix)
            && self.method.as_ref().is_none_or(|m| m == r.method)
            && self
                .authority
                .as_ref()
                .is_none_or(|a| authority_matches(a, r.authority))
            && workloads_match(&self.source, r.source)
            && workloads_match(&self.destination, r.destination)
    }

    /// The same rule in the telemetry store's tap query language: an event
    /// of the history matches the query exactly when [`Filter::matches`]
    /// accepts it. Empty for the empty filter.
    pub fn to_query(&self) -> String {
        let mut terms = Vec::new();
        if let Some(d) = self.direction {
            terms.push(format!("direction:{d}"));
        }
        if !self.path_prefix.is_empty() {
            terms.push(format!("path:/{}.*/", escape_regex(&self.path_prefix)));
        }
        if let Some(m) = &self.method {
            terms.push(format!("method:\"{m}\""));
        }
        if let Some(a) = &self.authority {
            terms.push(authority_query(a));
        }
        for (side, w) in [("src", &self.source), ("dst", &self.destination)] {
            if let Some(w) = w {
                terms.push(workloads_query(side, w));
            }
        }
        terms.join(" AND ")
    }

    /// A search of the history: `query` (the store's language) restricted
    /// to the filter's events and, when given, to those with `involving` on
    /// either side.
    pub fn search_query(&self, query: &str, involving: Option<&DeploymentRef>) -> String {
        let mut parts: Vec<String> = [
            self.to_query(),
            involving.map(involving_query).unwrap_or_default(),
        ]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
        if !query.trim().is_empty() {
            let query = if parts.is_empty() {
                query.to_string()
            } else {
                format!("({query})")
            };
            parts.insert(0, query);
        }
        parts.join(" AND ")
    }
}

fn involving_query(d: &DeploymentRef) -> String {
    let w = Workloads {
        namespace: Some(d.namespace.clone()),
        name: Some(d.name.clone()),
    };
    format!(
        "({} OR {})",
        workloads_query("src", &w),
        workloads_query("dst", &w)
    )
}

/// A bare host matches that host on any port.
fn authority_matches(want: &str, have: &str) -> bool {
    if want == have {
        return true;
    }
    if has_port(want) {
        return false;
    }
    have.rsplit_once(':')
        .is_some_and(|(host, port)| host == want && is_port(port))
}

fn has_port(authority: &str) -> bool {
    authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| is_port(port))
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn authority_query(a: &str) -> String {
    let exact = format!("authority:\"{a}\"");
    if has_port(a) {
        return exact;
    }
    format!("({exact} OR authority:/{}:[0-9]+/)", escape_regex(a))
}

fn workloads_match(want: &Option<Workloads>, have: Option<Workload<'_>>) -> bool {
    let Some(want) = want else { return true };
    let Some(have) = have else { return false };
    want.namespace.as_ref().is_none_or(|n| n == have.namespace)
        && want.name.as_ref().is_none_or(|n| n == have.name)
}

fn workloads_query(side: &str, w: &Workloads) -> String {
    let mut q = String::from("(");
    let parts = [("namespace", &w.namespace), ("deployment", &w.name)];
    for (field, value) in parts.iter().filter_map(|(f, v)| Some((f, v.as_ref()?))) {
        if q.len() > 1 {
            q.push_str(" AND ");
        }
        let _ = write!(q, "{side}_{field}:\"{value}\"");
    }
    q.push(')');
    q
}

/// Escapes text for a `/regex/` term of the store's query language: every
/// regex operator, and the `/` that would end the term.
pub fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '/' || "\\.+*?()|[]{}^$#&-~\"<>@".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl<'a> Request<'a> {
    /// The request an event of the tap stream or history describes.
    pub fn of_event(e: &'a pb::TapEvent) -> Self {
        let side = |p: &'a Option<pb::Peer>| {
            let d = p.as_ref()?.deployment.as_ref()?;
            Some(Workload {
                namespace: &d.namespace,
                name: &d.name,
            })
        };
        Self {
            direction: mesh::Direction::try_from(e.direction)
                .ok()
                .and_then(|d| Direction::try_from(d).ok()),
            method: &e.method,
            authority: &e.authority,
            path: &e.path,
            source: side(&e.source),
            destination: side(&e.destination),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(f: pb::Filter) -> Filter {
        Filter::try_from(f).unwrap()
    }

    fn request<'a>(path: &'a str, authority: &'a str) -> Request<'a> {
        Request {
            direction: Some(Direction::Outbound),
            method: "GET",
            authority,
            path,
            source: Some(Workload {
                namespace: "demo",
                name: "web",
            }),
            destination: None,
        }
    }

    #[test]
    fn every_set_field_must_match() {
        let r = request("/api/vote", "voting.demo:8080");
        assert!(filter(pb::Filter::default()).matches(&r));
        let f = |f: pb::Filter| filter(f).matches(&r);
        assert!(f(pb::Filter {
            path_prefix: "/api".into(),
            method: "GET".into(),
            direction: mesh::Direction::Outbound.into(),
            ..Default::default()
        }));
        assert!(!f(pb::Filter {
            path_prefix: "/API".into(),
            ..Default::default()
        }));
        assert!(!f(pb::Filter {
            direction: mesh::Direction::Inbound.into(),
            ..Default::default()
        }));
        assert!(!f(pb::Filter {
            method: "POST".into(),
            ..Default::default()
        }));
    }

    #[test]
    fn a_bare_host_matches_any_port_and_case_is_folded() {
        let r = request("/", "voting.demo:8080");
        let f = |a: &str| {
            filter(pb::Filter {
                authority: a.into(),
                ..Default::default()
            })
            .matches(&r)
        };
        assert!(f("voting.demo:8080"));
        assert!(f("Voting.Demo"));
        assert!(f("voting.demo"));
        assert!(!f("voting.demo:80"));
        assert!(!f("voting"));
        assert!(!f("demo:8080"));
        let v6 = request("/", "[::1]:80");
        let f6 = filter(pb::Filter {
            authority: "[::1]".into(),
            ..Default::default()
        });
        assert!(f6.matches(&v6));
    }

    #[test]
    fn a_namespace_alone_selects_its_deployments() {
        let r = request("/", "a:80");
        let side = |namespace: &str, name: &str| {
            filter(pb::Filter {
                source: Some(mesh::DeploymentRef {
                    namespace: namespace.into(),
                    name: name.into(),
                }),
                ..Default::default()
            })
            .matches(&r)
        };
        assert!(side("demo", "web"));
        assert!(side("demo", ""));
        assert!(side("", "web"));
        assert!(!side("prod", ""));
        assert!(!side("demo", "voting"));
        let dst = filter(pb::Filter {
            destination: Some(mesh::DeploymentRef {
                namespace: "demo".into(),
                name: String::new(),
            }),
            ..Default::default()
        });
        assert!(!dst.matches(&r), "an unknown side matches no selector");
    }

    #[test]
    fn malformed_filters_are_refused_with_their_reason() {
        for (bad, want) in [
            (
                pb::Filter {
                    path_prefix: "api".into(),
                    ..Default::default()
                },
                "must be a path",
            ),
            (
                pb::Filter {
                    method: "get".into(),
                    ..Default::default()
                },
                "in capitals",
            ),
            (
                pb::Filter {
                    authority: "a b".into(),
                    ..Default::default()
                },
                "host[:port]",
            ),
            (
                pb::Filter {
                    authority: "we((b.demo".into(),
                    ..Default::default()
                },
                "host[:port]",
            ),
            (
                pb::Filter {
                    direction: 7,
                    ..Default::default()
                },
                "unknown direction",
            ),
            (
                pb::Filter {
                    destination: Some(mesh::DeploymentRef {
                        namespace: "demo".into(),
                        name: "Web".into(),
                    }),
                    ..Default::default()
                },
                "destination filter",
            ),
        ] {
            let err = Filter::try_from(bad).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn queries_spell_each_field() {
        let f = filter(pb::Filter {
            direction: mesh::Direction::Inbound.into(),
            path_prefix: "/a.b(c)".into(),
            method: "GET".into(),
            authority: "web.demo".into(),
            source: Some(mesh::DeploymentRef {
                namespace: "demo".into(),
                name: String::new(),
            }),
            ..Default::default()
        });
        assert_eq!(
            f.to_query(),
            "direction:inbound AND path:/\\/a\\.b\\(c\\).*/ AND method:\"GET\" AND \
             (authority:\"web.demo\" OR authority:/web\\.demo:[0-9]+/) AND (src_namespace:\"demo\")"
        );
        assert_eq!(f.search_query("", None), f.to_query());
        let none = Filter::default();
        assert_eq!(none.search_query("status:500", None), "status:500");
        let web = DeploymentRef::new("demo", "web");
        assert_eq!(
            none.search_query("status:500", Some(&web)),
            "(status:500) AND ((src_namespace:\"demo\" AND src_deployment:\"web\") OR \
             (dst_namespace:\"demo\" AND dst_deployment:\"web\"))"
        );
        let get = filter(pb::Filter {
            method: "GET".into(),
            ..Default::default()
        });
        assert_eq!(
            get.search_query("status:500", None),
            "(status:500) AND method:\"GET\""
        );
    }
}
