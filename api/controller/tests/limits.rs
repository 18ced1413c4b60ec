//! The controller's listeners hold their timeouts and caps against hostile
//! clients, as its flags set them: a slowloris on the HTTP port is cut off
//! at the header timeout, stream floods on the public and mesh gRPC ports
//! are refused past the stream cap and the connection closed past the
//! reset cap, live taps past their cap get RESOURCE_EXHAUSTED, and so do
//! certificate requests past theirs.

use std::time::Duration;

use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::public::v1::TapRequest;
use conduit_api::proto::public::v1::api_client::ApiClient;
use conduit_testbed::hostile::{closed_after, stream_flood};
use conduit_testbed::raw_h2::ENHANCE_YOUR_CALM;
use conduit_testbed::{Controller, Proxy, ProxySpec, TempDir, Upstream};

/// A controller with no store and `extra` flags, discovering `web-0` of
/// `demo/web`, tapped at `tap`.
fn controller(dir: &TempDir, tap: std::net::SocketAddr, extra: &[&str]) -> Controller {
    let path = dir.path().join("discovery.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nnamespaces:\n  demo:\n    deployments:\n      web:\n        pods: [{{name: web-0, addr: 127.0.0.1:1, tap: {tap}}}]\n"
        ),
    )
    .unwrap();
    Controller::start_with_args("http://127.0.0.1:9", &path, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_cut_off_at_the_header_timeout() {
    let dir = TempDir::new("limits");
    let c = controller(
        &dir,
        conduit_testbed::free_addr(),
        &["--http-header-timeout", "1s"],
    );
    let took = closed_after(
        c.http,
        b"GET /healthz HTTP/1.1\r\nx-slow: ",
        b"abcdefgh",
        Duration::from_secs(8),
    )
    .await;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}, the header timeout is 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_floods_are_refused_on_the_public_and_mesh_ports() {
    let dir = TempDir::new("limits");
    let c = controller(
        &dir,
        conduit_testbed::free_addr(),
        &["--grpc-max-streams", "10", "--grpc-max-reset-streams", "20"],
    );
    for (port, path) in [
        (c.grpc, "/conduit.public.v1.Api/Tap"),
        (c.mesh, "/conduit.destination.v1.Destination/Get"),
    ] {
        let flood = stream_flood(port, path, 100).await;
        assert!(flood.refused > 0, "{path}: nothing refused past 10 streams");
        assert_eq!(
            flood.goaway,
            Some(ENHANCE_YOUR_CALM),
            "{path}: past 20 refused streams the connection is closed ({flood:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_taps_past_the_cap_are_refused_until_one_ends() {
    let app = Upstream::start(Default::default());
    let proxy = Proxy::start(ProxySpec {
        namespace: "demo",
        deployment: "web",
        pod: "web-0",
        app: app.addr,
        telemetry: None,
        destination: None,
        extra: vec![],
    });
    let dir = TempDir::new("limits");
    let c = controller(&dir, proxy.tap, &["--max-live-taps", "1"]);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let tap = || {
        let mut req = tonic::Request::new(TapRequest {
            deployment: Some(mesh::DeploymentRef {
                namespace: "demo".into(),
                name: "web".into(),
            }),
            ..Default::default()
        });
        req.metadata_mut()
            .insert("authorization", c.bearer().parse().unwrap());
        let mut client = ApiClient::new(channel.clone());
        async move { client.tap(req).await }
    };
    let first = tap().await.expect("the first live tap");
    let refused = tap().await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(refused.message().contains("--max-live-taps"), "{refused:?}");
    drop(first);
    // The slot is given back when the client goes away.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tap().await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the slot never came back: {e:?}"),
        }
    }
}
