//! Decoders bound what they allocate before they allocate it: a histogram
//! whose header claims a 4 GiB payload, a five-byte remote-write body
//! whose snappy header claims 200 MiB, a request of endless labels or
//! samples, and a block whose meta.json claims 2^60 series are refused (or
//! read) without reserving what they claim.

mod support;

use std::time::Duration;

use conduit_api::histogram::{self, LATENCY_VALUE_SCALE};
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{HistogramSeries, ProxyMeta, Report};
use conduit_telemetry_store::{Config, Store};
use support::*;

/// The peak resident memory of this process (one test per process under
/// nextest), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kb * 1024
}

fn histogram_series(hdr: Vec<u8>, route: &str) -> HistogramSeries {
    HistogramSeries {
        metric: "response_latency_ms".into(),
        labels: vec![conduit_api::proto::mesh::v1::Label {
            name: "route".into(),
            value: route.into(),
        }],
        hdr,
        sum: 1.0,
        value_scale: LATENCY_VALUE_SCALE,
        exemplars: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_histogram_claiming_a_4_gib_payload_is_refused_without_allocating_it() {
    let s = start_store(|_| {}).await;
    let mut h = histogram::new_latency_histogram();
    histogram::record_latency_us(&mut h, 1500);
    let good = histogram::encode(&h).unwrap();
    let mut bomb = good.clone();
    // Bytes 4..8 of the V2 header: the payload length.
    bomb[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let before = peak_rss();
    let report = Report {
        proxy: Some(ProxyMeta {
            deployment: Some(DeploymentRef {
                namespace: "demo".into(),
                name: "web".into(),
            }),
            pod: "web-1".into(),
            ..Default::default()
        }),
        start_unix_ms: now_ms() - 1000,
        end_unix_ms: now_ms(),
        histograms: vec![
            histogram_series(bomb, "/bomb"),
            histogram_series(good, "/ok"),
        ],
        ..Default::default()
    };
    let mut client = TelemetryClient::new(grpc_channel(s.grpc()).await);
    let summary = client
        .report(tokio_stream::iter(vec![report]))
        .await
        .unwrap()
        .into_inner();
    let grown = peak_rss().saturating_sub(before);
    assert_eq!(
        summary.rejected_series, 1,
        "the bomb is refused, the rest stored"
    );
    assert!(
        grown < 256 << 20,
        "peak memory grew by {} MiB decoding one report",
        grown >> 20
    );
    let v = query(s.http(), "response_latency_ms_count", now_ms()).await;
    let routes: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"]["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["/ok"], "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snappy_header_claiming_200_mib_is_refused_without_allocating_it() {
    let s = start_store(|_| {}).await;
    let before = peak_rss();
    // Uncompressed length 100 << 21 (200 MiB), then one literal byte.
    let body = vec![0x80, 0x80, 0x80, 0x64, 0x00];
    let (status, text) = post(
        &format!("http://{}/api/v1/write", s.http()),
        "application/x-protobuf",
        body,
    )
    .await;
    let grown = peak_rss().saturating_sub(before);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("snappy body can hold"), "{text}");
    assert!(grown < 64 << 20, "peak memory grew by {} MiB", grown >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_stops_at_its_label_and_sample_counts() {
    let s = start_store(|c| {
        c.max_labels_per_series = 4;
        c.remote_write_max_samples = 10;
    })
    .await;
    let url = format!("http://{}/api/v1/write", s.http());
    let t = now_ms();
    let wide = write_request(&[(
        vec![
            ("__name__", "m"),
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("d", "4"),
        ],
        vec![(t, 1.0)],
    )]);
    let (status, body) = post(&url, "application/x-protobuf", wide).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("--max-labels-per-series"), "{body}");
    let long: Vec<(i64, f64)> = (0..11).map(|i| (t + i, 1.0)).collect();
    let (status, body) = post(
        &url,
        "application/x-protobuf",
        write_request(&[(vec![("__name__", "m")], long)]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("--remote-write-max-samples"), "{body}");
    let (status, body) = post(
        &url,
        "application/x-protobuf",
        write_request(&[(vec![("__name__", "m"), ("a", "1")], vec![(t, 1.0)])]),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_claiming_2_pow_60_series_opens_by_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = Config::for_data_dir(dir.path());
        with_tokens(&mut c);
        c.block_duration = Duration::from_secs(60);
        c.maintenance_interval = Duration::from_secs(3600);
        c
    };
    let t0 = now_ms() - 600_000;
    let samples: Vec<(i64, f64)> = (0..60).map(|i| (t0 + i * 10_000, i as f64)).collect();
    {
        let running = Store::open(config()).unwrap().start().await.unwrap();
        let (status, body) = post(
            &format!("http://{}/api/v1/write", running.http_addr()),
            "application/x-protobuf",
            write_request(&[(vec![("__name__", "blocked")], samples)]),
        )
        .await;
        assert_eq!(status, 204, "{body}");
        running.store().maintain().await.unwrap();
        running.shutdown().await.unwrap();
    }
    let mut damaged = 0;
    for entry in std::fs::read_dir(dir.path().join("blocks")).unwrap() {
        let meta = entry.unwrap().path().join("meta.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        v["series"] = serde_json::json!(1u64 << 60);
        std::fs::write(&meta, v.to_string()).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0, "a block was cut");
    let running = Store::open(config()).unwrap().start().await.unwrap();
    let v = query(
        running.http_addr(),
        "count_over_time(blocked[15m])",
        now_ms(),
    )
    .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "60", "{v}");
    running.shutdown().await.unwrap();
}
