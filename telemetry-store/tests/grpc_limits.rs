//! The gRPC server's caps hold against a client that ignores them: a
//! flood of streams on one connection is refused past the stream cap and
//! the connection closed past the reset cap, connections past the cap wait
//! to be accepted, and a report larger than its limit is refused.

mod support;

use std::time::{Duration, Instant};

use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{CounterSeries, Report};
use conduit_testbed::hostile::{Flood, stream_flood};
use conduit_testbed::raw_h2::{ENHANCE_YOUR_CALM, RawH2, SETTINGS};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_is_refused_past_the_cap_then_the_connection_closed() {
    let s = start_store(|c| {
        c.grpc_max_streams = 10;
        c.grpc_max_reset_streams = 20;
    })
    .await;
    let Flood { refused, goaway } =
        stream_flood(s.grpc(), "/conduit.telemetry.v1.Telemetry/Report", 100).await;
    assert!(refused > 0, "no stream past the cap of 10 was refused");
    assert_eq!(
        goaway,
        Some(ENHANCE_YOUR_CALM),
        "past 20 refused streams the connection is closed ({refused} refused)"
    );
    // Others are served.
    let mut client = TelemetryClient::new(grpc_channel(s.grpc()).await);
    let summary = client
        .report(tokio_stream::iter(vec![Report::default()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted_reports, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_and_oversized_reports_are_refused() {
    let s = start_store(|c| {
        c.grpc_max_connections = 2;
        c.grpc_max_report_size = 10_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = RawH2::connect(s.grpc()).await;
        c.handshake().await;
        held.push(c);
    }
    let mut third = RawH2::connect(s.grpc()).await;
    let settings = |f: &(u8, u8, u32, Vec<u8>)| (f.0 == SETTINGS).then_some(());
    let early = third.until(Duration::from_millis(700), settings).await;
    assert!(early.is_none(), "a third connection was served");
    drop(held);
    let served = third.until(Duration::from_secs(5), settings).await;
    assert!(served.is_some(), "served once a place is free");
    drop(third);

    let mut client = TelemetryClient::new(grpc_channel(s.grpc()).await);
    let big = Report {
        counters: (0..1000)
            .map(|i| CounterSeries {
                metric: "request_total".into(),
                labels: vec![conduit_api::proto::mesh::v1::Label {
                    name: "n".into(),
                    value: i.to_string(),
                }],
                value: 1.0,
            })
            .collect(),
        ..Default::default()
    };
    let err = client
        .report(tokio_stream::iter(vec![big]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_report_stream_is_ended() {
    let s = start_store(|c| c.grpc_report_idle_timeout = Duration::from_secs(1)).await;
    let mut client = TelemetryClient::new(grpc_channel(s.grpc()).await);
    let (tx, rx) = tokio::sync::mpsc::channel::<Report>(1);
    tx.send(Report::default()).await.unwrap();
    let started = Instant::now();
    // The sender stays open and sends nothing more.
    let err = tokio::time::timeout(
        Duration::from_secs(8),
        client.report(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("the silent stream is still open after 8 s")
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err}");
    assert!(
        err.message().contains("--grpc-report-idle-timeout"),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    drop(tx);
}
