//! The destination service of a real `conduit-controller` process with the
//! static discovery backend, dialled by a real gRPC client: edits of the
//! discovery file reach a subscriber within a second, a broken file keeps
//! the previous state.

use std::path::Path;
use std::time::{Duration, Instant};

use conduit_api::proto::destination::v1::{
    self as pb, GetDestination, destination_client::DestinationClient, update::Update,
};
use conduit_api::proto::mesh::v1::DeploymentRef;
use conduit_testbed::{Controller, TempDir};
use tonic::Streaming;
use tonic::transport::Channel;

/// Where no store runs: destination needs none.
const NO_STORE: &str = "http://127.0.0.1:9";
const PROPAGATION: Duration = Duration::from_secs(1);

fn file(pods: &[(&str, u16)], timeout: &str) -> String {
    let mut pod_lines = String::new();
    for (name, port) in pods {
        pod_lines.push_str(&format!(
            "          - {{name: {name}, addr: 127.0.0.1:{port}, tap: 127.0.0.1:{}}}\n",
            port + 1
        ));
    }
    format!(
        "version: 1
namespaces:
  demo:
    deployments:
      voting:
        service_account: voting
        pods:
{pod_lines}    services:
      voting: {{deployment: voting, ports: [{{port: 8080}}]}}
    profiles:
      voting:
        routes:
          - name: vote
            condition: {{method: POST}}
            timeout: {timeout}
"
    )
}

/// Replaces the file atomically, as an editor or `conduit demo` would.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn client(controller: &Controller) -> DestinationClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(controller.destination_url())
        .unwrap()
        .connect()
        .await
        .expect("dial the controller");
    DestinationClient::new(channel)
}

fn target(path: &str) -> GetDestination {
    GetDestination {
        scheme: "http".into(),
        path: path.into(),
        context: Some(DeploymentRef {
            namespace: "demo".into(),
            name: "web".into(),
        }),
    }
}

async fn next(stream: &mut Streaming<pb::Update>, within: Duration) -> Update {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("an update in time")
        .expect("a healthy stream")
        .expect("an open stream")
        .update
        .expect("an update")
}

fn ports(set: &[pb::WeightedAddr]) -> Vec<u32> {
    let mut p: Vec<u32> = set.iter().map(|a| a.addr.as_ref().unwrap().port).collect();
    p.sort();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_edits_reach_subscribers_within_a_second() {
    let dir = TempDir::new("destination");
    let path = dir.path().join("discovery.yaml");
    write(&path, &file(&[("voting-0", 20000)], "1s"));
    let controller = Controller::start_with_store_url(NO_STORE, &path);
    let mut client = client(&controller).await;

    let mut stream = client
        .get(target("voting.demo.svc.cluster.local:8080"))
        .await
        .unwrap()
        .into_inner();
    let Update::Add(first) = next(&mut stream, Duration::from_secs(5)).await else {
        panic!("the first update must be a full add");
    };
    assert_eq!(ports(&first.addrs), [20000]);
    let ep = &first.addrs[0];
    assert_eq!(ep.metric_labels["deployment"], "voting");
    assert_eq!(ep.metric_labels["namespace"], "demo");
    assert_eq!(ep.metric_labels["pod"], "voting-0");
    assert_eq!(
        ep.tls_identity.as_ref().unwrap().name,
        "voting.demo.serviceaccount.identity.conduit.cluster.local"
    );
    assert!(matches!(
        ep.protocol_hint.as_ref().unwrap().protocol,
        Some(pb::protocol_hint::Protocol::H2(_))
    ));

    // Add an endpoint.
    let edited = Instant::now();
    write(
        &path,
        &file(&[("voting-0", 20000), ("voting-1", 20010)], "1s"),
    );
    let Update::Add(added) = next(&mut stream, PROPAGATION).await else {
        panic!("expected an add");
    };
    assert_eq!(
        ports(&added.addrs),
        [20010],
        "only the new endpoint is sent"
    );
    assert!(
        edited.elapsed() < PROPAGATION,
        "took {:?}",
        edited.elapsed()
    );

    // Remove one.
    let edited = Instant::now();
    write(&path, &file(&[("voting-1", 20010)], "1s"));
    let Update::Remove(removed) = next(&mut stream, PROPAGATION).await else {
        panic!("expected a remove");
    };
    assert_eq!(removed.addrs.len(), 1);
    assert_eq!(removed.addrs[0].port, 20000);
    assert!(
        edited.elapsed() < PROPAGATION,
        "took {:?}",
        edited.elapsed()
    );

    // A broken file is refused: nothing is sent, the state stays.
    write(
        &path,
        "version: 1\nnamespaces: {demo: {deployments: [not, a, map]}}\n",
    );
    let quiet = tokio::time::timeout(Duration::from_millis(800), stream.message()).await;
    assert!(
        quiet.is_err(),
        "a broken file must not change endpoints: {quiet:?}"
    );
    let mut late = client
        .get(target("voting.demo:8080"))
        .await
        .unwrap()
        .into_inner();
    let Update::Add(still) = next(&mut late, Duration::from_secs(5)).await else {
        panic!("the previous state must stay in force");
    };
    assert_eq!(ports(&still.addrs), [20010]);

    // Emptying the Deployment says so, and the service still exists.
    write(&path, &file(&[], "1s"));
    let Update::NoEndpoints(none) = next(&mut stream, PROPAGATION).await else {
        panic!("expected no_endpoints");
    };
    assert!(none.exists);
    assert!(
        controller
            .process
            .log()
            .contains("is not a valid discovery file"),
        "the broken file was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_authorities_and_profiles() {
    let dir = TempDir::new("destination");
    let path = dir.path().join("discovery.yaml");
    write(&path, &file(&[("voting-0", 20100)], "1s"));
    let controller = Controller::start_with_store_url(NO_STORE, &path);
    let mut client = client(&controller).await;

    let mut unknown = client
        .get(target("nope.demo.svc.cluster.local:8080"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next(&mut unknown, Duration::from_secs(5)).await,
        Update::NoEndpoints(pb::NoEndpoints { exists: false })
    );
    let bad = client.get(target("not an authority")).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let mut profiles = client
        .get_profile(target("voting:8080"))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), profiles.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.fully_qualified_name, "voting.demo.svc.cluster.local");
    assert_eq!(first.routes[0].timeout.unwrap().seconds, 1);

    let edited = Instant::now();
    write(&path, &file(&[("voting-0", 20100)], "3s"));
    let second = tokio::time::timeout(PROPAGATION, profiles.message())
        .await
        .expect("the new profile within a second")
        .unwrap()
        .unwrap();
    assert_eq!(second.routes[0].timeout.unwrap().seconds, 3);
    assert!(edited.elapsed() < PROPAGATION);
}
