//! `conduit stat deploy [NAME]`: golden metrics per Deployment, like
//! `linkerd viz stat`; with `--by version`, per version of each.

use conduit_api::json::{Stat, StatRow};
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::public::v1::{Selector, StatGrouping, StatRequest};

use crate::api;
use crate::args::{StatArgs, StatBy};
use crate::cmd::{block_on, request_range};
use crate::output::{Format, Table, latency, outln, print_json, rps, success};

pub(crate) fn run(args: StatArgs) -> anyhow::Result<()> {
    let stat = block_on(fetch(&args))?;
    match args.common.output {
        Format::Json => print_json(&stat),
        format => print_table(&stat.rows, format, args.namespaces.all_namespaces, args.by),
    }
}

fn edge_ref(
    name: &Option<String>,
    namespace: &Option<String>,
    default_ns: &str,
) -> Option<DeploymentRef> {
    name.as_ref().map(|n| DeploymentRef {
        namespace: namespace.clone().unwrap_or_else(|| default_ns.to_string()),
        name: n.clone(),
    })
}

async fn fetch(args: &StatArgs) -> anyhow::Result<Stat> {
    let (start_unix_ms, end_unix_ms) = request_range(&args.bounds, args.time_window)?;
    let mut conn = api::connect(&args.common.api).await?;
    let ns = &args.namespaces.namespace;
    let req = StatRequest {
        selector: Some(Selector {
            namespace: ns.clone(),
            all_namespaces: args.namespaces.all_namespaces,
            name: args.target.name.clone().unwrap_or_default(),
        }),
        from: edge_ref(
            &args.from.as_ref().map(|t| t.0.clone()),
            &args.from_namespace,
            ns,
        ),
        to: edge_ref(
            &args.to.as_ref().map(|t| t.0.clone()),
            &args.to_namespace,
            ns,
        ),
        window: Some(prost_duration(args.time_window)),
        start_unix_ms,
        end_unix_ms,
        by: match args.by {
            StatBy::Deployment => StatGrouping::Deployment,
            StatBy::Version => StatGrouping::Version,
        } as i32,
    };
    let reply = conn.client.stat(req).await.map_err(api::status_error)?;
    Ok(reply.into_inner().into())
}

pub(crate) fn prost_duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn print_table(
    rows: &[StatRow],
    format: Format,
    all_namespaces: bool,
    by: StatBy,
) -> anyhow::Result<()> {
    if rows.is_empty() {
        outln!("No traffic found.")?;
        return Ok(());
    }
    let wide = format == Format::Wide;
    let mut header = vec![];
    if all_namespaces || wide {
        header.push("NAMESPACE");
    }
    header.push("NAME");
    if by == StatBy::Version {
        header.push("VERSION");
    }
    header.extend([
        "MESHED",
        "SUCCESS",
        "RPS",
        "LATENCY_P50",
        "LATENCY_P95",
        "LATENCY_P99",
        "TCP_CONN",
    ]);
    if wide {
        header.extend(["REQUESTS", "FAILURES"]);
    }
    let mut table = Table::new(header);
    for r in rows {
        let m = r.metrics.as_ref();
        let mut cells = vec![];
        if all_namespaces || wide {
            cells.push(r.namespace.clone());
        }
        cells.push(r.name.clone());
        if by == StatBy::Version {
            cells.push(version_cell(r.version.as_deref()));
        }
        cells.extend([
            format!("{}/{}", r.meshed_pods, r.total_pods),
            success(m),
            rps(m),
            latency(m.map(|m| m.latency_ms_p50)),
            latency(m.map(|m| m.latency_ms_p95)),
            latency(m.map(|m| m.latency_ms_p99)),
            r.tcp_open_connections.to_string(),
        ]);
        if wide {
            cells.push(m.map_or("-".into(), |m| m.total().to_string()));
            cells.push(m.map_or("-".into(), |m| m.failure_count.to_string()));
        }
        table.row(cells);
    }
    table.print()
}

/// A row's version; `-` for pods that report none.
fn version_cell(version: Option<&str>) -> String {
    match version {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => "-".into(),
    }
}
