//! `conduit tap deploy/NAME`: live requests, one line per request,
//! response and end of stream like `linkerd viz tap`; with `--since`,
//! a search of past requests in the store's tap index instead.

use std::time::SystemTime;

use conduit_api::json::{TapEvent, TapSearch};
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::public::v1::{SearchTapRequest, TapRequest};
use conduit_api::proto::tap::v1::Filter;
use futures_util::StreamExt;

use crate::api;
use crate::args::TapArgs;
use crate::cmd::{block_on, required_name};
use crate::output::{Format, outln, print_json, print_json_line};

pub(crate) fn run(args: TapArgs) -> anyhow::Result<()> {
    let name = required_name(&args.target, "tap")?;
    let deployment = DeploymentRef {
        namespace: args.namespaces.namespace.clone(),
        name,
    };
    let filter = Filter {
        path_prefix: args.path.clone().unwrap_or_default(),
        method: args.method.clone().unwrap_or_default(),
        authority: args.authority.clone().unwrap_or_default(),
        destination: args.to.as_ref().map(|t| DeploymentRef {
            namespace: args
                .to_namespace
                .clone()
                .unwrap_or_else(|| args.namespaces.namespace.clone()),
            name: t.0.clone(),
        }),
        ..Default::default()
    };
    match args.since {
        Some(since) => block_on(search(&args, deployment, filter, since)),
        None => block_on(live(&args, deployment, filter)),
    }
}

async fn live(args: &TapArgs, deployment: DeploymentRef, filter: Filter) -> anyhow::Result<()> {
    let mut conn = api::connect_streaming(&args.common.api).await?;
    let req = TapRequest {
        deployment: Some(deployment),
        filter: Some(filter),
        max_rps: args.max_rps,
    };
    let request = conn.request(req);
    let mut events = conn
        .client
        .tap(request)
        .await
        .map_err(api::status_error)?
        .into_inner();
    let mut seen = 0u64;
    while let Some(event) = events.next().await {
        let event = TapEvent::from(event.map_err(api::status_error)?);
        print_event(&event, args.common.output)?;
        seen += 1;
        if args.limit.is_some_and(|l| seen >= l) {
            break;
        }
    }
    Ok(())
}

async fn search(
    args: &TapArgs,
    deployment: DeploymentRef,
    filter: Filter,
    since: std::time::Duration,
) -> anyhow::Result<()> {
    let mut conn = api::connect(&args.common.api).await?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))?;
    let req = SearchTapRequest {
        query: args.query.clone().unwrap_or_default(),
        start_unix_ms: now - i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        end_unix_ms: now,
        limit: u32::try_from(args.limit.unwrap_or(100)).unwrap_or(u32::MAX),
        deployment: Some(deployment),
        filter: Some(filter),
    };
    let request = conn.request(req);
    let reply = conn
        .client
        .search_tap(request)
        .await
        .map_err(api::status_error)?;
    let found = TapSearch {
        events: reply
            .into_inner()
            .events
            .into_iter()
            .map(Into::into)
            .collect(),
    };
    if args.common.output == Format::Json {
        return print_json(&found);
    }
    if found.events.is_empty() {
        outln!("No past requests matched.")?;
    }
    for e in &found.events {
        print_event(e, args.common.output)?;
    }
    Ok(())
}

fn print_event(e: &TapEvent, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return print_json_line(e);
    }
    for line in lines(e, format == Format::Wide) {
        outln!("{line}")?;
    }
    Ok(())
}

/// The `req`, `rsp` and `end` lines of one event.
pub(crate) fn lines(e: &TapEvent, wide: bool) -> [String; 3] {
    let proxy = match e.direction.as_str() {
        "inbound" => "in ",
        "outbound" => "out",
        _ => "?  ",
    };
    let mut peers = format!(
        "id={} proxy={proxy} src={} dst={} tls={}",
        e.request_id, e.source.address, e.destination.address, e.tls
    );
    if wide {
        for (what, peer) in [("src", &e.source), ("dst", &e.destination)] {
            if let Some(d) = &peer.deployment {
                peers.push_str(&format!(
                    " {what}_res=deploy/{} {what}_ns={}",
                    d.name, d.namespace
                ));
            }
        }
    }
    let req = format!(
        "req {peers} :method={} :authority={} :path={}",
        e.method, e.authority, e.path
    );
    let mut rsp = if e.http_status == 0 {
        format!("rsp {peers}")
    } else {
        format!(
            "rsp {peers} :status={} latency={}µs",
            e.http_status, e.response_latency_us
        )
    };
    // The proxy answered itself or gave up (a denial, a timeout): why, as
    // the `error_reason` label says it, then in its own words.
    if !e.error_reason.is_empty() {
        rsp.push_str(&format!(" error_reason={}", e.error_reason));
    }
    if !e.error.is_empty() || e.http_status == 0 {
        rsp.push_str(&format!(" error={:?}", e.error));
    }
    let grpc = e
        .grpc_status
        .map(|g| format!(" grpc-status={g}"))
        .unwrap_or_default();
    // Why a past request is in the tap history (sampled, or kept by the
    // flight recorder because it failed or was slow).
    let kept = match e.kept.as_str() {
        "" => String::new(),
        why => format!(" kept={why}"),
    };
    let end = format!(
        "end {peers}{grpc} duration={}µs response-length={}B{kept}",
        e.response_duration_us, e.response_bytes
    );
    [req, rsp, end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::json::Peer;

    #[test]
    fn lines_read_like_linkerd_tap() {
        let e = TapEvent {
            request_id: "7".into(),
            direction: "inbound".into(),
            source: Peer {
                address: "127.0.0.1:5000".into(),
                ..Default::default()
            },
            destination: Peer {
                address: "127.0.0.1:8080".into(),
                deployment: Some(conduit_api::DeploymentRef::new("demo", "web")),
                identity: String::new(),
            },
            method: "GET".into(),
            authority: "web:8080".into(),
            path: "/api/list".into(),
            http_status: 200,
            response_latency_us: 1500,
            response_duration_us: 1700,
            response_bytes: 42,
            ..Default::default()
        };
        let [req, rsp, end] = lines(&e, true);
        assert_eq!(
            req,
            "req id=7 proxy=in  src=127.0.0.1:5000 dst=127.0.0.1:8080 tls=false dst_res=deploy/web dst_ns=demo :method=GET :authority=web:8080 :path=/api/list"
        );
        assert!(rsp.ends_with(":status=200 latency=1500µs"), "{rsp}");
        assert!(
            end.ends_with("duration=1700µs response-length=42B"),
            "{end}"
        );
        let denied = TapEvent {
            http_status: 403,
            error: "unauthorized: no authorization of server s route default admits the client"
                .into(),
            error_reason: "unauthorized".into(),
            ..e
        };
        let [_, rsp, _] = lines(&denied, false);
        assert!(
            rsp.contains(":status=403 latency=1500µs error_reason=unauthorized error=\"unauthorized: no authorization"),
            "a denial says why: {rsp}"
        );
    }
}
