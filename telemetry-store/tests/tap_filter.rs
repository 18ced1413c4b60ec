//! The tap filter written as a store query selects exactly the events the
//! filter itself matches: live tap (the proxies apply `Filter::matches`)
//! and search (the store runs `Filter::search_query`) agree, request for
//! request, on a real store's index.

mod support;

use std::time::{Duration, Instant};

use conduit_api::DeploymentRef;
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::store::v1::SearchTapRequest;
use conduit_api::proto::store::v1::query_client::QueryClient;
use conduit_api::proto::tap::v1::{Filter as WireFilter, Peer, TapEvent};
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{ProxyMeta, Report};
use conduit_api::tap_filter::{Filter, Request};
use support::*;

fn peer(namespace: &str, name: &str) -> Option<Peer> {
    (!name.is_empty()).then(|| Peer {
        deployment: Some(mesh::DeploymentRef {
            namespace: namespace.into(),
            name: name.into(),
        }),
        ..Default::default()
    })
}

/// Events that differ in every field a filter looks at, including paths
/// and authorities full of regex operators.
fn events(t0: i64) -> Vec<TapEvent> {
    let directions = [mesh::Direction::Inbound, mesh::Direction::Outbound];
    let methods = ["GET", "POST", "PURGE"];
    let authorities = [
        "web.demo:8080",
        "web.demo:80",
        "webxdemo:8080",
        "voting.demo.svc.cluster.local:8080",
        "[::1]:9000",
        "_overflow",
    ];
    let paths = ["/", "/api/vote", "/api/vote(1)+x", "/api.v1/Vote", "/a/b*c"];
    let sides = [
        (("demo", "web"), ("demo", "voting")),
        (("demo", "vote-bot"), ("demo", "web")),
        (("prod", "web"), ("", "")),
    ];
    let mut out = Vec::new();
    for (i, ((((d, m), a), p), (src, dst))) in directions
        .iter()
        .flat_map(|d| methods.iter().map(move |m| (d, m)))
        .flat_map(|dm| authorities.iter().map(move |a| (dm, a)))
        .flat_map(|dma| paths.iter().map(move |p| (dma, p)))
        .flat_map(|dmap| sides.iter().map(move |s| (dmap, s)))
        .enumerate()
    {
        out.push(TapEvent {
            request_id: format!("req-{i}"),
            direction: *d as i32,
            source: peer(src.0, src.1),
            destination: peer(dst.0, dst.1),
            method: (*m).into(),
            authority: (*a).into(),
            path: (*p).into(),
            request_start_unix_us: (t0 + i as i64) * 1000,
            http_status: 200,
            ..Default::default()
        });
    }
    out
}

fn filters() -> Vec<WireFilter> {
    let deployment = |namespace: &str, name: &str| {
        Some(mesh::DeploymentRef {
            namespace: namespace.into(),
            name: name.into(),
        })
    };
    vec![
        WireFilter::default(),
        WireFilter {
            direction: mesh::Direction::Inbound.into(),
            ..Default::default()
        },
        WireFilter {
            path_prefix: "/api/vote".into(),
            ..Default::default()
        },
        WireFilter {
            path_prefix: "/api/vote(1)+".into(),
            ..Default::default()
        },
        WireFilter {
            path_prefix: "/api.v1/".into(),
            ..Default::default()
        },
        WireFilter {
            path_prefix: "/a/b*".into(),
            method: "PURGE".into(),
            ..Default::default()
        },
        WireFilter {
            authority: "web.demo".into(),
            ..Default::default()
        },
        WireFilter {
            authority: "Web.Demo:8080".into(),
            ..Default::default()
        },
        WireFilter {
            authority: "[::1]".into(),
            ..Default::default()
        },
        WireFilter {
            authority: "_overflow".into(),
            ..Default::default()
        },
        WireFilter {
            source: deployment("demo", ""),
            destination: deployment("", "web"),
            ..Default::default()
        },
        WireFilter {
            source: deployment("prod", "web"),
            direction: mesh::Direction::Outbound.into(),
            method: "GET".into(),
            ..Default::default()
        },
    ]
}

async fn search(q: &mut QueryClient<tonic::transport::Channel>, query: String) -> Vec<String> {
    let mut ids: Vec<String> = q
        .search_tap(SearchTapRequest {
            query: query.clone(),
            start_unix_ms: 0,
            end_unix_ms: 0,
            limit: 10_000,
        })
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .into_inner()
        .events
        .into_iter()
        .map(|e| e.request_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_selects_the_same_events_live_and_in_the_history() {
    let store = start_store(|_| {}).await;
    let events = events(now_ms() - 60_000);
    let mut telemetry = TelemetryClient::new(grpc_channel(store.grpc()).await);
    let report = Report {
        proxy: Some(ProxyMeta {
            deployment: Some(mesh::DeploymentRef {
                namespace: "demo".into(),
                name: "web".into(),
            }),
            pod: "web-1".into(),
            ..Default::default()
        }),
        end_unix_ms: now_ms(),
        tap_events: events.clone(),
        ..Default::default()
    };
    telemetry
        .report(tokio_stream::iter(vec![report]))
        .await
        .unwrap();
    let mut q = QueryClient::new(grpc_channel(store.grpc()).await);
    let deadline = Instant::now() + Duration::from_secs(20);
    while search(&mut q, String::new()).await.len() < events.len() {
        assert!(Instant::now() < deadline, "events were not indexed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let web = DeploymentRef::new("demo", "web");
    for wire in filters() {
        let filter = Filter::try_from(wire.clone()).unwrap();
        for involving in [None, Some(&web)] {
            let involves = |e: &TapEvent| {
                involving.is_none_or(|d| {
                    [&e.source, &e.destination].into_iter().any(|p| {
                        p.as_ref()
                            .and_then(|p| p.deployment.as_ref())
                            .is_some_and(|pd| pd.namespace == d.namespace && pd.name == d.name)
                    })
                })
            };
            let mut want: Vec<String> = events
                .iter()
                .filter(|e| filter.matches(&Request::of_event(e)) && involves(e))
                .map(|e| e.request_id.clone())
                .collect();
            want.sort();
            let query = filter.search_query("", involving);
            let got = search(&mut q, query.clone()).await;
            assert!(
                involving.is_some() || !want.is_empty(),
                "{wire:?} matches some events"
            );
            assert_eq!(got, want, "{wire:?} involving {involving:?}: {query}");
            // The user's own query narrows the same way.
            let status = filter.search_query("status:200 AND NOT method:POST", involving);
            let want_get: Vec<&String> = want
                .iter()
                .filter(|id| {
                    events
                        .iter()
                        .any(|e| &e.request_id == *id && e.method != "POST")
                })
                .collect();
            let got_get = search(&mut q, status.clone()).await;
            assert_eq!(got_get.iter().collect::<Vec<_>>(), want_get, "{status}");
        }
    }
}
