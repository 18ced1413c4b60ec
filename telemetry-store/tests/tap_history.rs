//! Tap history: events the proxies put in their reports are indexed and
//! searchable with tantivy's query syntax, newest first; followed live
//! over SSE and gRPC; deleted past retention; and a full indexing queue
//! drops events (counted) without slowing metric ingest.

mod support;

use std::time::{Duration, Instant};

use conduit_api::proto::mesh::v1::{DeploymentRef, Direction, TcpAddress};
use conduit_api::proto::store::v1::SearchTapRequest;
use conduit_api::proto::store::v1::query_client::QueryClient;
use conduit_api::proto::tap::v1::{Peer, TapEvent};
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{CounterSeries, ProxyMeta, Report};
use http_body_util::BodyExt;
use support::*;
use tonic::transport::Channel;

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn peer(deployment: &str) -> Option<Peer> {
    Some(Peer {
        address: Some(TcpAddress {
            ip: vec![10, 0, 0, 7],
            port: 8080,
        }),
        deployment: Some(DeploymentRef {
            namespace: "demo".into(),
            name: deployment.into(),
        }),
        identity: format!("{deployment}.demo.serviceaccount.identity.conduit.cluster.local"),
    })
}

struct Spec {
    src: &'static str,
    dst: &'static str,
    method: &'static str,
    path: &'static str,
    status: u32,
    latency_ms: u64,
    grpc: Option<i32>,
    tls: bool,
    error: &'static str,
}

fn event(id: usize, t_ms: i64, s: &Spec) -> TapEvent {
    TapEvent {
        request_id: format!("req-{id}"),
        direction: Direction::Outbound as i32,
        source: peer(s.src),
        destination: peer(s.dst),
        tls: s.tls,
        method: s.method.into(),
        scheme: "http".into(),
        authority: format!("{}.demo:8080", s.dst),
        path: s.path.into(),
        request_start_unix_us: t_ms * 1000,
        response_latency_us: s.latency_ms * 1000,
        response_duration_us: s.latency_ms * 1000 + 500,
        http_status: s.status,
        grpc_status: s.grpc,
        request_bytes: 100,
        response_bytes: 2000 + id as u64,
        error: s.error.into(),
        kept: 0,
        // The store indexes the reason as it is; the proxy decides it.
        error_reason: if s.error.is_empty() {
            String::new()
        } else {
            "response_timeout".into()
        },
    }
}

fn known_events(t0: i64) -> Vec<TapEvent> {
    let s = |src, dst, method, path, status, latency_ms, grpc, tls, error| Spec {
        src,
        dst,
        method,
        path,
        status,
        latency_ms,
        grpc,
        tls,
        error,
    };
    let specs = [
        s(
            "web",
            "voting",
            "GET",
            "/api/vote?choice=1",
            200,
            12,
            None,
            true,
            "",
        ),
        s(
            "web",
            "voting",
            "POST",
            "/api/vote/emoji",
            500,
            300,
            None,
            true,
            "",
        ),
        s("web", "emoji", "GET", "/api/list", 200, 5, None, true, ""),
        s(
            "web",
            "voting",
            "POST",
            "/api/vote/other",
            503,
            40,
            None,
            true,
            "",
        ),
        s(
            "vote-bot",
            "web",
            "GET",
            "/index.html",
            200,
            260,
            None,
            true,
            "",
        ),
        s("web", "voting", "GET", "/healthz", 500, 1, None, true, ""),
        s(
            "web",
            "emoji",
            "POST",
            "/emoji.v1.Emoji/List",
            200,
            80,
            Some(14),
            true,
            "",
        ),
        s(
            "web",
            "voting",
            "POST",
            "/api/vote",
            502,
            251,
            None,
            false,
            "upstream timeout",
        ),
    ];
    specs
        .iter()
        .enumerate()
        .map(|(i, sp)| event(i, t0 + i as i64 * 1000, sp))
        .collect()
}

async fn push(grpc: std::net::SocketAddr, events: Vec<TapEvent>, counters: usize) {
    let mut client = TelemetryClient::new(channel(grpc).await);
    let report = Report {
        proxy: Some(ProxyMeta {
            deployment: Some(DeploymentRef {
                namespace: "demo".into(),
                name: "web".into(),
            }),
            pod: "web-1".into(),
            ..Default::default()
        }),
        end_unix_ms: now_ms(),
        counters: (0..counters)
            .map(|i| CounterSeries {
                metric: "request_total".into(),
                labels: vec![conduit_api::proto::mesh::v1::Label {
                    name: "n".into(),
                    value: i.to_string(),
                }],
                value: 1.0,
            })
            .collect(),
        tap_events: events,
        ..Default::default()
    };
    let summary = client
        .report(tokio_stream::iter(vec![report]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted_reports, 1);
}

/// Request ids of a search, in the order returned.
async fn search(http: std::net::SocketAddr, params: &str) -> Result<Vec<String>, (u16, String)> {
    let (status, body) = get(&format!("http://{http}/api/v1/tap/search?{params}")).await;
    if status != 200 {
        return Err((status, body));
    }
    let v = json(&body);
    Ok(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap().to_string())
        .collect())
}

async fn wait_for(http: std::net::SocketAddr, params: &str, n: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let found = search(http, params).await.unwrap();
        if found.len() >= n || started.elapsed() > Duration::from_secs(20) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(list: &[usize]) -> Vec<String> {
    list.iter().map(|i| format!("req-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_form_finds_exactly_its_events_newest_first() {
    let store = start_store(|_| {}).await;
    let t0 = now_ms() - 60_000;
    push(store.grpc(), known_events(t0), 0).await;
    assert_eq!(wait_for(store.http(), "q=", 8).await.len(), 8);
    let cases: Vec<(&str, Vec<usize>)> = vec![
        (
            "dst_deployment:voting AND status:[500 TO 599] AND path:/api/vote*",
            vec![7, 3, 1],
        ),
        ("latency_ms:>250", vec![7, 4, 1]),
        ("latency_ms:>=260 AND latency_ms:<300", vec![4]),
        ("grpc_status:14", vec![6]),
        ("request_id:req-2", vec![2]),
        ("src_deployment:web AND NOT status:200", vec![7, 5, 3, 1]),
        ("NOT status:200", vec![7, 5, 3, 1]),
        ("src_deployment:web -method:GET", vec![7, 6, 3, 1]),
        ("error:timeout", vec![7]),
        ("error_reason:response_timeout", vec![7]),
        ("response_timeout", vec![7]),
        ("error_reason:fail_fast", vec![]),
        ("method:GET AND authority:\"voting.demo:8080\"", vec![5, 0]),
        ("tls:false", vec![7]),
        ("path:/api/vote*", vec![7, 3, 1, 0]),
        (
            "src_identity:\"vote-bot.demo.serviceaccount.identity.conduit.cluster.local\"",
            vec![4],
        ),
        ("status:500 OR status:503", vec![5, 3, 1]),
        (
            "dst_namespace:demo AND direction:outbound AND response_bytes:[2005 TO *]",
            vec![7, 6, 5],
        ),
    ];
    for (q, want) in cases {
        let got = search(store.http(), &format!("q={}", enc(q)))
            .await
            .unwrap();
        assert_eq!(got, ids(&want), "{q}");
    }
    // Limit, and a time range.
    assert_eq!(
        search(store.http(), "q=&limit=3").await.unwrap(),
        ids(&[7, 6, 5])
    );
    let (s, e) = ((t0 + 2000) as f64 / 1000.0, (t0 + 4000) as f64 / 1000.0);
    assert_eq!(
        search(store.http(), &format!("q=&start={s}&end={e}"))
            .await
            .unwrap(),
        ids(&[4, 3, 2])
    );
    // The same over gRPC, with whole events.
    let mut q = QueryClient::new(channel(store.grpc()).await);
    let resp = q
        .search_tap(SearchTapRequest {
            query: "latency_ms:>250".into(),
            start_unix_ms: 0,
            end_unix_ms: 0,
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.events,
        vec![known_events(t0)[7].clone(), known_events(t0)[4].clone()]
    );
    // JSON fields.
    let (_, body) = get(&format!(
        "http://{}/api/v1/tap/search?q={}",
        store.http(),
        enc("request_id:req-7")
    ))
    .await;
    let e = &json(&body)["data"][0];
    assert_eq!(e["status"], 502);
    assert_eq!(e["latency_ms"], 251.0);
    assert_eq!(e["source"]["deployment"], "web");
    assert_eq!(e["destination"]["address"], "10.0.0.7:8080");
    assert_eq!(e["error"], "upstream timeout");
    assert_eq!(e["error_reason"], "response_timeout");

    // Bad queries: 400 with the parser's message, over HTTP and gRPC.
    for (q, msg) in [
        ("status:[500 TO", "Syntax Error"),
        ("nosuchfield:x", "Field does not exist"),
        ("status:abc", "integer"),
    ] {
        let (status, body) = search(store.http(), &format!("q={}", enc(q)))
            .await
            .unwrap_err();
        assert_eq!(status, 400, "{q}: {body}");
        assert!(
            body.contains("\"errorType\":\"bad_data\"") && body.contains(msg),
            "{q}: {body}"
        );
    }
    let err = q
        .search_tap(SearchTapRequest {
            query: "status:[500 TO".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let (status, _) = search(store.http(), "q=&limit=zero").await.unwrap_err();
    assert_eq!(status, 400);
    // Found by the tap_query fuzz target: it parses, and names a field
    // that does not exist only when it runs.
    let (status, body) = search(store.http(), &format!("q={}", enc(" %A e :\t*")))
        .await
        .unwrap_err();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no field"), "{body}");
    let (status, body) = search(store.http(), &format!("q={}", enc("error:*")))
        .await
        .unwrap_err();
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_new_matching_events() {
    let store = start_store(|_| {}).await;
    // SSE over HTTP.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let url = format!(
        "http://{}/api/v1/tap/follow?q={}",
        store.http(),
        enc("dst_deployment:voting")
    );
    let req = hyper::Request::get(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Default::default())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // And gRPC.
    let mut q = QueryClient::new(channel(store.grpc()).await);
    let mut grpc = q
        .follow_tap(SearchTapRequest {
            query: "dst_deployment:emoji".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = now_ms();
    push(store.grpc(), known_events(t)[..3].to_vec(), 0).await;
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(text.contains("req-0") && text.contains("req-1")) {
        assert!(Instant::now() < deadline, "no events followed: {text:?}");
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.contains("event: tap"), "{text}");
    assert!(
        !text.contains("req-2"),
        "a non-matching event was streamed: {text}"
    );
    let e = tokio::time::timeout(Duration::from_secs(20), grpc.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(e.request_id, "req-2");
    // A bad query is refused before streaming.
    let (status, _) = get(&format!(
        "http://{}/api/v1/tap/follow?q={}",
        store.http(),
        enc("status:[1 TO")
    ))
    .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_past_retention_are_deleted() {
    let store = start_store(|c| c.tap_retention_time = Duration::from_secs(4)).await;
    let now = now_ms();
    let mut events = known_events(now - 120_000);
    events.truncate(3);
    events.extend(known_events(now).into_iter().skip(5));
    push(store.grpc(), events, 0).await;
    let started = Instant::now();
    loop {
        let found = search(store.http(), "q=").await.unwrap();
        if found == ids(&[7, 6, 5]) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "old events still there: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, m) = get(&format!("http://{}/metrics", store.http())).await;
    assert!(
        m.contains("conduit_store_tap_events_deleted_total 3\n"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_tap_events_not_metrics() {
    let store = start_store(|c| c.tap_queue = 5).await;
    let t0 = now_ms() - 10_000;
    let many: Vec<TapEvent> = (0..2000)
        .map(|i| {
            event(
                i,
                t0 + i as i64,
                &Spec {
                    src: "web",
                    dst: "voting",
                    method: "GET",
                    path: "/",
                    status: 200,
                    latency_ms: 1,
                    grpc: None,
                    tls: true,
                    error: "",
                },
            )
        })
        .collect();
    push(store.grpc(), many, 50).await;
    let v = query(store.http(), "count(request_total)", now_ms()).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "50");
    let (_, m) = get(&format!("http://{}/metrics", store.http())).await;
    let dropped: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("conduit_store_tap_events_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped > 0 && dropped < 2000, "dropped {dropped}");
}

/// Opens `/api/v1/tap/follow` and returns its status and body stream.
async fn follow(http: std::net::SocketAddr) -> (u16, hyper::body::Incoming) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::get(format!("http://{http}/api/v1/tap/follow?q="))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Default::default())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    (resp.status().as_u16(), resp.into_body())
}

/// Request ids in the SSE frames that arrive within `window`.
async fn followed_within(body: &mut hyper::body::Incoming, window: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + window;
    let mut text = String::new();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text.matches("event: tap").count()
}

/// Followers are capped in number and rate, searches in results, and
/// events dated past the future window are not indexed (a follower that
/// saw one from 2100 would wait for a newer event forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_results_and_event_times_are_bounded() {
    let store = start_store(|c| {
        c.tap_max_followers = 1;
        c.tap_follow_rate = 4;
        c.tap_max_results = 5;
    })
    .await;
    let (status, mut first) = follow(store.http()).await;
    assert_eq!(status, 200);
    let (status, _) = follow(store.http()).await;
    assert_eq!(status, 503, "a second follower past --tap-max-followers 1");
    let mut q = QueryClient::new(channel(store.grpc()).await);
    let err = q
        .follow_tap(SearchTapRequest::default())
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("--tap-max-followers"), "{err}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = now_ms();
    let mut events: Vec<TapEvent> = known_events(now).into_iter().take(8).collect();
    let year_2100 = 4_102_444_800_000;
    events.push(event(
        99,
        year_2100,
        &Spec {
            src: "web",
            dst: "voting",
            method: "GET",
            path: "/from-the-future",
            status: 200,
            latency_ms: 1,
            grpc: None,
            tls: true,
            error: "",
        },
    ));
    push(store.grpc(), events, 0).await;
    // 4 a second, in polls of 2 every half second: the 8 take 2 s.
    let early = followed_within(&mut first, Duration::from_millis(1200)).await;
    assert!((1..=4).contains(&early), "{early} events in 1.2 s at 4/s");
    let rest = followed_within(&mut first, Duration::from_secs(4)).await;
    assert_eq!(early + rest, 8, "late, but none skipped");

    let found = wait_for(store.http(), "q=&limit=100", 5).await;
    assert_eq!(found.len(), 5, "--tap-max-results 5");
    assert!(!found.contains(&"req-99".to_string()));
    let (_, m) = get(&format!("http://{}/metrics", store.http())).await;
    assert!(
        m.contains("conduit_store_tap_events_refused_time_total 1\n"),
        "{m}"
    );
    // The place frees when the follower goes.
    drop(first);
    let started = Instant::now();
    loop {
        let (status, _) = follow(store.http()).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the follower's place was not given back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
