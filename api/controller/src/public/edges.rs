//! `Edges`: which Deployment talks to which, from the proxies' outbound
//! series (`deployment` → `dst_deployment`) with samples in a window (the
//! last 5 minutes by default), with the identities the proxies proved and
//! whether mTLS secured the traffic.

use std::collections::BTreeMap;

use conduit_api::metrics::family;
use conduit_api::metrics::labels::{Http, Label};
use conduit_api::metrics::{NoTlsReason, Tls};
use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::store::v1 as store;
use conduit_api::{DeploymentRef, Direction};
use tonic::Status;

use super::{PublicApi, Scope};

/// How far back a series counts as a live edge, by default.
pub(super) const DEFAULT_EDGE_WINDOW: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The labels of an outbound series that [`edges_of`] reads.
const EDGE_LABELS: [Http; 8] = [
    Http::Namespace,
    Http::Deployment,
    Http::DstNamespace,
    Http::DstDeployment,
    Http::Tls,
    Http::NoTlsReason,
    Http::ClientId,
    Http::ServerId,
];

/// The label sets of `family`'s outbound series with samples in the
/// `window_ms` before the query's time. Per family: `__name__` is dropped
/// by `count_over_time`, so two families in one selector would collide.
fn edge_query(family: &str, window_ms: i64) -> String {
    let by: Vec<&str> = EDGE_LABELS.iter().map(|l| l.name()).collect();
    format!(
        "count by ({}) (count_over_time({family}{{{}=\"{}\"}}[{window_ms}ms]))",
        by.join(", "),
        Http::Direction.name(),
        Direction::Outbound.as_str()
    )
}

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
        let range = super::time_range(
            req.window,
            req.start_unix_ms,
            req.end_unix_ms,
            DEFAULT_EDGE_WINDOW,
        )?;
        self.within_retention(&range).await?;
        let window_ms = range.end_ms - range.start_ms;
        let (http, tcp) = tokio::try_join!(
            self.metrics().instant_at(
                edge_query(family::REQUEST_TOTAL.name(), window_ms),
                range.end_ms
            ),
            self.metrics().instant_at(
                edge_query(family::TCP_OPEN_TOTAL.name(), window_ms),
                range.end_ms
            ),
        )?;
        let series: Vec<store::LabelSet> = http
            .into_iter()
            .chain(tcp)
            .map(|s| store::LabelSet { labels: s.labels })
            .collect();
        Ok(pb::EdgesResponse {
            edges: edges_of(&series, &scope),
            start_unix_ms: range.start_ms,
            end_unix_ms: range.end_ms,
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
