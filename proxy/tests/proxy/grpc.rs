//! gRPC through two proxies (outbound → HTTP/2 → inbound) with tonic on
//! both ends: unary, server streaming, client streaming, and statuses that
//! only exist in trailers.

use std::pin::Pin;

use conduit_api::proto::identity::v1::identity_client::IdentityClient;
use conduit_api::proto::identity::v1::identity_server::{Identity, IdentityServer};
use conduit_api::proto::identity::v1::{CertifyRequest, CertifyResponse};
use conduit_api::proto::tap::v1::tap_client::TapClient;
use conduit_api::proto::tap::v1::tap_server::{Tap, TapServer};
use conduit_api::proto::tap::v1::{Filter, ObserveRequest, TapEvent};
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::telemetry_server::{Telemetry, TelemetryServer};
use conduit_api::proto::telemetry::v1::{Report, ReportAck, ReportSummary};
use conduit_proxy::Proxy;
use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::support::*;

/// The "application": a few RPCs of the mesh's own protos.
struct App;

#[tonic::async_trait]
impl Identity for App {
    async fn certify(
        &self,
        req: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let req = req.into_inner();
        if req.identity == "fail" {
            return Err(Status::permission_denied("not allowed"));
        }
        Ok(Response::new(CertifyResponse {
            leaf_certificate: req.token,
            ..Default::default()
        }))
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<TapEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Tap for App {
    type ObserveStream = Events;

    /// Streams `limit` events, then fails with UNAVAILABLE when the filter's
    /// method is `FAIL`.
    async fn observe(&self, req: Request<ObserveRequest>) -> Result<Response<Events>, Status> {
        let req = req.into_inner();
        let fail = req.filter.is_some_and(|f| f.method == "FAIL");
        let events = futures_util::stream::iter((0..req.limit).map(|i| {
            Ok(TapEvent {
                request_id: i.to_string(),
                ..Default::default()
            })
        }));
        let end = futures_util::stream::iter(fail.then(|| Err(Status::unavailable("gone"))));
        Ok(Response::new(Box::pin(events.chain(end))))
    }
}

#[tonic::async_trait]
impl Telemetry for App {
    async fn report(
        &self,
        req: Request<Streaming<Report>>,
    ) -> Result<Response<ReportSummary>, Status> {
        let mut stream = req.into_inner();
        let mut n = 0;
        while let Some(r) = stream.message().await? {
            assert_eq!(r.sequence, n + 1);
            n += 1;
        }
        Ok(Response::new(ReportSummary {
            accepted_reports: n,
            rejected_series: 0,
        }))
    }

    type StreamStream = Pin<Box<dyn Stream<Item = Result<ReportAck, Status>> + Send>>;

    async fn stream(
        &self,
        _: Request<Streaming<Report>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        Err(Status::unimplemented(
            "this application takes client streams only",
        ))
    }
}

async fn grpc_app() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IdentityServer::new(App))
            .add_service(TapServer::new(App))
            .add_service(TelemetryServer::new(App))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

/// app ← proxy B (inbound) ← proxy A (outbound) ← channel.
async fn mesh() -> (Proxy, Proxy, Channel) {
    let app = grpc_app().await;
    let b = proxy(&[
        "--inbound-app-addr",
        &app.to_string(),
        "--deployment",
        "grpc",
    ])
    .await;
    let endpoint = format!("grpc.test:50051={};h2;deployment=test/grpc", b.inbound_addr);
    let a = proxy(&["--outbound-endpoint", &endpoint]).await;
    let channel = Endpoint::from_shared(format!("http://{}", a.outbound_addr))
        .unwrap()
        .origin("http://grpc.test:50051".parse().unwrap())
        .connect()
        .await
        .unwrap();
    (a, b, channel)
}

const OUT: [(&str, &str); 3] = [
    ("direction", "outbound"),
    ("authority", "grpc.test:50051"),
    ("dst_deployment", "grpc"),
];

fn with<'a>(base: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(extra).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_statuses_are_classified_from_grpc_status() {
    let (a, b, channel) = mesh().await;
    let mut client = IdentityClient::new(channel);
    for i in 0..6u8 {
        let rsp = client
            .certify(CertifyRequest {
                identity: "ok".into(),
                token: vec![i; 3],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rsp.into_inner().leaf_certificate, vec![i; 3]);
    }
    for _ in 0..4 {
        let err = client
            .certify(CertifyRequest {
                identity: "fail".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(err.message(), "not allowed");
    }
    for (proxy, base) in [(&a, OUT.to_vec()), (&b, vec![("direction", "inbound")])] {
        let m = metrics_when(proxy.admin_addr, "10 gRPC responses", |m| {
            m.sum("response_total", &base) >= 10.0
        })
        .await;
        assert_eq!(m.sum("request_total", &base), 10.0);
        let ok = with(
            &base,
            &[
                ("status_code", "200"),
                ("grpc_status", "0"),
                ("classification", "success"),
            ],
        );
        let denied = with(
            &base,
            &[
                ("status_code", "200"),
                ("grpc_status", "7"),
                ("classification", "failure"),
            ],
        );
        assert_eq!(m.sum("response_total", &ok), 6.0, "{}", m.text);
        assert_eq!(m.sum("response_total", &denied), 4.0, "{}", m.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_and_trailers() {
    let (a, _b, channel) = mesh().await;
    let mut client = TapClient::new(channel);
    let mut stream = client
        .observe(ObserveRequest {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        ids.push(e.request_id);
    }
    assert_eq!(ids, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());

    let mut stream = client
        .observe(ObserveRequest {
            limit: 2,
            filter: Some(Filter {
                method: "FAIL".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    assert!(stream.message().await.unwrap().is_some());
    let status = stream.message().await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "the trailer's status arrives"
    );
    assert_eq!(status.message(), "gone");

    let m = metrics_when(a.admin_addr, "2 streaming responses", |m| {
        m.sum("response_total", &OUT) >= 2.0
    })
    .await;
    assert_eq!(
        m.sum(
            "response_total",
            &with(&OUT, &[("grpc_status", "0"), ("classification", "success")])
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "response_total",
            &with(
                &OUT,
                &[("grpc_status", "14"), ("classification", "failure")]
            )
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streaming() {
    let (_a, _b, channel) = mesh().await;
    let mut client = TelemetryClient::new(channel);
    let reports = (1..=20).map(|sequence| Report {
        sequence,
        ..Default::default()
    });
    let summary = client
        .report(futures_util::stream::iter(reports))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted_reports, 20);
}
