//! Two stores fed by the same proxies, as Prometheus HA pairs are run:
//! each proxy sends every report to both and keeps what a store has not
//! acknowledged. One store killed with SIGKILL and restarted under steady
//! traffic (hung first, so reports die in its socket) gets back every
//! report it missed while down, stores none twice,
//! and when it was down longer than the proxy's buffer, says how many
//! reports it missed.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conduit_api::proto::tap::v1::TapEvent;
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{ProxyMeta, Report};
use http_body_util::Full;
use support::*;

const INBOUND: &str = r#"request_total{deployment="web",direction="inbound"}"#;

/// Requests through `proxy` every 10 ms until `stop`; counts the answered.
fn steady_traffic(
    proxy: SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Bounded: at most a minute of traffic whatever happens.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let req = hyper::Request::get(format!("http://{proxy}/"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            if send(req).await.0 == 200 {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// The value of `expr` at `t_ms` on the store at `http`, 0 when absent.
async fn value(http: SocketAddr, expr: &str, t_ms: i64) -> f64 {
    let v = query(http, expr, t_ms).await;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map_or(0.0, |s| s.parse().unwrap())
}

/// Waits until `expr` is `want` on the store at `http`; `log`: the
/// store's own, to show if it never is.
async fn wait_for_count(http: SocketAddr, expr: &str, want: f64, log: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = value(http, expr, now_ms()).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{http}: {expr} = {got}, want {want}\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn store_metric(http: SocketAddr, name: &str) -> f64 {
    let (status, text) = get(&format!("http://{http}/metrics")).await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_store_gets_back_every_report_it_missed_once_restarted() {
    let b = start_store(|_| {}).await;
    let dir_a = tempfile::tempdir().unwrap();
    let a = StoreProcess::spawn(dir_a.path(), &[]);
    let grpc_a = a.grpc;
    let app = path_backend(&[], (0, 200)).await;
    // 100 reports of 200 ms cover the 4 s the store is down.
    let proxy = start_proxy(app, &[grpc_a, b.grpc()], &["--telemetry-buffer=100"]).await;
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let traffic = steady_traffic(proxy.inbound_addr, stop.clone(), sent.clone());

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Hung first, then killed: the reports written to it meanwhile sit
    // unread in its socket, and die with it unacknowledged.
    let down_from = now_ms();
    a.signal("STOP");
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.kill_9();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let down_until = now_ms();
    let a = StoreProcess::spawn_on(dir_a.path(), grpc_a, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let total = sent.load(Ordering::Relaxed) as f64;
    assert!(total > 200.0, "steady traffic: {total}");

    // Both end with every request counted, the histograms too: a report
    // sent again after the restart was not added twice.
    let a_log = || a.log.lock().unwrap().clone();
    for (http, log) in [
        (b.http(), "(store B runs in this test)".into()),
        (a.http, a_log()),
    ] {
        wait_for_count(http, &format!("sum({INBOUND})"), total, &log).await;
        let latencies = r#"sum(response_latency_ms_count{deployment="web",direction="inbound"})"#;
        wait_for_count(http, latencies, total, &log).await;
    }
    // The restarted store holds the reports of its outage, as its twin does.
    let window = (down_until - down_from) / 1000;
    let during = format!("sum(count_over_time({INBOUND}[{window}s]))");
    let (in_a, in_b) = (
        value(a.http, &during, down_until).await,
        value(b.http(), &during, down_until).await,
    );
    assert!(
        in_b >= 15.0,
        "a report every 200 ms while A was down: {in_b}"
    );
    assert_eq!(in_a, in_b, "A got back every report of its outage");
    assert_eq!(
        store_metric(a.http, "conduit_store_reports_missed_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_down_longer_than_the_buffer_says_how_many_reports_it_missed() {
    let b = start_store(|_| {}).await;
    let dir_a = tempfile::tempdir().unwrap();
    let a = StoreProcess::spawn(dir_a.path(), &[]);
    let grpc_a = a.grpc;
    let app = path_backend(&[], (0, 200)).await;
    let proxy = start_proxy(app, &[grpc_a, b.grpc()], &["--telemetry-buffer=3"]).await;
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let traffic = steady_traffic(proxy.inbound_addr, stop.clone(), sent.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.kill_9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = StoreProcess::spawn_on(dir_a.path(), grpc_a, &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let total = sent.load(Ordering::Relaxed) as f64;

    // Counters are cumulative: the count is whole whatever was missed.
    let log = a.log.lock().unwrap().clone();
    wait_for_count(a.http, &format!("sum({INBOUND})"), total, &log).await;
    // Only A's buffer overflowed, so the proxy's drops are A's misses.
    let (status, text) = get(&format!("http://{}/metrics", proxy.admin_addr)).await;
    assert_eq!(status, 200);
    let dropped: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("telemetry_reports_dropped_total")?
                .split_whitespace()
                .last()?
                .parse()
                .ok()
        })
        .unwrap();
    assert!(
        dropped >= 8.0,
        "3 s down, a report every 200 ms, 3 kept: {dropped}"
    );
    assert_eq!(
        store_metric(a.http, "conduit_store_reports_missed_total").await,
        dropped
    );
    assert!(
        a.log
            .lock()
            .unwrap()
            .contains("reports meant for this store were dropped"),
        "the store says so in its log"
    );
    assert_eq!(
        store_metric(b.http(), "conduit_store_reports_missed_total").await,
        0.0
    );
}

/// A report whose acknowledgement was lost comes again: it is acknowledged
/// again and stored once, its tap events indexed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_sent_twice_is_stored_once() {
    let store = start_store(|_| {}).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", store.grpc()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = TelemetryClient::new(channel);
    let report = Report {
        proxy: Some(ProxyMeta {
            deployment: Some(conduit_api::DeploymentRef::new("demo", "web").into()),
            pod: "web-1".into(),
            process_start_unix_ms: now_ms() - 10_000,
            ..Default::default()
        }),
        sequence: 1,
        start_unix_ms: now_ms() - 1000,
        end_unix_ms: now_ms(),
        tap_events: vec![TapEvent {
            request_id: "sent-twice".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let reports = tokio_stream::iter([report.clone(), report]);
    let mut acks = client.stream(reports).await.unwrap().into_inner();
    for _ in 0..2 {
        let ack = acks.message().await.unwrap().expect("an acknowledgement");
        assert_eq!(ack.sequence, 1);
    }
    assert_eq!(
        store_metric(store.http(), "conduit_store_reports_repeated_total").await,
        1.0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = format!(
        "http://{}/api/v1/tap/search?q={}",
        store.http(),
        enc("request_id:sent-twice")
    );
    loop {
        let (status, body) = get(&url).await;
        assert_eq!(status, 200, "{body}");
        let found = json(&body)["data"].as_array().unwrap().len();
        assert!(found <= 1, "indexed twice: {body}");
        if found == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never indexed: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
