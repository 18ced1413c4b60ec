//! `Edges`: which Deployment talks to which, from the proxies' outbound
//! series (`deployment` → `dst_deployment`) seen in the last minutes, with
//! the identities the proxies proved and whether mTLS secured the traffic.

use std::collections::BTreeMap;

use conduit_api::metrics::family::{self, select_any};
use conduit_api::metrics::labels::Http;
use conduit_api::metrics::{NoTlsReason, Tls};
use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::store::v1 as store;
use conduit_api::{DeploymentRef, Direction};
use tonic::Status;

use super::{PublicApi, Scope};
use crate::store::now_unix_ms;

/// How far back a series counts as a live edge.
const EDGE_WINDOW_MS: i64 = 5 * 60_000;

/// Why an edge is plaintext when its series carry no reason.
pub(super) const NO_REASON: &str = "not secured: the client's proxy gave no reason";

/// Folds label sets of outbound series into one edge per (src, dst). The
/// HTTP and TCP families carry the same peer labels; they are read as the
/// HTTP family's.
pub(super) fn edges_of(series: &[store::LabelSet], scope: &Scope) -> Vec<pb::Edge> {
    let mut edges: BTreeMap<(DeploymentRef, DeploymentRef), pb::Edge> = BTreeMap::new();
    for s in series {
        let l = &s.labels;
        let label_of = |label| family::REQUEST_TOTAL.label(l, label);
        let src = DeploymentRef::new(label_of(Http::Namespace), label_of(Http::Deployment));
        let dst = DeploymentRef::new(label_of(Http::DstNamespace), label_of(Http::DstDeployment));
        if src.name.is_empty() || dst.name.is_empty() {
            continue;
        }
        if !(scope.contains(&src) || scope.contains(&dst)) {
            continue;
        }
        let secured = label_of(Http::Tls) == Tls::Secured.as_str();
        let reason = match NoTlsReason::parse(label_of(Http::NoTlsReason)) {
            _ if secured => String::new(),
            Some(r) => format!("{}: {}", r.as_str(), r.explain()),
            None => NO_REASON.to_string(),
        };
        let edge = edges
            .entry((src.clone(), dst.clone()))
            .or_insert_with(|| pb::Edge {
                src: Some(src.into()),
                dst: Some(dst.into()),
                client_id: String::new(),
                server_id: String::new(),
                secured: true,
                no_tls_reason: String::new(),
            });
        // One plaintext series makes the edge not (fully) secured.
        if !secured && edge.secured {
            edge.secured = false;
            edge.no_tls_reason = reason;
        }
        for (field, name) in [
            (&mut edge.client_id, Http::ClientId),
            (&mut edge.server_id, Http::ServerId),
        ] {
            if field.is_empty() {
                *field = label_of(name).to_string();
            }
        }
    }
    edges.into_values().collect()
}

impl PublicApi {
    pub(super) async fn edge_list(
        &self,
        req: pb::EdgesRequest,
    ) -> Result<pb::EdgesResponse, Status> {
        let scope = Scope::from_selector(req.selector)?;
        let end = now_unix_ms();
        let families = select_any(&[family::REQUEST_TOTAL.meta, family::TCP_OPEN_TOTAL.meta]);
        let outbound = family::REQUEST_TOTAL.eq(Http::Direction, Direction::Outbound.as_str());
        let series = self
            .store()
            .series(store::SeriesRequest {
                matchers: vec![families, outbound],
                start_unix_ms: end - EDGE_WINDOW_MS,
                end_unix_ms: end,
            })
            .await?;
        Ok(pb::EdgesResponse {
            edges: edges_of(&series, &scope),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::proto::mesh::v1::Label;

    fn set(pairs: &[(&str, &str)]) -> store::LabelSet {
        store::LabelSet {
            labels: pairs
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn one_edge_per_pair_and_plaintext_wins() {
        let series = [
            set(&[
                ("namespace", "demo"),
                ("deployment", "web"),
                ("dst_namespace", "demo"),
                ("dst_deployment", "voting"),
                ("tls", "true"),
                (
                    "server_id",
                    "voting.demo.serviceaccount.identity.conduit.cluster.local",
                ),
            ]),
            set(&[
                ("namespace", "demo"),
                ("deployment", "web"),
                ("dst_namespace", "demo"),
                ("dst_deployment", "voting"),
                ("tls", "no_identity"),
                ("no_tls_reason", "not_provided_by_service_discovery"),
            ]),
            set(&[
                ("namespace", "demo"),
                ("deployment", "web"),
                ("dst_namespace", "demo"),
                ("dst_deployment", "emoji"),
                ("tls", "true"),
            ]),
            set(&[
                ("namespace", "demo"),
                ("deployment", "web"),
                ("authority", "example.com"),
            ]),
            set(&[
                ("namespace", "other"),
                ("deployment", "a"),
                ("dst_namespace", "other"),
                ("dst_deployment", "b"),
            ]),
        ];
        let scope = Scope {
            namespace: Some("demo".into()),
            name: None,
        };
        let edges = edges_of(&series, &scope);
        assert_eq!(edges.len(), 2);
        let emoji = &edges[0];
        assert_eq!(emoji.dst.as_ref().unwrap().name, "emoji");
        assert!(emoji.secured && emoji.no_tls_reason.is_empty());
        let voting = &edges[1];
        assert!(!voting.secured);
        assert_eq!(
            voting.no_tls_reason,
            "not_provided_by_service_discovery: the destination is not meshed"
        );
        assert!(voting.server_id.starts_with("voting.demo."));
    }
}
