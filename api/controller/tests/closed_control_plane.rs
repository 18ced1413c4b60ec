//! The store takes telemetry from mesh identities only, and a report only
//! for a Deployment its sender runs as, as the controller's discovery
//! says (`Workloads`). Real controller and store processes with identity
//! on; the reporter is this test, certified by the real identity service
//! as `web`, speaking the proxies' telemetry protocol over mTLS.

use std::time::{Duration, Instant};

use conduit_api::IdentityName;
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::tap::v1::{Peer, TapEvent};
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{CounterSeries, ProxyMeta, Report, ReportSummary};
use conduit_identity::tls::{Alpn, client_config};
use conduit_identity::{Credentials, TrustAnchors};
use conduit_testbed::{Controller, MeshIdentity, Store, TempDir, http_get, metric_sum};

const TD: &str = "cluster.local";

fn id(sa: &str) -> IdentityName {
    IdentityName::new(sa, "demo")
}

struct Plane {
    identity: MeshIdentity,
    controller: Controller,
    store: Store,
    dir: TempDir,
}

impl Plane {
    fn start() -> Self {
        let store_id = IdentityName::store("conduit", TD);
        let identity = MeshIdentity::new(&[id("web"), id("voting"), store_id.clone()]);
        let dir = TempDir::new("closed");
        let file = dir.path().join("discovery.yaml");
        std::fs::write(
            &file,
            "version: 1\nnamespaces:\n  demo:\n    deployments:\n      web: {service_account: web}\n      \
             web-canary: {service_account: web}\n      voting: {service_account: voting}\n",
        )
        .unwrap();
        let args = identity.controller_args("24h");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // The store's address is chosen before either starts: the store
        // certifies itself with the controller, which must know where the
        // store is.
        let store_grpc = conduit_testbed::free_addr();
        let controller =
            Controller::start_with_args(&format!("https://{store_grpc}"), &file, &args);
        let store = Store::start_on(store_grpc, &identity.workload_args(&controller, &store_id));
        Self {
            identity,
            controller,
            store,
            dir,
        }
    }

    fn anchors(&self) -> TrustAnchors {
        TrustAnchors::read(&self.identity.files.trust_anchors()).unwrap()
    }

    /// A certificate for `sa` from the real identity service.
    async fn certify(&self, sa: &str) -> std::sync::Arc<Credentials> {
        let creds = conduit_identity::certify::start(
            id(sa),
            &format!("https://{}", self.controller.mesh),
            &self.anchors(),
            self.identity.files.token(&id(sa)),
            IdentityName::controller("conduit", TD),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !creds.is_ready() {
            assert!(Instant::now() < deadline, "no certificate for {sa}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        creds
    }

    async fn reporter(
        &self,
        creds: std::sync::Arc<Credentials>,
    ) -> TelemetryClient<tonic::transport::Channel> {
        let config = client_config(&self.anchors(), Some(creds.clone()), Alpn::H2).unwrap();
        let channel = conduit_identity::grpc::connect(
            &self.store.grpc.to_string(),
            &IdentityName::store("conduit", TD),
            config,
            Some(creds),
        )
        .await
        .unwrap();
        TelemetryClient::new(channel)
    }

    fn store_metrics(&self) -> String {
        http_get(self.store.http, "/metrics").unwrap().2
    }

    fn query(&self, q: &str) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", conduit_testbed::query_escape(q));
        serde_json::from_str(&http_get(self.store.http, &path).unwrap().2).unwrap()
    }
}

fn meta(deployment: &str) -> ProxyMeta {
    ProxyMeta {
        deployment: Some(mesh::DeploymentRef {
            namespace: "demo".into(),
            name: deployment.into(),
        }),
        pod: format!("{deployment}-0"),
        ..Default::default()
    }
}

fn counter(labels: &[(&str, &str)]) -> CounterSeries {
    CounterSeries {
        metric: "request_total".into(),
        labels: labels
            .iter()
            .map(|(n, v)| mesh::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        value: 1.0,
    }
}

fn report(deployment: &str, counters: Vec<CounterSeries>) -> Report {
    Report {
        proxy: Some(meta(deployment)),
        end_unix_ms: conduit_identity::credentials::unix_now() * 1000,
        counters,
        ..Default::default()
    }
}

/// Sends one report; retries while the store has not learned the
/// workload table yet (it says so with UNAVAILABLE).
async fn send(
    client: &mut TelemetryClient<tonic::transport::Channel>,
    report: Report,
) -> Result<ReportSummary, tonic::Status> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client
            .report(tokio_stream::iter([report.clone()]))
            .await
            .map(tonic::Response::into_inner);
        match r {
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_for_another_deployment_is_refused_and_counted() {
    let plane = Plane::start();
    let mut web = plane.reporter(plane.certify("web").await).await;

    let forged = report(
        "voting",
        vec![counter(&[("direction", "inbound"), ("tls", "true")])],
    );
    let refused = send(&mut web, forged).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("voting"), "{refused:?}");
    let m = plane.store_metrics();
    assert_eq!(
        metric_sum(
            &m,
            "conduit_store_reports_refused_total",
            &[("reason", "foreign_deployment")]
        ),
        1.0,
        "{m}"
    );

    // Another namespace is refused too; a Deployment that shares the
    // sender's ServiceAccount is its own.
    let mut other_ns = report("web", vec![]);
    other_ns
        .proxy
        .as_mut()
        .unwrap()
        .deployment
        .as_mut()
        .unwrap()
        .namespace = "prod".into();
    let refused = send(&mut web, other_ns).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let canary = report("web-canary", vec![counter(&[("direction", "inbound")])]);
    assert_eq!(send(&mut web, canary).await.unwrap().accepted_reports, 1);

    let q = plane.query("request_total{deployment=\"voting\"}");
    assert_eq!(q["data"]["result"].as_array().unwrap().len(), 0, "{q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_cannot_speak_for_another_workload_or_identity() {
    let plane = Plane::start();
    let mut web = plane.reporter(plane.certify("web").await).await;
    let (web_id, voting_id) = (id("web").to_string(), id("voting").to_string());
    let series = vec![
        // Its own outbound request to voting, secured: stored.
        counter(&[
            ("direction", "outbound"),
            ("dst_deployment", "voting"),
            ("tls", "true"),
            ("client_id", &web_id),
        ]),
        // An outbound series claiming voting's identity on its own side.
        counter(&[
            ("direction", "outbound"),
            ("dst_deployment", "emoji"),
            ("tls", "true"),
            ("client_id", &voting_id),
        ]),
        // A series relabelled into another Deployment.
        counter(&[("direction", "inbound"), ("deployment", "voting")]),
    ];
    let mut r = report("web", series);
    r.tap_events = vec![
        tap_event("web", &web_id, "req-own"),
        tap_event("voting", &voting_id, "req-forged"),
    ];
    let summary = send(&mut web, r).await.unwrap();
    assert_eq!(summary.accepted_reports, 1);
    assert_eq!(summary.rejected_series, 2, "{summary:?}");

    let q = plane.query("request_total");
    let result = q["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{q}");
    let labels = &result[0]["metric"];
    assert_eq!(labels["deployment"], "web", "{q}");
    assert_eq!(labels["dst_deployment"], "voting", "{q}");
    let m = plane.store_metrics();
    assert_eq!(
        metric_sum(&m, "conduit_store_tap_events_refused_total", &[]),
        1.0,
        "{m}"
    );
}

/// An outbound request as the proxy of `source` (with `identity`) saw it.
fn tap_event(source: &str, identity: &str, request_id: &str) -> TapEvent {
    TapEvent {
        request_id: request_id.into(),
        direction: mesh::Direction::Outbound.into(),
        source: Some(Peer {
            deployment: Some(mesh::DeploymentRef {
                namespace: "demo".into(),
                name: source.into(),
            }),
            identity: identity.into(),
            ..Default::default()
        }),
        path: "/api/vote".into(),
        http_status: 200,
        request_start_unix_us: conduit_identity::credentials::unix_now() * 1_000_000,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_telemetry_port_refuses_callers_without_a_mesh_certificate() {
    let plane = Plane::start();
    // Plaintext gRPC: the TLS listener never answers it.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", plane.store.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(ch) => TelemetryClient::new(ch)
            .report(tokio_stream::iter([report("web", vec![])]))
            .await
            .is_err(),
    };
    assert!(refused, "a plaintext report was answered");
    // TLS without a client certificate: the handshake is refused.
    let config = client_config(&plane.anchors(), None, Alpn::H2).unwrap();
    let r = conduit_identity::grpc::connect(
        &plane.store.grpc.to_string(),
        &IdentityName::store("conduit", TD),
        config,
        None,
    )
    .await;
    let refused = match r {
        Err(_) => true,
        Ok(ch) => TelemetryClient::new(ch)
            .report(tokio_stream::iter([report("web", vec![])]))
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a report without a client certificate was answered"
    );
    assert_eq!(
        metric_sum(
            &plane.store_metrics(),
            "conduit_store_reports_received_total",
            &[]
        ),
        0.0
    );
}

/// `conduit check` probes every gRPC listener as an intruder would, with a
/// plaintext HTTP/2 preface: the store and mTLS proxies refuse it; a proxy
/// whose tap server runs without identity is named.
#[test]
fn check_names_a_listener_that_answers_without_authentication() {
    let plane = Plane::start();
    let app = conduit_testbed::Upstream::start(Default::default());
    let plaintext = conduit_testbed::Proxy::start(conduit_testbed::ProxySpec {
        namespace: "demo",
        deployment: "web",
        pod: "web-0",
        app: app.addr,
        telemetry: None,
        destination: None,
        extra: vec![],
    });
    std::fs::write(
        plane.dir.path().join("discovery.yaml"),
        format!(
            "version: 1\nnamespaces:\n  demo:\n    deployments:\n      web:\n        service_account: web\n        \
             pods: [{{name: web-0, addr: {}, tap: {}}}]\n",
            plaintext.inbound, plaintext.tap
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let results = loop {
        let (_, _, body) = http_get(plane.controller.http, "/api/v1/check").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let results = v["results"].as_array().unwrap().clone();
        let named = results
            .iter()
            .any(|r| r["hint"].as_str().is_some_and(|h| h.contains("demo/web-0")));
        if named || Instant::now() > deadline {
            break results;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let find = |needle: &str| {
        results
            .iter()
            .find(|r| r["description"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no check about {needle}: {results:#?}"))
    };
    let store = find("store's gRPC API refuses");
    assert_eq!(store["status"], "ok", "{store}");
    let taps = find("tap servers answer the controller's identity only");
    assert_eq!(taps["status"], "failed", "{taps}");
    assert!(
        taps["hint"].as_str().unwrap().contains("demo/web-0"),
        "{taps}"
    );
    let tap_access = find("tap, tap search and top are authorized");
    assert_eq!(tap_access["status"], "ok");
}
