//! `Stat` and `ListDeployments`: golden metrics per Deployment, the way
//! `linkerd viz stat` reports them.
//!
//! A Deployment's figures are the *inbound* traffic of its proxies
//! (`direction="inbound"`), grouped by `namespace` and `deployment`. With
//! `to`, they are the *outbound* traffic of each selected Deployment to
//! `to`; with `from`, the outbound traffic of `from` to each selected
//! Deployment. MESHED is the number of the Deployment's pods whose proxy
//! reports to the store out of the pods discovery knows.
//!
//! Grouped by version, each Deployment's rows split further by
//! `pod_template_hash` (the pod's ReplicaSet, or the local demo's
//! version), the proxy's own label: so it compares the versions of the
//! selected Deployments, never of `from`'s destinations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conduit_api::metrics::family;
use conduit_api::metrics::labels::{Http, Label};
use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::store::v1 as store;
use conduit_api::{DeploymentRef, Direction};
use tonic::Status;

use super::{PublicApi, Scope, not_found, optional_deployment};
use crate::discovery::Snapshot;
use crate::store::now_unix_ms;

/// How long ago a proxy's last report may be for its pod to count as
/// meshed; the store already lists only recent reporters, this guards
/// against a store that keeps them longer.
const REPORTING_WITHIN_MS: i64 = 60_000;

/// Pods per Deployment: reporting pod names and their versions, and pods
/// discovery knows.
#[derive(Default)]
struct PodCounts {
    reporting: BTreeMap<DeploymentRef, BTreeMap<String, String>>,
}

impl PodCounts {
    fn from_status(status: &store::StatusResponse) -> Self {
        let now = now_unix_ms();
        let mut reporting: BTreeMap<DeploymentRef, BTreeMap<String, String>> = BTreeMap::new();
        for p in &status.proxies {
            if now - p.last_report_unix_ms > REPORTING_WITHIN_MS {
                continue;
            }
            let Some(meta) = &p.proxy else { continue };
            let Some(d) = &meta.deployment else { continue };
            reporting
                .entry(DeploymentRef::new(&d.namespace, &d.name))
                .or_default()
                .insert(meta.pod.clone(), meta.pod_template_hash.clone());
        }
        Self { reporting }
    }

    /// (meshed, total) pods of `d`.
    fn of(&self, snap: &Snapshot, d: &DeploymentRef) -> (u32, u32) {
        let reporting = self.reporting.get(d);
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        match snap.deployments.get(d) {
            Some(info) => {
                let meshed = info
                    .pods
                    .iter()
                    .filter(|p| reporting.is_some_and(|r| r.contains_key(&p.name)))
                    .count();
                (count(meshed), count(info.pods.len()))
            }
            None => {
                let n = count(reporting.map_or(0, BTreeMap::len));
                (n, n)
            }
        }
    }

    /// (meshed, total) pods of one version of `d`: its reporting pods, the
    /// only ones whose version is known.
    fn of_version(&self, d: &DeploymentRef, version: &str) -> (u32, u32) {
        let n = self
            .reporting
            .get(d)
            .map_or(0, |r| r.values().filter(|v| *v == version).count());
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        (n, n)
    }

    fn deployments(&self) -> impl Iterator<Item = &DeploymentRef> {
        self.reporting.keys()
    }
}

fn deployment(d: &DeploymentRef, (meshed, total): (u32, u32)) -> pb::Deployment {
    pb::Deployment {
        deployment: Some(d.clone().into()),
        meshed_pods: meshed,
        total_pods: total,
    }
}

fn golden(row: &store::GoldenRow) -> pb::GoldenMetrics {
    pb::GoldenMetrics {
        success_count: row.success_count,
        failure_count: row.failure_count,
        requests_per_second: row.requests_per_second,
        latency_p50_ms: row.latency_p50_ms,
        latency_p95_ms: row.latency_p95_ms,
        latency_p99_ms: row.latency_p99_ms,
    }
}

pub(super) fn prost_duration(d: Duration) -> prost_types::Duration {
    crate::profile::duration(d)
}

/// The store query behind a stat request, and which labels of a result row
/// name the Deployment the row is about. Golden answers from
/// `response_total` and `response_latency_ms`, so it selects by the labels
/// both carry: those of the latency family.
pub(super) fn stat_query(
    scope: &Scope,
    from: Option<&DeploymentRef>,
    to: Option<&DeploymentRef>,
    window: Duration,
    by_version: bool,
) -> (store::GoldenRequest, [Http; 2]) {
    let family = family::RESPONSE_LATENCY_MS;
    let mut matchers = Vec::new();
    let mut push_scope = |ns_label, name_label| {
        if let Some(ns) = &scope.namespace {
            matchers.push(family.eq(ns_label, ns));
        }
        if let Some(name) = &scope.name {
            matchers.push(family.eq(name_label, name));
        }
    };
    let source = [Http::Namespace, Http::Deployment];
    let destination = [Http::DstNamespace, Http::DstDeployment];
    let outbound = family.eq(Http::Direction, Direction::Outbound.as_str());
    let is = |[ns, name]: [Http; 2], d: &DeploymentRef| {
        [family.eq(ns, &d.namespace), family.eq(name, &d.name)]
    };
    let key = match (from, to) {
        (None, None) => {
            push_scope(source[0], source[1]);
            matchers.push(family.eq(Http::Direction, Direction::Inbound.as_str()));
            source
        }
        (Some(from), None) => {
            push_scope(destination[0], destination[1]);
            matchers.push(outbound);
            matchers.extend(is(source, from));
            destination
        }
        (None, Some(to)) => {
            push_scope(source[0], source[1]);
            matchers.push(outbound);
            matchers.extend(is(destination, to));
            source
        }
        (Some(from), Some(to)) => {
            matchers.push(outbound);
            matchers.extend(is(source, from));
            matchers.extend(is(destination, to));
            source
        }
    };
    let mut group_by: Vec<String> = key.iter().map(|l| l.name().to_string()).collect();
    if by_version {
        group_by.push(Http::PodTemplateHash.name().to_string());
    }
    let req = store::GoldenRequest {
        matchers,
        group_by,
        window: Some(prost_duration(window)),
        end_unix_ms: 0,
        start_unix_ms: 0,
    };
    (req, key)
}

/// The Deployment a Golden row is about.
fn row_deployment(
    group: &[conduit_api::proto::mesh::v1::Label],
    [ns, name]: [Http; 2],
) -> DeploymentRef {
    let family = family::RESPONSE_LATENCY_MS;
    DeploymentRef::new(family.label(group, ns), family.label(group, name))
}

/// The version a Golden row is about (grouped by version).
fn row_version(group: &[conduit_api::proto::mesh::v1::Label]) -> &str {
    family::RESPONSE_LATENCY_MS.label(group, Http::PodTemplateHash)
}

/// Whether a request groups by version; `from` cannot, since its rows
/// are destinations and the series carry the caller's version.
fn by_version(by: i32, from: Option<&DeploymentRef>) -> Result<bool, Status> {
    let by = pb::StatGrouping::try_from(by)
        .map_err(|_| Status::invalid_argument(format!("unknown stat grouping {by}")))?;
    match (by, from) {
        (pb::StatGrouping::Deployment, _) => Ok(false),
        (pb::StatGrouping::Version, None) => Ok(true),
        (pb::StatGrouping::Version, Some(_)) => Err(Status::invalid_argument(
            "grouping by version compares the versions of the selected Deployments' own \
             pods; it cannot be combined with `from` (use `to`, or stat the destination itself)",
        )),
    }
}

/// Points of a history: one `Golden` per step, a few at a time.
const HISTORY_MAX_POINTS: u64 = 360;
const HISTORY_CONCURRENCY: usize = 8;

/// Golden metrics per Deployment over time.
pub type History = BTreeMap<DeploymentRef, Vec<(i64, Option<pb::GoldenMetrics>)>>;

impl PublicApi {
    /// Golden metrics of the selected Deployments at each `step` of the
    /// `range` before `end` (default: the last step boundary before now),
    /// each over the trailing `window`, from the store's `Golden` at those
    /// end times. For the dashboard's charts; the gRPC API has no
    /// counterpart.
    pub async fn stat_history(
        &self,
        selector: Option<pb::Selector>,
        window: Option<prost_types::Duration>,
        (range, step): (Duration, Duration),
        end: Option<i64>,
    ) -> Result<History, Status> {
        use futures_util::StreamExt;
        let scope = Scope::from_selector(selector)?;
        let window = super::window(window, super::DEFAULT_WINDOW)?;
        let (step_ms, range_ms) = (step.as_millis() as u64, range.as_millis() as u64);
        if step_ms < 1000 || range_ms < step_ms || range_ms / step_ms > HISTORY_MAX_POINTS {
            return Err(Status::invalid_argument(format!(
                "step must be at least 1s and range at most {HISTORY_MAX_POINTS} steps"
            )));
        }
        let points = range_ms / step_ms;
        // Align to the step so successive requests share their points.
        let now = now_unix_ms();
        let last = end.unwrap_or(now - now % step_ms as i64);
        let first = last - (range_ms - step_ms) as i64;
        super::time_range(None, first - window.as_millis() as i64, last, window)?;
        let ends: Vec<i64> = (0..points)
            .rev()
            .map(|i| last - (i * step_ms) as i64)
            .collect();
        let queries: Vec<_> = ends
            .iter()
            .map(|&end| {
                let (mut q, key) = stat_query(&scope, None, None, window, false);
                q.end_unix_ms = end;
                let metrics = self.metrics().clone();
                async move { metrics.golden(q).await.map(|a| (end, key, a.rows)) }
            })
            .collect();
        let answers: Vec<_> = futures_util::stream::iter(queries)
            .buffered(HISTORY_CONCURRENCY)
            .collect()
            .await;
        let snap = self.snapshot();
        let mut history: History = snap
            .deployments
            .keys()
            .filter(|d| scope.contains(d))
            .map(|d| (d.clone(), Vec::new()))
            .collect();
        for answer in answers {
            let (end, key, rows) = answer?;
            let mut at: BTreeMap<DeploymentRef, pb::GoldenMetrics> = rows
                .iter()
                .map(|r| (row_deployment(&r.group, key), golden(r)))
                .filter(|(d, m)| !d.name.is_empty() && m.success_count + m.failure_count > 0)
                .collect();
            for d in at.keys() {
                history.entry(d.clone()).or_default();
            }
            for (d, points) in history.iter_mut() {
                points.push((end, at.remove(d)));
            }
        }
        // Deployments first seen late get no points for the times before.
        for points in history.values_mut() {
            let missing = ends.len().saturating_sub(points.len());
            let fill = ends[..missing].iter().map(|&t| (t, None));
            *points = fill.chain(points.drain(..)).collect();
        }
        Ok(history)
    }

    pub(super) async fn stat_rows(&self, req: pb::StatRequest) -> Result<pb::StatResponse, Status> {
        let scope = Scope::from_selector(req.selector)?;
        let from = optional_deployment("from", req.from)?;
        let to = optional_deployment("to", req.to)?;
        let range = super::time_range(
            req.window,
            req.start_unix_ms,
            req.end_unix_ms,
            super::DEFAULT_WINDOW,
        )?;
        let by_version = by_version(req.by, from.as_ref())?;
        let (mut query, key) =
            stat_query(&scope, from.as_ref(), to.as_ref(), range.len(), by_version);
        query.start_unix_ms = range.start_ms;
        query.end_unix_ms = range.end_ms;
        let (answer, status) =
            tokio::try_join!(self.metrics().golden(query), self.store().status())?;
        let rows = answer.rows;
        let snap = self.snapshot();
        let pods = PodCounts::from_status(&status);
        let known =
            |d: &DeploymentRef| snap.deployments.contains_key(d) || pods.reporting.contains_key(d);
        for d in from.iter().chain(to.iter()) {
            if !known(d) {
                return Err(not_found(d));
            }
        }

        let mut out: BTreeMap<(DeploymentRef, Option<String>), pb::StatRow> = BTreeMap::new();
        for row in &rows {
            let d = row_deployment(&row.group, key);
            if d.name.is_empty() {
                continue;
            }
            let version = by_version.then(|| row_version(&row.group).to_string());
            let counts = match &version {
                Some(v) => pods.of_version(&d, v),
                None => pods.of(&snap, &d),
            };
            out.insert(
                (d.clone(), version.clone()),
                pb::StatRow {
                    deployment: Some(deployment(&d, counts)),
                    metrics: Some(golden(row)).filter(|m| m.success_count + m.failure_count > 0),
                    tcp_open_connections: row.tcp_open_connections.max(0.0).round() as u64,
                    version,
                },
            );
        }
        // Without an edge filter every selected Deployment gets a row, with
        // or without traffic, like `linkerd viz stat`.
        if from.is_none() && to.is_none() {
            let idle = snap
                .deployments
                .keys()
                .chain(pods.deployments())
                .filter(|d| scope.contains(d))
                .cloned()
                .collect::<Vec<_>>();
            let mut seen: BTreeSet<DeploymentRef> = out.keys().map(|(d, _)| d.clone()).collect();
            for d in idle {
                if !seen.insert(d.clone()) {
                    continue;
                }
                let row = pb::StatRow {
                    deployment: Some(deployment(&d, pods.of(&snap, &d))),
                    metrics: None,
                    tcp_open_connections: 0,
                    version: by_version.then(String::new),
                };
                out.insert((d, row.version.clone()), row);
            }
            if let (Some(ns), Some(name)) = (&scope.namespace, &scope.name) {
                let d = DeploymentRef::new(ns, name);
                if !seen.contains(&d) {
                    return Err(not_found(&d));
                }
            }
        }
        Ok(pb::StatResponse {
            rows: out.into_values().collect(),
            start_unix_ms: answer.start_unix_ms,
            end_unix_ms: answer.end_unix_ms,
            latency_resolution_ms: answer.latency_resolution_ms,
        })
    }

    /// Deployments from discovery and from the store's series of the last
    /// hour (a Deployment may report without being in discovery).
    pub(super) async fn list(
        &self,
        req: pb::ListDeploymentsRequest,
    ) -> Result<pb::ListDeploymentsResponse, Status> {
        let scope = Scope::from_selector(req.selector)?;
        let end = now_unix_ms();
        let requests = family::REQUEST_TOTAL;
        let mut matchers = vec![
            requests.select(),
            requests.eq(Http::Direction, Direction::Inbound.as_str()),
        ];
        if let Some(ns) = &scope.namespace {
            matchers.push(requests.eq(Http::Namespace, ns));
        }
        if let Some(name) = &scope.name {
            matchers.push(requests.eq(Http::Deployment, name));
        }
        let series = store::SeriesRequest {
            matchers,
            start_unix_ms: end - 3_600_000,
            end_unix_ms: end,
        };
        let (series, status) =
            tokio::try_join!(self.metrics().series(series), self.store().status())?;
        let snap = self.snapshot();
        let pods = PodCounts::from_status(&status);
        let mut all: BTreeSet<DeploymentRef> = snap.deployments.keys().cloned().collect();
        all.extend(pods.deployments().cloned());
        all.extend(series.iter().map(|s| {
            DeploymentRef::new(
                requests.label(&s.labels, Http::Namespace),
                requests.label(&s.labels, Http::Deployment),
            )
        }));
        Ok(pb::ListDeploymentsResponse {
            deployments: all
                .into_iter()
                .filter(|d| !d.name.is_empty() && scope.contains(d))
                .map(|d| deployment(&d, pods.of(&snap, &d)))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matchers(req: &store::GoldenRequest) -> Vec<String> {
        req.matchers
            .iter()
            .map(|m| format!("{}={}", m.name, m.value))
            .collect()
    }

    #[test]
    fn plain_stat_reads_inbound_traffic_per_deployment() {
        let scope = Scope {
            namespace: Some("demo".into()),
            name: None,
        };
        let (req, key) = stat_query(&scope, None, None, Duration::from_secs(60), false);
        assert_eq!(key.map(Label::name), ["namespace", "deployment"]);
        assert_eq!(matchers(&req), ["namespace=demo", "direction=inbound"]);
        assert_eq!(req.group_by, ["namespace", "deployment"]);
        assert_eq!(req.window.unwrap().seconds, 60);
    }

    #[test]
    fn by_version_adds_the_pods_version_to_the_groups_but_not_with_from() {
        let scope = Scope {
            namespace: Some("demo".into()),
            name: Some("voting".into()),
        };
        let (req, _) = stat_query(&scope, None, None, Duration::from_secs(60), true);
        assert_eq!(
            req.group_by,
            ["namespace", "deployment", "pod_template_hash"]
        );
        let version = pb::StatGrouping::Version as i32;
        let web = DeploymentRef::new("demo", "web");
        assert_eq!(by_version(version, None).ok(), Some(true));
        assert_eq!(by_version(0, Some(&web)).ok(), Some(false));
        let err = by_version(version, Some(&web)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("from"), "{err}");
        assert!(by_version(7, None).is_err());
    }

    #[test]
    fn edge_filters_read_the_source_outbound_traffic() {
        let scope = Scope {
            namespace: Some("demo".into()),
            name: None,
        };
        let web = DeploymentRef::new("demo", "web");
        let (req, key) = stat_query(&scope, Some(&web), None, Duration::from_secs(10), false);
        assert_eq!(key.map(Label::name), ["dst_namespace", "dst_deployment"]);
        assert_eq!(
            matchers(&req),
            [
                "dst_namespace=demo",
                "direction=outbound",
                "namespace=demo",
                "deployment=web"
            ]
        );
        let (req, key) = stat_query(&scope, None, Some(&web), Duration::from_secs(10), false);
        assert_eq!(key.map(Label::name), ["namespace", "deployment"]);
        assert_eq!(
            matchers(&req),
            [
                "namespace=demo",
                "direction=outbound",
                "dst_namespace=demo",
                "dst_deployment=web"
            ]
        );
    }
}
