//! `Routes`: per-route golden metrics of a Deployment, one row per route
//! of the service profiles that apply to it, from the inbound series of
//! its proxies grouped by the `route` label the proxies set from those
//! profiles. Requests no route matched show as `[DEFAULT]`.

use std::collections::BTreeMap;

use conduit_api::metrics::label;
use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::store::v1 as store;
use tonic::Status;

use super::{PublicApi, deployment_arg, not_found, window};
use crate::store::{eq, label as label_of};

pub(super) const DEFAULT_ROUTE: &str = "[DEFAULT]";

impl PublicApi {
    pub(super) async fn route_rows(&self, req: pb::RoutesRequest) -> Result<pb::RoutesResponse, Status> {
        let d = deployment_arg("deployment", req.deployment)?;
        let window = window(req.window, super::DEFAULT_WINDOW)?;
        let snap = self.snapshot();
        let rows = self
            .store()
            .golden(store::GoldenRequest {
                matchers: vec![
                    eq(label::DIRECTION, "inbound"),
                    eq(label::NAMESPACE, &d.namespace),
                    eq(label::DEPLOYMENT, &d.name),
                ],
                group_by: vec![label::ROUTE.to_string()],
                window: Some(super::stat::prost_duration(window)),
                end_unix_ms: 0,
                quantiles: vec![],
            })
            .await?;
        if !snap.deployments.contains_key(&d) && rows.is_empty() {
            return Err(not_found(&d));
        }
        let mut metrics: BTreeMap<String, pb::GoldenMetrics> = rows
            .iter()
            .map(|r| {
                let route = match label_of(&r.group, label::ROUTE) {
                    "" => DEFAULT_ROUTE,
                    r => r,
                };
                (
                    route.to_string(),
                    pb::GoldenMetrics {
                        success_count: r.success_count,
                        failure_count: r.failure_count,
                        requests_per_second: r.requests_per_second,
                        latency_p50_ms: r.latency_p50_ms,
                        latency_p95_ms: r.latency_p95_ms,
                        latency_p99_ms: r.latency_p99_ms,
                    },
                )
            })
            .collect();
        let mut out = Vec::new();
        for service in snap.services_of(&d) {
            let Some(profile) = snap.profiles.get(&service) else {
                continue;
            };
            for route in &profile.routes {
                out.push(pb::RouteRow {
                    route: route.name.clone(),
                    authority: profile.fully_qualified_name.clone(),
                    metrics: metrics.remove(&route.name),
                });
            }
        }
        // Routes the proxies reported that no current profile names (the
        // default route, or a profile since removed) still get a row.
        let default = metrics.remove(DEFAULT_ROUTE);
        out.extend(metrics.into_iter().map(|(route, m)| pb::RouteRow {
            route,
            authority: String::new(),
            metrics: Some(m),
        }));
        out.push(pb::RouteRow {
            route: DEFAULT_ROUTE.to_string(),
            authority: String::new(),
            metrics: default,
        });
        Ok(pb::RoutesResponse { rows: out })
    }
}
