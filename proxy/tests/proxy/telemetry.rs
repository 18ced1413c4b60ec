//! The telemetry push against a real gRPC receiver: reports carry exactly
//! the traffic that was sent, and a missing receiver costs reports, never
//! requests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conduit_api::histogram;
use conduit_api::proto::telemetry::v1::telemetry_server::{Telemetry, TelemetryServer};
use conduit_api::proto::telemetry::v1::{Report, ReportAck, ReportSummary};
use conduit_api::{DeploymentRef, Labels};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

use crate::support::*;

struct Receiver(mpsc::UnboundedSender<Report>);

#[tonic::async_trait]
impl Telemetry for Receiver {
    async fn report(
        &self,
        req: Request<Streaming<Report>>,
    ) -> Result<Response<ReportSummary>, Status> {
        let mut stream = req.into_inner();
        let mut n = 0;
        while let Some(r) = stream.message().await? {
            n += 1;
            let _ = self.0.send(r);
        }
        Ok(Response::new(ReportSummary {
            accepted_reports: n,
            rejected_series: 0,
        }))
    }

    type StreamStream = tokio_stream::wrappers::UnboundedReceiverStream<Result<ReportAck, Status>>;

    /// Takes each report and acknowledges it, as the store does once it
    /// has committed one.
    async fn stream(
        &self,
        req: Request<Streaming<Report>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut stream = req.into_inner();
        let (acks, rx) = mpsc::unbounded_channel();
        let reports = self.0.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = stream.message().await {
                let sequence = r.sequence;
                let _ = reports.send(r);
                let ack = ReportAck {
                    sequence,
                    rejected_series: 0,
                };
                if acks.send(Ok(ack)).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        ))
    }
}

fn receive_on(listener: TcpListener) -> mpsc::UnboundedReceiver<Report> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TelemetryServer::new(Receiver(tx)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    rx
}

fn labels_have(labels: &[conduit_api::proto::mesh::v1::Label], want: &[(&str, &str)]) -> bool {
    let l = Labels::from_proto(labels.to_vec()).expect("valid labels");
    want.iter().all(|(k, v)| l.get(k) == Some(*v))
}

fn counter(r: &Report, metric: &str, want: &[(&str, &str)]) -> f64 {
    r.counters
        .iter()
        .filter(|c| c.metric == metric && labels_have(&c.labels, want))
        .map(|c| c.value)
        .sum()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Report>) -> Report {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a report in time")
        .expect("receiver alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_carry_exactly_the_traffic() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store = listener.local_addr().unwrap();
    let mut rx = receive_on(listener);
    let app = upstream(|req| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        text(200, "ok")
    })
    .await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--telemetry-addr",
        &format!("http://{store}"),
        "--telemetry-interval",
        "200ms",
        "--tap-sample-rate",
        "1",
        "--tap-sample-max-rps",
        "1000",
    ])
    .await;
    let client = http1_client();
    for path in std::iter::repeat_n("/fast", 60).chain(std::iter::repeat_n("/slow", 40)) {
        assert_eq!(
            get(&client, proxy.inbound_addr, "web.test:80", path)
                .await
                .0,
            200
        );
    }

    let inbound = [
        ("direction", "inbound"),
        ("authority", "web.test:80"),
        ("deployment", "web"),
    ];
    let mut merged = histogram::new_latency_histogram();
    let mut sum_ms = 0.0;
    let mut events = Vec::new();
    let mut sequences = Vec::new();
    let last = loop {
        let r = next(&mut rx).await;
        sequences.push(r.sequence);
        for h in r
            .histograms
            .iter()
            .filter(|h| labels_have(&h.labels, &inbound))
        {
            assert_eq!(h.metric, "response_latency_ms");
            assert_eq!(h.value_scale, 0.001);
            merged.add(histogram::decode(&h.hdr).unwrap()).unwrap();
            sum_ms += h.sum;
        }
        events.extend(r.tap_events.clone());
        if merged.len() >= 100 && counter(&r, "response_total", &inbound) >= 100.0 {
            break r;
        }
    };
    assert_eq!(
        merged.len(),
        100,
        "every request in exactly one interval's histogram"
    );
    assert_eq!(counter(&last, "request_total", &inbound), 100.0);
    assert_eq!(
        counter(
            &last,
            "response_total",
            &[
                ("direction", "inbound"),
                ("status_code", "200"),
                ("classification", "success")
            ]
        ),
        100.0
    );
    // 60 % fast, 40 % slower than 30 ms.
    assert!(
        merged.value_at_quantile(0.5) < 20_000,
        "p50 {}µs",
        merged.value_at_quantile(0.5)
    );
    assert!(
        merged.value_at_quantile(0.7) >= 30_000,
        "p70 {}µs",
        merged.value_at_quantile(0.7)
    );
    let hist_sum_ms = merged.mean() * merged.len() as f64 / 1000.0;
    assert!(
        (sum_ms - hist_sum_ms).abs() / sum_ms < 0.01,
        "sum {sum_ms} vs {hist_sum_ms}"
    );
    assert!(sum_ms >= 40.0 * 30.0);

    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "no gaps: {sequences:?}"
    );
    assert_eq!(last.dropped_reports, 0);
    let meta = last.proxy.clone().unwrap();
    assert_eq!(
        meta.deployment.map(DeploymentRef::from),
        Some(DeploymentRef::new("test", "web"))
    );
    assert_eq!(meta.pod, "web-0");
    assert!(meta.process_start_unix_ms > 0);
    assert!(last.start_unix_ms < last.end_unix_ms);

    // Sampling at 1.0: one tap event per request, spread over the reports.
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| e.path == "/fast" || e.path == "/slow")
        .collect();
    assert_eq!(events.len(), 100);
    assert_eq!(events.iter().filter(|e| e.path == "/slow").count(), 40);
    assert!(
        events
            .iter()
            .all(|e| e.http_status == 200 && e.authority == "web.test:80")
    );
    assert!(
        events
            .iter()
            .filter(|e| e.path == "/slow")
            .all(|e| e.response_latency_us >= 30_000),
        "tap latency is measured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_store_costs_reports_not_requests() {
    let store: SocketAddr = closed_port().await;
    let app = upstream(|_| async { text(200, "ok") }).await;
    let proxy = proxy(&[
        "--inbound-app-addr",
        &app.addr.to_string(),
        "--telemetry-addr",
        &format!("http://{store}"),
        "--telemetry-interval",
        "50ms",
        "--telemetry-buffer",
        "3",
    ])
    .await;
    let client = http1_client();
    let start = Instant::now();
    for _ in 0..50 {
        let (status, _, body) = get(&client, proxy.inbound_addr, "web.test:80", "/").await;
        assert_eq!((status, body.as_ref()), (200, b"ok".as_ref()));
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "traffic was slowed: {:?}",
        start.elapsed()
    );
    let m = metrics_when(proxy.admin_addr, "dropped reports", |m| {
        m.sum("telemetry_reports_dropped_total", &[]) >= 1.0
    })
    .await;
    assert_eq!(m.sum("telemetry_reports_sent_total", &[]), 0.0);

    // The store comes up: the proxy reconnects, and its next reports say
    // how many were dropped and carry every request.
    let mut rx = receive_on(TcpListener::bind(store).await.unwrap());
    let r = next(&mut rx).await;
    assert!(
        r.dropped_reports >= 1,
        "drops are reported: {}",
        r.dropped_reports
    );
    assert_eq!(
        counter(&r, "request_total", &[("direction", "inbound")]),
        50.0
    );
}
