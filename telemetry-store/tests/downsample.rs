//! Downsampling: once raw data is past `--raw-retention`, queries read
//! the one-minute rollups instead, and `rate`, `increase` and
//! `histogram_quantile` answer within 1 % of what the raw data gave
//! (Golden quantiles from merged HdrHistogram windows: exactly).

mod support;

use std::time::Duration;

use conduit_api::histogram::{self, LATENCY_VALUE_SCALE};
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::store::v1::GoldenRequest;
use conduit_api::proto::store::v1::query_client::QueryClient;
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{HistogramSeries, ProxyMeta, Report};
use conduit_telemetry_store::{Config, Store};
use support::*;

const STEP: i64 = 10_000;
const BUCKETS: [&str; 6] = ["5", "10", "25", "50", "100", "+Inf"];

/// Three hours at 10 s: a counter with resets and a latency histogram's
/// cumulative buckets.
fn raw_data(t0: i64, points: i64) -> Vec<u8> {
    let mut counter = Vec::new();
    let mut buckets: Vec<Vec<(i64, f64)>> = vec![Vec::new(); BUCKETS.len()];
    let (mut c, mut b) = (0.0, [0.0f64; 6]);
    for k in 0..points {
        let t = t0 + k * STEP;
        // Resets every 2 h 3 min; the rate varies within each minute and
        // steps up every hour (rollups keep per-minute totals exactly;
        // variation inside a query window smaller than the rollup step is
        // what extrapolation cannot see).
        c = if k > 0 && k % 739 == 0 {
            5.0
        } else {
            c + 20.0 + (k % 6 * 3) as f64 + (k / 360) as f64 * 7.0
        };
        counter.push((t, c));
        let n = 50.0 + (k % 6 * 5) as f64;
        let shares = [0.2, 0.45, 0.7, 0.85, 0.97, 1.0];
        for (i, s) in shares.iter().enumerate() {
            b[i] += (n * s).round();
            buckets[i].push((t, b[i]));
        }
    }
    let mut series: Vec<WriteSeries<'_>> =
        vec![(vec![("__name__", "requests_total"), ("job", "a")], counter)];
    for (i, le) in BUCKETS.iter().enumerate() {
        series.push((
            vec![("__name__", "lat_bucket"), ("job", "a"), ("le", le)],
            buckets[i].clone(),
        ));
    }
    write_request(&series)
}

async fn value(addr: std::net::SocketAddr, q: &str, t: i64) -> f64 {
    let v = query(addr, q, t).await;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("{q} at {t}: {v}"))
        .parse()
        .unwrap()
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::for_data_dir(dir);
    with_tokens(&mut c);
    c.block_duration = Duration::from_secs(600);
    c.raw_retention = Duration::from_secs(3600);
    c.maintenance_interval = Duration::from_secs(3600);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_answer_like_raw_data() {
    let dir = tempfile::tempdir().unwrap();
    let points = 3 * 360;
    let t0 = (now_ms() - 5 * 3_600_000) / 60_000 * 60_000;
    let store = Store::open(config(dir.path())).unwrap();
    let running = store.start().await.unwrap();
    let addr = running.http_addr();
    let (status, body) = post(
        &format!("http://{addr}/api/v1/write"),
        "application/x-protobuf",
        raw_data(t0, points),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    // Latency windows, one report a second for 20 minutes, in the past.
    let mut client = TelemetryClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", running.grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let reports: Vec<Report> = (0..1200i64)
        .map(|k| {
            let mut h = histogram::new_latency_histogram();
            for i in 0..20u64 {
                histogram::record_latency_us(
                    &mut h,
                    200 + (k as u64 * 7919 + i * 104_729) % 90_000,
                );
            }
            Report {
                proxy: Some(ProxyMeta {
                    deployment: Some(DeploymentRef {
                        namespace: "demo".into(),
                        name: "web".into(),
                    }),
                    pod: "web-1".into(),
                    ..Default::default()
                }),
                start_unix_ms: t0 + k * 1000,
                end_unix_ms: t0 + (k + 1) * 1000,
                histograms: vec![HistogramSeries {
                    metric: "response_latency_ms".into(),
                    labels: vec![],
                    hdr: histogram::encode(&h).unwrap(),
                    value_scale: LATENCY_VALUE_SCALE,
                    sum: 0.0,
                    exemplars: Vec::new(),
                }],
                ..Default::default()
            }
        })
        .collect();
    client.report(tokio_stream::iter(reports)).await.unwrap();

    let queries = [
        "rate(requests_total[10m])",
        "increase(requests_total[30m])",
        "increase(requests_total[1h])",
        "histogram_quantile(0.9, sum by (le) (rate(lat_bucket[10m])))",
        "histogram_quantile(0.5, sum by (le) (rate(lat_bucket[30m])))",
    ];
    let times: Vec<i64> = (1..=5).map(|i| t0 + i * 1_800_000 + 3_333).collect();
    let mut golden_client = QueryClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", running.grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let golden = |end: i64| GoldenRequest {
        window: Some(prost_types::Duration {
            seconds: 600,
            nanos: 0,
        }),
        end_unix_ms: end,
        ..Default::default()
    };
    let golden_end = t0 + 900_000;
    let raw_golden = golden_client
        .golden(golden(golden_end))
        .await
        .unwrap()
        .into_inner();
    let mut raw = Vec::new();
    for q in queries {
        for &t in &times {
            raw.push(value(addr, q, t).await);
        }
    }
    let raw_points = value(addr, "count_over_time(requests_total[10m])", times[0]).await;
    assert_eq!(raw_points, 60.0);

    // Cut blocks (with rollups); raw blocks past an hour are deleted.
    store.maintain().await.unwrap();
    let (_, m) = get(&format!("http://{addr}/metrics")).await;
    assert!(
        !m.contains("conduit_store_blocks_deleted_total 0\n"),
        "no raw block expired:\n{m}"
    );
    let rolled_points = value(addr, "count_over_time(requests_total[10m])", times[0]).await;
    assert!(
        rolled_points <= 12.0,
        "{rolled_points} points in 10 minutes: not reading rollups"
    );

    let mut i = 0;
    for q in queries {
        for &t in &times {
            let got = value(addr, q, t).await;
            let want = raw[i];
            i += 1;
            assert!(
                (got - want).abs() <= 0.01 * want.abs(),
                "{q} at {t}: rollups {got}, raw {want}"
            );
        }
    }
    // Quantiles from merged windows are exact.
    let rolled_golden = golden_client
        .golden(golden(golden_end))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rolled_golden.rows, raw_golden.rows);
    // Raw data merged the proxies' one-second reports, rollups one-minute
    // windows: the answer says which.
    assert_eq!(raw_golden.latency_resolution_ms, 1000);
    assert_eq!(rolled_golden.latency_resolution_ms, 60_000);
    assert!(rolled_golden.rows[0].latency_p99_ms > 0.0);
    running.shutdown().await.unwrap();

    // After a restart, still from the rollups.
    let store = Store::open(config(dir.path())).unwrap();
    let running = store.start().await.unwrap();
    let got = value(running.http_addr(), queries[1], times[2]).await;
    assert!(
        (got - raw[7]).abs() <= 0.01 * raw[7],
        "after restart: {got} vs {}",
        raw[7]
    );
    running.shutdown().await.unwrap();
}
