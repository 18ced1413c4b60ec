//! `Authz`: a Deployment's inbound policy as the proxies enforce it, and
//! what it allowed and denied over a window (like `linkerd viz authz`).
//!
//! The rows come from two places that must agree: the policy index (every
//! Server of the Deployment, each route, each authorization that applies
//! to it, and the default policy of the other ports), so a policy that
//! never matched still shows; and the proxies' counters
//! (`inbound_{http,tcp}_authz_{allow,deny}_total`, by `srv_name`,
//! `route_name`, `authz_name`, `audit`), so what was enforced shows even
//! where the policy changed since.

use std::collections::BTreeMap;

use conduit_api::DeploymentRef;
use conduit_api::metrics::family;
use conduit_api::metrics::labels::{Authz, Label};
use conduit_api::proto::policy::v1 as policy;
use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::store::v1 as store;
use tonic::Status;

use super::{PublicApi, deployment_arg, not_found, time_range};
use crate::policy::PolicyIndex;

/// The route every request of a Server without routes is on (as the
/// proxy names it).
const DEFAULT_ROUTE: &str = "default";

/// Rows by (server, route, authorization).
type Rows = BTreeMap<(String, String, String), pb::AuthzRow>;

impl PublicApi {
    pub(super) async fn authz_rows(
        &self,
        req: pb::AuthzRequest,
    ) -> Result<pb::AuthzResponse, Status> {
        let d = deployment_arg("deployment", req.deployment)?;
        let range = time_range(
            req.window,
            req.start_unix_ms,
            req.end_unix_ms,
            super::DEFAULT_WINDOW,
        )?;
        let snap = self.snapshot();
        if !snap.deployments.contains_key(&d) {
            return Err(not_found(&d));
        }
        let mut rows = configured(&snap.policy, &d);
        self.within_retention(&range).await?;
        let w = format!("{}ms", range.end_ms - range.start_ms);
        let (allowed, denied) = tokio::try_join!(
            self.metrics()
                .instant_at(counts_query(&d, "allow", &w), range.end_ms),
            self.metrics()
                .instant_at(counts_query(&d, "deny", &w), range.end_ms),
        )?;
        for s in &allowed {
            let audited =
                family::INBOUND_HTTP_AUTHZ_ALLOW_TOTAL.label(&s.labels, Authz::Audit) == "true";
            let row = observed(&mut rows, s);
            let v = last(s);
            if audited {
                row.audited += v;
            } else {
                row.allowed += v;
            }
        }
        for s in &denied {
            let v = last(s);
            observed(&mut rows, s).denied += v;
        }
        Ok(pb::AuthzResponse {
            default_policy: snap.policy.default_for(&d).to_string(),
            rows: rows.into_values().collect(),
            start_unix_ms: range.start_ms,
            end_unix_ms: range.end_ms,
        })
    }
}

/// Every authorization of every route of the Deployment's Servers, then
/// the default policy's (port 0: every port no Server selects); one
/// row per route for what none admits.
fn configured(index: &PolicyIndex, d: &DeploymentRef) -> Rows {
    let mut rows = Rows::new();
    let servers = index
        .servers_of(d)
        .map(|(port, s)| (u32::from(port), s.clone()))
        .chain([(0, index.default_server(d))]);
    for (port, server) in servers {
        let routes: Vec<(&str, Vec<&policy::Authorization>)> = if server.routes.is_empty() {
            vec![(DEFAULT_ROUTE, server.authorizations.iter().collect())]
        } else {
            server
                .routes
                .iter()
                .map(|r| {
                    let authz = server
                        .authorizations
                        .iter()
                        .chain(&r.authorizations)
                        .collect();
                    (r.name.as_str(), authz)
                })
                .collect()
        };
        for (route, authorizations) in routes {
            for a in authorizations
                .into_iter()
                .chain([&policy::Authorization::default()])
            {
                let row = pb::AuthzRow {
                    server: server.name.clone(),
                    port,
                    route: route.to_string(),
                    authorization: a.name.clone(),
                    admits: admits(a),
                    ..Default::default()
                };
                rows.insert(key(&row), row);
            }
        }
    }
    rows
}

fn key(row: &pb::AuthzRow) -> (String, String, String) {
    (
        row.server.clone(),
        row.route.clone(),
        row.authorization.clone(),
    )
}

/// The row a counter series belongs to, made when the policy no longer
/// names it (it changed within the window).
fn observed<'a>(rows: &'a mut Rows, s: &store::Series) -> &'a mut pb::AuthzRow {
    // Allow and deny counters carry the same labels.
    let label_of = |l| {
        family::INBOUND_HTTP_AUTHZ_ALLOW_TOTAL
            .label(&s.labels, l)
            .to_string()
    };
    let row = pb::AuthzRow {
        server: label_of(Authz::SrvName),
        route: label_of(Authz::RouteName),
        authorization: label_of(Authz::AuthzName),
        ..Default::default()
    };
    let port = rows
        .values()
        .find(|r| r.server == row.server)
        .map_or(0, |r| r.port);
    rows.entry(key(&row))
        .or_insert(pb::AuthzRow { port, ..row })
}

fn last(s: &store::Series) -> f64 {
    s.samples
        .last()
        .map(|p| p.value)
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

/// What the Deployment's proxies allowed (`outcome` = `allow`) or denied,
/// HTTP and TCP together, over `w`.
fn counts_query(d: &DeploymentRef, outcome: &str, w: &str) -> String {
    let (http, tcp) = match outcome {
        "allow" => (
            family::INBOUND_HTTP_AUTHZ_ALLOW_TOTAL,
            family::INBOUND_TCP_AUTHZ_ALLOW_TOTAL,
        ),
        _ => (
            family::INBOUND_HTTP_AUTHZ_DENY_TOTAL,
            family::INBOUND_TCP_AUTHZ_DENY_TOTAL,
        ),
    };
    let (http, tcp) = (http.name(), tcp.name());
    format!(
        "sum by ({}, {}, {}, {}) (increase({{__name__=~\"{http}|{tcp}\",{}=\"{}\",{}=\"{}\"}}[{w}]))",
        Authz::SrvName.name(),
        Authz::RouteName.name(),
        Authz::AuthzName.name(),
        Authz::Audit.name(),
        Authz::Namespace.name(),
        d.namespace,
        Authz::Deployment.name(),
        d.name,
    )
}

/// Whom an authorization admits, in words; empty for the row of what no
/// authorization admits.
fn admits(a: &policy::Authorization) -> String {
    use policy::authentication::Permit;
    let who = match a.authentication.as_ref().and_then(|x| x.permit.as_ref()) {
        None => return String::new(),
        Some(Permit::Unauthenticated(_)) => "anyone".to_string(),
        Some(Permit::Tls(tls)) => {
            let mut names: Vec<String> = tls.identities.clone();
            names.extend(tls.namespaces.iter().map(|ns| format!("namespace {ns}")));
            names.extend(
                tls.service_accounts
                    .iter()
                    .map(|sa| format!("serviceaccount {}/{}", sa.namespace, sa.name)),
            );
            match names.as_slice() {
                [] => "any mesh identity".to_string(),
                [one] if one == "*" => "any mesh identity".to_string(),
                _ => names.join(", "),
            }
        }
    };
    if a.networks.is_empty() {
        return who;
    }
    let networks: Vec<String> = a
        .networks
        .iter()
        .map(|n| {
            if n.except.is_empty() {
                n.cidr.clone()
            } else {
                format!("{} except {}", n.cidr, n.except.join(" "))
            }
        })
        .collect();
    format!("{who} from {}", networks.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::discovery_file::DiscoveryFile;

    fn index() -> PolicyIndex {
        let file: DiscoveryFile = serde_saphyr::from_str(
            "version: 1
namespaces:
  demo:
    deployments:
      web: {service_account: web}
      voting: {service_account: voting}
    policy:
      servers:
        web-http: {deployment: web, port: 8080}
      http_routes:
        list: {server: web-http, matches: [{path: {exact: /api/list}}]}
        vote: {server: web-http, matches: [{path: {prefix: /api/vote}}]}
      authorization_policies:
        voting-only:
          target: {http_route: vote}
          required_authentications: [{mesh_tls: voting}]
        anyone-lists:
          target: {http_route: list}
          required_authentications: [{network: lan}]
      mesh_tls_authentications:
        voting: {service_accounts: [{name: voting}]}
      network_authentications:
        lan: {networks: [{cidr: 10.0.0.0/8, except: [10.0.0.1]}]}
",
        )
        .unwrap();
        PolicyIndex::from_file(&file).unwrap()
    }

    #[test]
    fn every_route_lists_what_admits_it_and_a_row_for_its_denials() {
        let rows = configured(&index(), &DeploymentRef::new("demo", "web"));
        let got: Vec<(String, u32, String, String, String)> = rows
            .values()
            .map(|r| {
                (
                    r.server.clone(),
                    r.port,
                    r.route.clone(),
                    r.authorization.clone(),
                    r.admits.clone(),
                )
            })
            .collect();
        let row = |s: &str, p: u32, r: &str, a: &str, w: &str| {
            (
                s.to_string(),
                p,
                r.to_string(),
                a.to_string(),
                w.to_string(),
            )
        };
        assert!(
            got.contains(&row(
                "web-http",
                8080,
                "vote",
                "voting-only",
                "serviceaccount demo/voting"
            )),
            "{got:#?}"
        );
        assert!(
            got.contains(&row("web-http", 8080, "vote", "", "")),
            "{got:#?}"
        );
        assert!(
            got.contains(&row(
                "web-http",
                8080,
                "list",
                "anyone-lists",
                "anyone from 10.0.0.0/8 except 10.0.0.1"
            )),
            "{got:#?}"
        );
        // The other ports: the mesh default, which admits anyone.
        assert!(
            got.iter()
                .any(|(s, p, r, a, w)| s == "default:all-unauthenticated"
                    && *p == 0
                    && r == "default"
                    && !a.is_empty()
                    && w == "anyone"),
            "{got:#?}"
        );
        assert!(
            !got.iter()
                .any(|(_, _, r, a, _)| r == "list" && a == "voting-only"),
            "{got:#?}"
        );
    }

    #[test]
    fn counters_of_a_policy_since_removed_still_get_a_row_on_their_server() {
        let mut rows = configured(&index(), &DeploymentRef::new("demo", "web"));
        let series = store::Series {
            labels: [
                ("srv_name", "web-http"),
                ("route_name", "old"),
                ("authz_name", "gone"),
            ]
            .iter()
            .map(|(n, v)| conduit_api::proto::mesh::v1::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
            ..Default::default()
        };
        let row = observed(&mut rows, &series);
        assert_eq!(
            (row.port, row.route.as_str(), row.authorization.as_str()),
            (8080, "old", "gone")
        );
    }
}
