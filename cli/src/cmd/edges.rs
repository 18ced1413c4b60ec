//! `conduit edges deploy`: who talks to whom, and whether mTLS secures it.

use conduit_api::json::Edges;
use conduit_api::proto::public::v1::{EdgesRequest, Selector};

use crate::api;
use crate::args::EdgesArgs;
use crate::cmd::{block_on, request_range};
use crate::output::{Format, Table, outln, print_json};

pub(crate) fn run(args: EdgesArgs) -> anyhow::Result<()> {
    let (start_unix_ms, end_unix_ms) = request_range(&args.bounds, args.time_window)?;
    let edges = block_on(async {
        let mut conn = api::connect(&args.common.api).await?;
        let req = EdgesRequest {
            selector: Some(Selector {
                namespace: args.namespaces.namespace.clone(),
                all_namespaces: args.namespaces.all_namespaces,
                name: args.target.name.clone().unwrap_or_default(),
            }),
            window: Some(super::stat::prost_duration(args.time_window)),
            start_unix_ms,
            end_unix_ms,
        };
        let reply = conn.client.edges(req).await.map_err(api::status_error)?;
        anyhow::Ok(Edges::from(reply.into_inner()))
    })?;
    if args.common.output == Format::Json {
        return print_json(&edges);
    }
    if edges.edges.is_empty() {
        outln!("No edges found.")?;
        return Ok(());
    }
    let wide = args.common.output == Format::Wide;
    let mut header = vec![
        "SRC",
        "DST",
        "SRC_NS",
        "DST_NS",
        "CLIENT_ID",
        "SERVER_ID",
        "SECURED",
    ];
    if wide {
        header.push("REASON");
    }
    let mut table = Table::new(header);
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    for e in &edges.edges {
        let mut cells = vec![
            e.src.name.clone(),
            e.dst.name.clone(),
            e.src.namespace.clone(),
            e.dst.namespace.clone(),
            dash(&e.client_id),
            dash(&e.server_id),
            if e.secured { "√".into() } else { "×".into() },
        ];
        if wide {
            cells.push(dash(&e.no_tls_reason));
        }
        table.row(cells);
    }
    table.print()
}
