//! `conduit routes deploy/NAME`: per-route metrics from service profiles.

use conduit_api::json::Routes;
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::public::v1::RoutesRequest;

use crate::api;
use crate::args::DeploymentWindowArgs;
use crate::cmd::{block_on, request_range, required_name};
use crate::output::{Format, Table, latency, print_json, rps, success};

pub(crate) fn run(args: DeploymentWindowArgs) -> anyhow::Result<()> {
    let name = required_name(&args.target, "routes")?;
    let (start_unix_ms, end_unix_ms) = request_range(&args.bounds, args.time_window)?;
    let routes = block_on(async {
        let mut conn = api::connect(&args.common.api).await?;
        let req = RoutesRequest {
            deployment: Some(DeploymentRef {
                namespace: args.namespaces.namespace.clone(),
                name,
            }),
            window: Some(super::stat::prost_duration(args.time_window)),
            start_unix_ms,
            end_unix_ms,
        };
        let reply = conn.client.routes(req).await.map_err(api::status_error)?;
        anyhow::Ok(Routes::from(reply.into_inner()))
    })?;
    if args.common.output == Format::Json {
        return print_json(&routes);
    }
    let mut table = Table::new([
        "ROUTE",
        "SERVICE",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
    ]);
    for r in &routes.rows {
        let m = r.metrics.as_ref();
        table.row([
            r.route.clone(),
            if r.authority.is_empty() {
                "-".into()
            } else {
                r.authority.clone()
            },
            success(m),
            rps(m),
            latency(m.map(|m| m.latency_ms_p50)),
            latency(m.map(|m| m.latency_ms_p95)),
            latency(m.map(|m| m.latency_ms_p99)),
        ]);
    }
    table.print()
}
