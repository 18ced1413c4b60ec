//! A client choosing label values against a real `conduit-proxy` process:
//! 20 000 requests through its inbound side, each with a different `Host`.
//! Before label sets were bounded this grew the proxy by ~36 KiB per host
//! (a series with its latency histogram each), past any sidecar's memory
//! limit. Now every unknown authority shares one `_overflow` series: the
//! proxy's resident memory barely moves, `/metrics` keeps a handful of
//! `request_total` series, and each folded authority is counted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conduit_testbed::{Proxy, ProxySpec, Upstream, http_get, metric_sum};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

const HOSTS: usize = 20_000;
/// Connections the hosts are spread over (each sends its share in turn).
const CONNECTIONS: usize = 8;
const MAX_RSS_GROWTH: u64 = 16 << 20;
/// The default `--metrics-max-label-sets`.
const BUDGET: usize = 1_000;
/// Generous for a debug build on a loaded machine: the loop is bounded by
/// this as well as by its count.
const DEADLINE: Duration = Duration::from_secs(120);

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Sends one GET per host, spread over `CONNECTIONS` kept-alive HTTP/1.1
/// connections; returns how many answered 200.
fn send_all(target: SocketAddr, hosts: Vec<String>) -> usize {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut shares: Vec<Vec<String>> = vec![Vec::new(); CONNECTIONS];
        for (i, h) in hosts.into_iter().enumerate() {
            shares[i % CONNECTIONS].push(h);
        }
        let tasks: Vec<_> = shares
            .into_iter()
            .map(|share| tokio::spawn(send_on_one_connection(target, share, deadline)))
            .collect();
        let mut ok = 0;
        for t in tasks {
            ok += t.await.expect("sender task");
        }
        ok
    })
}

async fn send_on_one_connection(
    target: SocketAddr,
    hosts: Vec<String>,
    deadline: tokio::time::Instant,
) -> usize {
    let stream = tokio::net::TcpStream::connect(target)
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let mut ok = 0;
    for host in hosts {
        if tokio::time::Instant::now() > deadline {
            break;
        }
        let req = http::Request::get("/")
            .header(http::header::HOST, host)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let Ok(rsp) = sender.send_request(req).await else {
            break;
        };
        let status = rsp.status();
        let _ = rsp.into_body().collect().await;
        ok += usize::from(status == http::StatusCode::OK);
    }
    ok
}

#[test]
fn twenty_thousand_hosts_cost_neither_memory_nor_series() {
    let app = Upstream::start(Default::default());
    let proxy = Proxy::start(ProxySpec {
        namespace: "shop",
        deployment: "web",
        pod: "web-0",
        app: app.addr,
        telemetry: None,
        destination: None,
        extra: vec![],
    });
    let pid = proxy.process.id();

    // As many requests for the Deployment's own name first, so connection
    // buffers and the allocator are warm before the baseline.
    let own = vec!["web.shop.svc.cluster.local:8080".to_string(); 2_000];
    assert_eq!(send_all(proxy.inbound, own), 2_000);
    let before = rss_bytes(pid);

    let start = Instant::now();
    let hosts: Vec<String> = (0..HOSTS)
        .map(|i| format!("h{i}.attacker.example:80"))
        .collect();
    let ok = send_all(proxy.inbound, hosts);
    let elapsed = start.elapsed();
    let after = rss_bytes(pid);

    let (status, _, text) = http_get(proxy.admin, "/metrics").expect("/metrics");
    assert_eq!(status, 200);
    let series = text
        .lines()
        .filter(|l| l.starts_with("request_total{"))
        .count();
    let folded = metric_sum(
        &text,
        "metrics_label_sets_overflow_total",
        &[("family", "request_total"), ("reason", "unknown_authority")],
    );
    let growth = after.saturating_sub(before);
    eprintln!(
        "{HOSTS} hosts in {elapsed:?} ({ok} answered 200): RSS {} KiB -> {} KiB (+{} KiB), {series} request_total series, {} folded",
        before / 1024,
        after / 1024,
        growth / 1024,
        folded as u64
    );
    assert_eq!(ok, HOSTS, "every request answered within {DEADLINE:?}");
    assert!(
        growth < MAX_RSS_GROWTH,
        "RSS grew by {} KiB (from {} KiB)",
        growth / 1024,
        before / 1024
    );
    assert!(series <= BUDGET, "{series} request_total series");
    assert_eq!(
        metric_sum(
            &text,
            "request_total",
            &[("direction", "inbound"), ("authority", "_overflow")]
        ),
        HOSTS as f64,
        "every unknown authority counted in the overflow series"
    );
    assert_eq!(folded, HOSTS as f64, "every folded authority counted");
    assert_eq!(
        metric_sum(
            &text,
            "request_total",
            &[("authority", "web.shop.svc.cluster.local:8080")]
        ),
        2_000.0,
        "the Deployment's own name keeps its series"
    );
}
