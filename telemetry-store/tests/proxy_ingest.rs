//! Proxy reports in, golden metrics and PromQL out.
//!
//! First with the reports a proxy's encoder builds (HdrHistograms of known
//! latencies, cumulative counters) pushed over a real gRPC stream: counts
//! and `rate()` are exact and quantiles equal those of one HdrHistogram
//! holding all the traffic. Then with a real `conduit-proxy` carrying real
//! HTTP requests to a backend of known latency and status.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conduit_api::histogram::{self, LATENCY_VALUE_SCALE};
use conduit_api::metrics::{self, label};
use conduit_api::proto::mesh::v1::{DeploymentRef, Label};
use conduit_api::proto::store::v1::query_client::QueryClient;
use conduit_api::proto::store::v1::{GoldenRequest, InstantQuery, Matcher, StatusRequest, matcher};
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{
    CounterSeries, GaugeSeries, HistogramSeries, ProxyMeta, Report,
};
use support::*;
use tonic::transport::Channel;

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the store")
}

fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// A deterministic latency in µs: mostly fast, a slow tail.
fn latency_us(i: u64) -> u64 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    match x % 100 {
        0..=79 => 300 + x % 4_000,
        80..=97 => 10_000 + x % 90_000,
        _ => 400_000 + x % 1_200_000,
    }
}

fn eq(name: &str, value: &str) -> Matcher {
    Matcher {
        name: name.into(),
        op: matcher::Op::Equal as i32,
        value: value.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoder_reports_give_exact_counts_and_quantiles() {
    let store = start_store(|_| {}).await;
    let mut client = TelemetryClient::new(channel(store.grpc()).await);
    let meta = ProxyMeta {
        deployment: Some(DeploymentRef {
            namespace: "demo".into(),
            name: "voting".into(),
        }),
        pod: "voting-1".into(),
        version: "test".into(),
        process_start_unix_ms: 1,
        ..Default::default()
    };
    let inbound = [
        (label::DIRECTION, "inbound"),
        (label::AUTHORITY, "voting.demo:8080"),
    ];
    let end0 = now_ms() - 60_000;
    let mut all = histogram::new_latency_histogram();
    let (mut total, mut failures, mut i) = (0u64, 0u64, 0u64);
    let mut reports = Vec::new();
    // 30 one-second intervals, 40-80 requests each.
    for k in 0..30i64 {
        let mut h = histogram::new_latency_histogram();
        let n = 40 + (k as u64 * 7) % 41;
        let mut sum = 0.0;
        for _ in 0..n {
            let us = latency_us(i);
            i += 1;
            histogram::record_latency_us(&mut h, us);
            histogram::record_latency_us(&mut all, us);
            sum += us as f64 * LATENCY_VALUE_SCALE;
            total += 1;
            if i % 9 == 0 {
                failures += 1;
            }
        }
        let end = end0 + (k + 1) * 1000;
        let mut success_labels = inbound.to_vec();
        success_labels.extend([
            (label::CLASSIFICATION, "success"),
            (label::STATUS_CODE, "200"),
        ]);
        let mut failure_labels = inbound.to_vec();
        failure_labels.extend([
            (label::CLASSIFICATION, "failure"),
            (label::STATUS_CODE, "500"),
        ]);
        reports.push(Report {
            proxy: Some(meta.clone()),
            sequence: k as u64,
            start_unix_ms: end - 1000,
            end_unix_ms: end,
            counters: vec![
                CounterSeries {
                    metric: metrics::REQUEST_TOTAL.into(),
                    labels: labels(&inbound),
                    value: total as f64,
                },
                CounterSeries {
                    metric: metrics::RESPONSE_TOTAL.into(),
                    labels: labels(&success_labels),
                    value: (total - failures) as f64,
                },
                CounterSeries {
                    metric: metrics::RESPONSE_TOTAL.into(),
                    labels: labels(&failure_labels),
                    value: failures as f64,
                },
            ],
            gauges: vec![GaugeSeries {
                metric: metrics::TCP_OPEN_CONNECTIONS.into(),
                labels: labels(&inbound),
                value: 3.0,
            }],
            histograms: vec![HistogramSeries {
                metric: metrics::RESPONSE_LATENCY_MS.into(),
                labels: labels(&inbound),
                hdr: histogram::encode(&h).unwrap(),
                value_scale: LATENCY_VALUE_SCALE,
                sum,
                exemplars: Vec::new(),
            }],
            ..Default::default()
        });
    }
    let summary = client
        .report(tokio_stream::iter(reports))
        .await
        .expect("report stream")
        .into_inner();
    assert_eq!(summary.accepted_reports, 30);
    assert_eq!(summary.rejected_series, 0);

    let mut q = QueryClient::new(channel(store.grpc()).await);
    // The window covers all 30 intervals exactly: (end0, end0 + 30 s].
    let golden = q
        .golden(GoldenRequest {
            matchers: vec![eq("direction", "inbound")],
            group_by: vec!["namespace".into(), "deployment".into()],
            window: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            end_unix_ms: end0 + 30_000,
            start_unix_ms: 0,
        })
        .await
        .expect("golden")
        .into_inner();
    assert_eq!(golden.rows.len(), 1, "{golden:?}");
    let row = &golden.rows[0];
    assert_eq!(
        row.group,
        labels(&[("deployment", "voting"), ("namespace", "demo")])
    );
    assert_eq!(row.success_count, total - failures);
    assert_eq!(row.failure_count, failures);
    assert!((row.requests_per_second - total as f64 / 30.0).abs() < 1e-9);
    let want = |q: f64| all.value_at_quantile(q) as f64 * LATENCY_VALUE_SCALE;
    assert_eq!(row.latency_p50_ms, want(0.5));
    assert_eq!(row.latency_p95_ms, want(0.95));
    assert_eq!(row.latency_p99_ms, want(0.99));
    assert_eq!(row.tcp_open_connections, 3.0);
    // A sub-window merges only its intervals.
    let last10 = q
        .golden(GoldenRequest {
            window: Some(prost_types::Duration {
                seconds: 10,
                nanos: 0,
            }),
            end_unix_ms: end0 + 30_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(last10.rows[0].success_count + last10.rows[0].failure_count < total);

    // PromQL over the same data: increase() over the whole span is exact
    // (no extrapolation at the series' true start), and histogram
    // buckets are cumulative counters of the same requests.
    let t = end0 + 30_000;
    let v = query(store.http(), "sum(request_total)", t).await;
    assert_eq!(v["data"]["result"][0]["value"][1], total.to_string());
    let v = query(store.http(), "sum(response_latency_ms_count)", t).await;
    assert_eq!(v["data"]["result"][0]["value"][1], total.to_string());
    let v = query(
        store.http(),
        "sum(response_latency_ms_bucket{le=\"+Inf\"})",
        t,
    )
    .await;
    assert_eq!(v["data"]["result"][0]["value"][1], total.to_string());
    let le_10 = all.count_between(0, 10_000);
    let v = query(
        store.http(),
        "sum(response_latency_ms_bucket{le=\"10\"})",
        t,
    )
    .await;
    assert_eq!(v["data"]["result"][0]["value"][1], le_10.to_string());
    // rate() over 29 s between the first and last report: exact increase
    // divided by the range, with extrapolation to the window edges.
    let v = query(store.http(), "sum(rate(request_total[30s]))", t).await;
    let rate: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rate > 0.0 && (rate * 30.0 - total as f64).abs() / (total as f64) < 0.1,
        "rate {rate}"
    );
    let p95 = q
        .instant(InstantQuery {
            query: "histogram_quantile(0.95, sum(rate(response_latency_ms_bucket[1m])) by (le))"
                .into(),
            time_unix_ms: t,
        })
        .await
        .unwrap()
        .into_inner();
    let p95 = p95.series[0].samples[0].value;
    // Bucket interpolation: within the bucket of the exact p95.
    let exact = want(0.95);
    let bounds = metrics::LATENCY_BUCKETS_MS;
    let b = bounds.partition_point(|&le| le < exact);
    let lower = if b == 0 { 0.0 } else { bounds[b - 1] };
    assert!(
        p95 >= lower && p95 <= bounds[b],
        "p95 {p95} outside bucket ({lower}, {}] of {exact}",
        bounds[b]
    );

    let status = q.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.reports_received_total, 30);
    assert_eq!(status.proxies.len(), 1);
    assert_eq!(status.proxies[0].proxy.as_ref().unwrap().pod, "voting-1");
    assert!(status.active_series > 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reports_are_counted_and_good_series_kept() {
    let store = start_store(|_| {}).await;
    let mut client = TelemetryClient::new(channel(store.grpc()).await);
    let t = now_ms();
    let report = Report {
        proxy: Some(ProxyMeta {
            pod: "p".into(),
            ..Default::default()
        }),
        end_unix_ms: t,
        counters: vec![
            CounterSeries {
                metric: "good_total".into(),
                labels: labels(&[("a", "1")]),
                value: 1.0,
            },
            CounterSeries {
                metric: "bad-name".into(),
                labels: vec![],
                value: 1.0,
            },
            CounterSeries {
                metric: "x".into(),
                labels: labels(&[("1a", "v")]),
                value: 1.0,
            },
            CounterSeries {
                metric: "x".into(),
                labels: labels(&[("a", "1"), ("a", "2")]),
                value: 1.0,
            },
        ],
        histograms: vec![
            HistogramSeries {
                metric: "lat".into(),
                labels: vec![],
                hdr: b"garbage".to_vec(),
                value_scale: 0.001,
                sum: 0.0,
                exemplars: Vec::new(),
            },
            HistogramSeries {
                metric: "lat2".into(),
                labels: vec![],
                hdr: histogram::encode(&histogram::new_latency_histogram()).unwrap(),
                value_scale: -1.0,
                sum: 0.0,
                exemplars: Vec::new(),
            },
        ],
        ..Default::default()
    };
    let summary = client
        .report(tokio_stream::iter(vec![report]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted_reports, 1);
    assert_eq!(summary.rejected_series, 5);
    let v = query(store.http(), "good_total", t).await;
    assert_eq!(v["data"]["result"][0]["metric"]["pod"], "p");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_proxy_reports_what_it_carried() {
    let store = start_store(|_| {}).await;
    let app = path_backend(
        &[("/slow", 80, 200), ("/medium", 20, 200), ("/fail", 5, 503)],
        (5, 200),
    )
    .await;
    let proxy = start_proxy(app, &[store.grpc()], &[]).await;
    let started = now_ms();

    // 100 requests: 50 fast, 35 medium, 10 slow, 5 failing.
    let plan: Vec<&str> = std::iter::repeat_n("/fast", 50)
        .chain(std::iter::repeat_n("/medium", 35))
        .chain(std::iter::repeat_n("/slow", 10))
        .chain(std::iter::repeat_n("/fail", 5))
        .collect();
    let sent = Arc::new(AtomicU64::new(0));
    let client_latencies = Arc::new(std::sync::Mutex::new(histogram::new_latency_histogram()));
    let mut tasks = Vec::new();
    for chunk in plan.chunks(10) {
        let chunk: Vec<String> = chunk.iter().map(|s| s.to_string()).collect();
        let (addr, sent, latencies) = (proxy.inbound_addr, sent.clone(), client_latencies.clone());
        tasks.push(tokio::spawn(async move {
            for path in chunk {
                let began = std::time::Instant::now();
                let (status, _) = get(&format!("http://{addr}{path}")).await;
                histogram::record_latency_us(
                    &mut latencies.lock().unwrap(),
                    began.elapsed().as_micros() as u64,
                );
                assert!(status == 200 || status == 503, "{path}: {status}");
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(sent.load(Ordering::Relaxed), 100);

    // Wait for the reports that cover the traffic to arrive.
    let mut q = QueryClient::new(channel(store.grpc()).await);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let row = loop {
        let g = q
            .golden(GoldenRequest {
                matchers: vec![eq("direction", "inbound")],
                group_by: vec!["deployment".into()],
                window: Some(prost_types::Duration {
                    seconds: 120,
                    nanos: 0,
                }),
                end_unix_ms: 0,
                start_unix_ms: 0,
            })
            .await
            .unwrap()
            .into_inner();
        if let Some(r) = g.rows.first()
            && r.success_count + r.failure_count == 100
        {
            break r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reports did not arrive: {g:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(now_ms() - started < 120_000);
    assert_eq!(row.group, labels(&[("deployment", "web")]));
    assert_eq!(row.success_count, 95);
    assert_eq!(row.failure_count, 5);
    // The proxy measures time to response headers: the backend's sleep
    // plus its own and the loopback's overhead.
    // Each request's proxy latency lies between the backend's sleep and
    // the latency the client saw, so each quantile does too.
    let client = client_latencies.lock().unwrap().clone();
    for (q, got, sleep) in [
        (0.5, row.latency_p50_ms, 5.0),
        (0.95, row.latency_p95_ms, 80.0),
        (0.99, row.latency_p99_ms, 80.0),
    ] {
        let seen = client.value_at_quantile(q) as f64 / 1000.0;
        assert!(
            got >= sleep && got <= seen * 1.001,
            "p{q}: {got} ms not within [{sleep}, {seen}]"
        );
    }
    // PromQL sees the same requests.
    let v = query(
        store.http(),
        "sum(request_total{direction=\"inbound\"})",
        now_ms(),
    )
    .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "100", "{v}");
}
