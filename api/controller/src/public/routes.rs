//! `Routes`: per-route golden metrics of a Deployment, one row per route
//! of the service profiles of its services, then one per path template
//! the proxies learned for the requests no profile route matched.
//!
//! The proxies count routes on the client side (`route_*` series, labelled
//! `direction="outbound"`, `authority`, `route`, and `learned="true"` on a
//! learned template), so a Deployment's route figures are the sums over
//! every client that called one of its services' authorities; templates
//! are the same in every proxy, so their sums are too. Those series are
//! not `response_total`, which `Golden` reads, so they are asked of the
//! store's PromQL engine; latency quantiles therefore come from
//! `histogram_quantile` over the store's bucket view of the histograms.
//! With no learned route (learning off), requests no route matched show
//! as `[DEFAULT]`.

use std::collections::BTreeMap;

use conduit_api::metrics::labels::{Label, Route, RouteResponse};
use conduit_api::metrics::{LEARNED_ROUTE, family};
use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::store::v1 as store;
use conduit_api::time_range::TimeRange;
use conduit_api::{Classification, Direction};
use tonic::Status;

use super::{PublicApi, deployment_arg, not_found, time_range};
use crate::discovery::Snapshot;

pub(super) const DEFAULT_ROUTE: &str = "[DEFAULT]";

/// A regex matching every spelling of the Deployment's services'
/// authorities (`name`, `name.ns`, `name.ns.svc`, `name.ns.svc.<domain>`,
/// each with an optional port).
fn authority_regex(snap: &Snapshot, d: &conduit_api::DeploymentRef) -> Option<String> {
    let names: Vec<String> = snap
        .services_of(d)
        .iter()
        .map(|s| regex::escape(&s.name))
        .collect();
    if names.is_empty() {
        return None;
    }
    Some(format!(
        "({})(\\.{}(\\.svc(\\.{})?)?)?(:[0-9]+)?",
        names.join("|"),
        regex::escape(&d.namespace),
        regex::escape(&snap.cluster_domain)
    ))
}

/// The body of a double-quoted PromQL string: backslashes and quotes
/// escaped, so a regex reaches the matcher as written.
fn promql_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A route's row key: its name and whether it was learned.
type RouteKey = (String, bool);

fn route_key(s: &store::Series) -> RouteKey {
    let label_of = |l| family::ROUTE_RESPONSE_TOTAL.label(&s.labels, l);
    let route = match label_of(RouteResponse::Route) {
        "" => DEFAULT_ROUTE,
        r => r,
    };
    let learned = label_of(RouteResponse::Learned) == LEARNED_ROUTE;
    (route.to_string(), learned)
}

fn last_value(s: &store::Series) -> Option<f64> {
    let v = s.samples.last()?.value;
    Some(if v.is_finite() { v } else { 0.0 })
}

/// Responses by route and classification.
fn by_route(series: &[store::Series]) -> BTreeMap<(RouteKey, String), f64> {
    series
        .iter()
        .filter_map(|s| {
            let class = family::ROUTE_RESPONSE_TOTAL
                .label(&s.labels, RouteResponse::Classification)
                .to_string();
            Some(((route_key(s), class), last_value(s)?))
        })
        .collect()
}

/// A quantile by route.
fn quantile_of(series: &[store::Series], route: &RouteKey) -> f64 {
    series
        .iter()
        .find(|s| route_key(s) == *route)
        .and_then(last_value)
        .unwrap_or(0.0)
}

impl PublicApi {
    pub(super) async fn route_rows(
        &self,
        req: pb::RoutesRequest,
    ) -> Result<pb::RoutesResponse, Status> {
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
        self.within_retention(&range).await?;
        let mut rows: Vec<pb::RouteRow> = Vec::new();
        for service in snap.services_of(&d) {
            let Some(profile) = snap.profiles.get(&service) else {
                continue;
            };
            rows.extend(profile.routes.iter().map(|r| pb::RouteRow {
                route: r.name.clone(),
                authority: profile.fully_qualified_name.clone(),
                metrics: None,
                learned: false,
            }));
        }
        let Some(authority) = authority_regex(&snap, &d) else {
            return Ok(range_rows(rows, range));
        };
        let w = format!("{}ms", range.end_ms - range.start_ms);
        // Both route families carry these labels.
        let selector = format!(
            "{{{}=\"{}\",{}=~\"{}\"}}",
            Route::Direction.name(),
            Direction::Outbound.as_str(),
            Route::Authority.name(),
            promql_string(&authority)
        );
        let counts = format!(
            "sum by ({}, {}, {}) (increase({}{selector}[{w}]))",
            RouteResponse::Route.name(),
            RouteResponse::Learned.name(),
            RouteResponse::Classification.name(),
            family::ROUTE_RESPONSE_TOTAL.name()
        );
        let quantile = |q: f64| {
            format!(
                "histogram_quantile({q}, sum by ({}, {}, le) (rate({}_bucket{selector}[{w}])))",
                Route::Route.name(),
                Route::Learned.name(),
                family::ROUTE_RESPONSE_LATENCY_MS.name()
            )
        };
        let (counts, p50, p95, p99) = tokio::try_join!(
            self.metrics().instant_at(counts, range.end_ms),
            self.metrics().instant_at(quantile(0.5), range.end_ms),
            self.metrics().instant_at(quantile(0.95), range.end_ms),
            self.metrics().instant_at(quantile(0.99), range.end_ms),
        )?;
        let counts = by_route(&counts);
        let mut routes: Vec<RouteKey> = counts.keys().map(|(r, _)| r.clone()).collect();
        routes.dedup();
        for route in routes {
            let count = |failure: bool| {
                counts
                    .iter()
                    .filter(|((r, c), _)| {
                        *r == route && (c == Classification::Failure.as_str()) == failure
                    })
                    .map(|(_, v)| *v)
                    .sum::<f64>()
            };
            let (success, failure) = (count(false).round() as u64, count(true).round() as u64);
            let metrics = pb::GoldenMetrics {
                success_count: success,
                failure_count: failure,
                requests_per_second: (success + failure) as f64 / range.len().as_secs_f64(),
                latency_p50_ms: quantile_of(&p50, &route),
                latency_p95_ms: quantile_of(&p95, &route),
                latency_p99_ms: quantile_of(&p99, &route),
            };
            let (name, learned) = route;
            match rows
                .iter_mut()
                .find(|r| r.route == name && r.learned == learned)
            {
                Some(row) => row.metrics = Some(metrics),
                None => rows.push(pb::RouteRow {
                    route: name,
                    authority: String::new(),
                    metrics: Some(metrics),
                    learned,
                }),
            }
        }
        let unmatched_shown = rows.iter().any(|r| r.learned || r.route == DEFAULT_ROUTE);
        if !unmatched_shown {
            rows.push(pb::RouteRow {
                route: DEFAULT_ROUTE.to_string(),
                authority: String::new(),
                metrics: None,
                learned: false,
            });
        }
        Ok(range_rows(rows, range))
    }
}

fn range_rows(rows: Vec<pb::RouteRow>, range: TimeRange) -> pb::RoutesResponse {
    pb::RoutesResponse {
        rows,
        start_unix_ms: range.start_ms,
        end_unix_ms: range.end_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_survive_promql_quoting() {
        assert_eq!(promql_string(r"a\.b"), r"a\\.b");
        assert_eq!(promql_string("say \"hi\""), r#"say \"hi\""#);
    }

    #[test]
    fn authority_regex_matches_every_spelling_of_the_services() {
        let snap = crate::discovery::static_file::build(
            &serde_saphyr::from_str(
                "version: 1\nnamespaces: {demo: {deployments: {voting: {pods: [{name: v, addr: 127.0.0.1:1}]}}, services: {voting: {deployment: voting, ports: [{port: 8080}]}}}}",
            )
            .unwrap(),
        )
        .unwrap();
        let d = conduit_api::DeploymentRef::new("demo", "voting");
        let re = regex::Regex::new(&format!("^{}$", authority_regex(&snap, &d).unwrap())).unwrap();
        for ok in [
            "voting:8080",
            "voting.demo:8080",
            "voting.demo.svc.cluster.local:8080",
            "voting",
        ] {
            assert!(re.is_match(ok), "{ok}");
        }
        for no in ["voting.other:8080", "emoji.demo:8080", "votingx:8080"] {
            assert!(!re.is_match(no), "{no}");
        }
    }
}
