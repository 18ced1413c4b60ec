//! What peers name is bounded: series per report (a larger report is cut,
//! not refused) and per proxy, the proxy table and the remote-write
//! metadata table (least recently seen go first, idle entries are
//! forgotten).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::store::v1::StatusRequest;
use conduit_api::proto::store::v1::query_client::QueryClient;
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{CounterSeries, ProxyMeta, Report, ReportSummary};
use support::*;

fn report(pod: &str, counters: usize, value: f64) -> Report {
    Report {
        proxy: Some(ProxyMeta {
            deployment: Some(DeploymentRef {
                namespace: "demo".into(),
                name: "web".into(),
            }),
            pod: pod.into(),
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
                value,
            })
            .collect(),
        ..Default::default()
    }
}

async fn send(grpc: SocketAddr, reports: Vec<Report>) -> ReportSummary {
    TelemetryClient::new(grpc_channel(grpc).await)
        .report(tokio_stream::iter(reports))
        .await
        .unwrap()
        .into_inner()
}

async fn metric(addr: SocketAddr, name: &str) -> String {
    let (_, text) = get(&format!("http://{addr}/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_string()
}

async fn count(addr: SocketAddr, q: &str) -> String {
    let v = query(addr, q, now_ms()).await;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or("0")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_over_its_size_is_cut_not_refused() {
    let s = start_store(|c| c.max_series_per_report = 5).await;
    let summary = send(s.grpc(), vec![report("web-1", 8, 1.0)]).await;
    assert_eq!(summary.accepted_reports, 1);
    assert_eq!(summary.rejected_series, 3);
    assert_eq!(count(s.http(), "count(request_total)").await, "5");
    assert_eq!(
        metric(s.http(), "conduit_store_report_series_cut_total").await,
        "3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_past_its_series_budget_gets_no_new_series() {
    let s = start_store(|c| c.max_series_per_proxy = 4).await;
    let summary = send(s.grpc(), vec![report("web-1", 6, 1.0)]).await;
    assert_eq!(summary.rejected_series, 2);
    // Its existing series keep working; the refused ones stay refused.
    let summary = send(s.grpc(), vec![report("web-1", 6, 2.0)]).await;
    assert_eq!(summary.rejected_series, 2);
    assert_eq!(
        count(s.http(), "count(request_total{pod=\"web-1\"} == 2)").await,
        "4"
    );
    // Another proxy has a budget of its own.
    let summary = send(s.grpc(), vec![report("web-2", 3, 1.0)]).await;
    assert_eq!(summary.rejected_series, 0);
    assert_eq!(count(s.http(), "count(request_total)").await, "7");
    assert_eq!(
        metric(s.http(), "conduit_store_proxy_series_refused_total").await,
        "4"
    );
}

/// A remote-write request describing `names`, hand-encoded.
fn metadata_request(names: &[String]) -> Vec<u8> {
    let mut req = Vec::new();
    for name in names {
        let mut m = vec![0x08, 0x01, 0x12, name.len() as u8];
        m.extend(name.as_bytes());
        m.extend([0x22, 0x01, b'h']);
        req.push(0x1a);
        req.push(m.len() as u8);
        req.extend(m);
    }
    snap::raw::Encoder::new().compress_vec(&req).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_metadata_tables_are_bounded_and_forget_idle_entries() {
    let s = start_store(|c| {
        c.max_proxies = 4;
        c.max_metadata = 20;
        c.peer_state_ttl = Duration::from_secs(2);
        c.maintenance_interval = Duration::from_millis(200);
    })
    .await;
    let reports = (0..20)
        .map(|i| report(&format!("pod-{i}"), 1, 1.0))
        .collect();
    send(s.grpc(), reports).await;
    let mut q = QueryClient::new(grpc_channel(s.grpc()).await);
    let listed = q
        .status(StatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .proxies;
    assert!(
        !listed.is_empty() && listed.len() <= 4,
        "{} proxies listed",
        listed.len()
    );
    assert!(
        listed
            .iter()
            .any(|p| p.proxy.as_ref().unwrap().pod == "pod-19")
    );
    let forgotten: u64 = metric(s.http(), "conduit_store_proxies_forgotten_total")
        .await
        .parse()
        .unwrap();
    assert!(forgotten >= 16, "{forgotten}");

    let url = format!("http://{}/api/v1/write", s.http());
    for batch in 0..5 {
        let names: Vec<String> = (0..30).map(|i| format!("m{batch}_{i}")).collect();
        let (status, body) = post(&url, "application/x-protobuf", metadata_request(&names)).await;
        assert_eq!(status, 204, "{body}");
    }
    let (_, body) = get(&format!("http://{}/api/v1/metadata", s.http())).await;
    let kept = json(&body)["data"].as_object().unwrap().len();
    let own = conduit_api::metrics::family::ALL.len();
    assert!(kept <= own + 20, "{kept} metadata entries");
    // Every family of the mesh is described, as the proxies write it.
    let data = &json(&body)["data"];
    for f in conduit_api::metrics::family::ALL {
        assert_eq!(data[f.name][0]["help"], f.help, "{}", f.name);
        assert_eq!(data[f.name][0]["type"], f.kind.as_str(), "{}", f.name);
    }
    assert!(body.contains("\"m4_19\""), "the newest are kept: {body}");

    // Past the TTL both forget what they no longer hear about.
    let started = Instant::now();
    loop {
        let listed = q
            .status(StatusRequest::default())
            .await
            .unwrap()
            .into_inner()
            .proxies;
        let (_, body) = get(&format!("http://{}/api/v1/metadata", s.http())).await;
        if listed.is_empty() && !body.contains("m4_19") {
            assert!(
                body.contains("request_total"),
                "the store's own entries stay"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "nothing forgotten"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
