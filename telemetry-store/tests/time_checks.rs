//! Time is checked: samples and reports dated beyond the future window or
//! at integer extremes are refused and counted, and a sample from 2100
//! does not stop the ingest of current samples, neither at once nor after
//! the next block cut (the head's block range used to be derived from it).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{CounterSeries, ProxyMeta, Report};
use support::*;

const YEAR_2100_MS: i64 = 4_102_444_800_000;

async fn write(addr: SocketAddr, series: &[WriteSeries<'_>]) -> (u16, String) {
    post(
        &format!("http://{addr}/api/v1/write"),
        "application/x-protobuf",
        write_request(series),
    )
    .await
}

async fn metric(addr: SocketAddr, name: &str) -> String {
    let (_, text) = get(&format!("http://{addr}/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_string()
}

fn report(end_unix_ms: i64, value: f64) -> Report {
    Report {
        proxy: Some(ProxyMeta {
            deployment: Some(DeploymentRef {
                namespace: "demo".into(),
                name: "web".into(),
            }),
            pod: "web-1".into(),
            ..Default::default()
        }),
        start_unix_ms: end_unix_ms - 1000,
        end_unix_ms,
        counters: vec![CounterSeries {
            metric: "request_total".into(),
            labels: vec![],
            value,
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_from_2100_does_not_stop_current_ingest_before_or_after_a_block_cut() {
    let s = start_store(|c| {
        c.block_duration = Duration::from_secs(1);
        c.maintenance_interval = Duration::from_secs(3600);
    })
    .await;
    let http = s.http();
    let t0 = now_ms() - 5_000;
    let current = |t: i64, v: f64| vec![(vec![("__name__", "clocked")], vec![(t, v)])];
    assert_eq!(write(http, &current(t0, 0.0)).await.0, 204);
    let (status, body) = write(
        http,
        &[
            (vec![("__name__", "clocked")], vec![(YEAR_2100_MS, 1.0)]),
            (vec![("__name__", "far")], vec![(YEAR_2100_MS, 1.0)]),
            (vec![("__name__", "max")], vec![(i64::MAX, 1.0)]),
            (vec![("__name__", "min")], vec![(i64::MIN, 1.0)]),
            (vec![("__name__", "before_1970")], vec![(-1, 1.0)]),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("5 dated beyond --future-window or before 1970"),
        "{body}"
    );
    // A sample within the window (a clock a few minutes fast) is fine.
    let (status, body) = write(
        http,
        &[(
            vec![("__name__", "fast_clock")],
            vec![(now_ms() + 120_000, 1.0)],
        )],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(write(http, &current(t0 + 1000, 1.0)).await.0, 204);
    // Cut every block the head spans, then go on writing.
    s.running.store().maintain().await.unwrap();
    for k in 2..5 {
        let (status, body) = write(http, &current(t0 + k * 1000, k as f64)).await;
        assert_eq!(status, 204, "after the cut, sample {k}: {body}");
    }
    let v = query(http, "count_over_time(clocked[1m])", now_ms()).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "5", "{v}");
    assert_eq!(
        metric(http, "conduit_store_samples_refused_time_total").await,
        "5"
    );

    // A proxy whose clock is in 2100 has its reports refused, counted and
    // answered; another proxy's current report is stored.
    let mut client = TelemetryClient::new(grpc_channel(s.grpc()).await);
    let summary = client
        .report(tokio_stream::iter(vec![
            report(YEAR_2100_MS, 5.0),
            report(now_ms(), 7.0),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted_reports, 2);
    assert_eq!(summary.rejected_series, 1);
    assert_eq!(
        metric(http, "conduit_store_reports_refused_time_total").await,
        "1"
    );
    let v = query(http, "request_total", now_ms()).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "7", "{v}");
}
