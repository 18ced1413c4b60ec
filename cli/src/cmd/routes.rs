//! `conduit routes deploy/NAME`: per-route metrics, from service profiles
//! and from the path templates the proxies learned; `--learned` lists the
//! learned templates alone.

use conduit_api::json::{RouteRow, Routes};
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::public::v1::RoutesRequest;

use crate::api;
use crate::args::RoutesArgs;
use crate::cmd::{block_on, required_name};
use crate::output::{Format, Table, latency, print_json, rps, success};

pub(crate) fn run(args: RoutesArgs) -> anyhow::Result<()> {
    let window = &args.window;
    let name = required_name(&window.target, "routes")?;
    let mut routes = block_on(async {
        let mut conn = api::connect(&window.common.api).await?;
        let req = RoutesRequest {
            deployment: Some(DeploymentRef {
                namespace: window.namespaces.namespace.clone(),
                name,
            }),
            window: Some(super::stat::prost_duration(window.time_window)),
        };
        let reply = conn.client.routes(req).await.map_err(api::status_error)?;
        anyhow::Ok(Routes::from(reply.into_inner()))
    })?;
    if args.learned {
        routes.rows.retain(|r| r.learned);
    }
    match (window.common.output, args.learned) {
        (Format::Json, _) => print_json(&routes),
        (format, true) => learned_table(&routes.rows, format == Format::Wide).print(),
        (format, false) => routes_table(&routes.rows, format == Format::Wide).print(),
    }
}

/// Every route; `SOURCE` says whether a profile declared it or the proxies
/// learned it.
fn routes_table(rows: &[RouteRow], wide: bool) -> Table {
    let mut header = vec!["ROUTE", "SOURCE", "SERVICE", "SUCCESS", "RPS"];
    if wide {
        header.push("REQUESTS");
    }
    header.extend(["LATENCY_P50", "LATENCY_P95", "LATENCY_P99"]);
    let mut table = Table::new(header);
    for r in rows {
        let m = r.metrics.as_ref();
        let mut row = vec![
            r.route.clone(),
            source(r).into(),
            service(r),
            success(m),
            rps(m),
        ];
        if wide {
            row.push(requests(r));
        }
        row.extend([
            latency(m.map(|m| m.latency_ms_p50)),
            latency(m.map(|m| m.latency_ms_p95)),
            latency(m.map(|m| m.latency_ms_p99)),
        ]);
        table.row(row);
    }
    table
}

/// The learned templates with their request counts; wide adds latency.
fn learned_table(rows: &[RouteRow], wide: bool) -> Table {
    let mut header = vec!["TEMPLATE", "REQUESTS", "SUCCESS", "RPS"];
    if wide {
        header.extend(["LATENCY_P50", "LATENCY_P95", "LATENCY_P99"]);
    }
    let mut table = Table::new(header);
    for r in rows {
        let m = r.metrics.as_ref();
        let mut row = vec![r.route.clone(), requests(r), success(m), rps(m)];
        if wide {
            row.extend([
                latency(m.map(|m| m.latency_ms_p50)),
                latency(m.map(|m| m.latency_ms_p95)),
                latency(m.map(|m| m.latency_ms_p99)),
            ]);
        }
        table.row(row);
    }
    table
}

fn source(r: &RouteRow) -> &'static str {
    match (r.learned, r.authority.is_empty()) {
        (true, _) => "learned",
        (false, false) => "profile",
        (false, true) => "-",
    }
}

fn service(r: &RouteRow) -> String {
    if r.authority.is_empty() {
        "-".into()
    } else {
        r.authority.clone()
    }
}

fn requests(r: &RouteRow) -> String {
    r.metrics
        .as_ref()
        .map_or_else(|| "-".into(), |m| m.total().to_string())
}
