//! The Kubernetes discovery backend against a MOCK Kubernetes API server.
//!
//! No API server can run on this machine, so these tests put kube's own
//! test harness (`tower_test::mock`, the mocking kube-rs documents for its
//! client) in place of the HTTP connection and answer the reflectors'
//! list and watch requests with canned JSON. What runs for real is
//! everything on our side: kube's client, watchers, backoff and reflector
//! stores, our folding of Pods, ReplicaSets, EndpointSlices and Services
//! into endpoint sets, and (in [`policy`]) the compiling of the policy
//! resources and the policy service proxies watch.

#[path = "kubernetes_mock/policy.rs"]
mod policy;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conduit_controller::discovery::kubernetes::Kubernetes;
use conduit_controller::discovery::{Discovery, HealthStatus, ProtocolHint, Snapshot};
use conduit_controller::policy::kubernetes::Defaults;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tower_test::mock::{self, SendResponse};

type Handle = mock::Handle<http::Request<Body>, http::Response<Body>>;

fn replica_set() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": "web-abc", "namespace": "demo",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d1", "controller": true}]
        },
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}}}
        }
    })
}

fn pod(name: &str, ip: &str, meshed: bool) -> Value {
    let mut containers = vec![json!({"name": "app"})];
    if meshed {
        containers.push(json!({"name": "conduit-proxy"}));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "demo", "resourceVersion": "2",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "r1", "controller": true}]
        },
        "spec": {"serviceAccountName": "web", "containers": containers},
        "status": {"phase": "Running", "podIP": ip}
    })
}

fn service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "demo",
                     "annotations": {"config.conduit.io/opaque-ports": "9000"}},
        "spec": {"ports": [{"name": "http", "port": 80}, {"name": "raw", "port": 9000}]}
    })
}

fn slice(endpoints: &[(&str, &str, bool)]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-xyz", "namespace": "demo", "resourceVersion": "2",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}, {"name": "raw", "port": 9000}],
        "endpoints": endpoints.iter().map(|(ip, pod, ready)| json!({
            "addresses": [ip],
            "conditions": {"ready": ready},
            "targetRef": {"kind": "Pod", "name": pod, "namespace": "demo"}
        })).collect::<Vec<_>>()
    })
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn respond(send: SendResponse<http::Response<Body>>, status: u16, body: Vec<u8>) {
    let response = http::Response::builder()
        .status(status)
        .body(Body::from(body))
        .unwrap();
    send.send_response(response);
}

/// What the mock API server answers, by resource.
#[derive(Default)]
struct Script {
    /// Resources without a list here list as empty.
    lists: BTreeMap<&'static str, Value>,
    /// Events sent on the first watch of each resource; later watches wait
    /// for what the test sends with [`Mock::send`].
    watch_events: BTreeMap<&'static str, Vec<Value>>,
    /// Resources whose first list fails with a 500.
    fail_first_list: Vec<&'static str>,
    /// Resources the API server does not know (their CRD is not
    /// installed): every list is a 404.
    missing: Vec<&'static str>,
    /// Resources whose first list is answered only once the test says so.
    held_lists: BTreeMap<&'static str, oneshot::Receiver<()>>,
}

/// The resources the backend watches, by the last segment of their path.
const RESOURCES: [&str; 10] = [
    "pods",
    "replicasets",
    "endpointslices",
    "services",
    "namespaces",
    "servers",
    "httproutes",
    "authorizationpolicies",
    "meshtlsauthentications",
    "networkauthentications",
];

fn resource(path: &str) -> &'static str {
    let last = path.rsplit('/').next().unwrap_or_default();
    RESOURCES
        .into_iter()
        .find(|r| *r == last)
        .unwrap_or_else(|| panic!("unexpected request path {path}"))
}

/// The running mock: how many lists each resource got, and a way to
/// send watch events later.
struct Mock {
    lists: Arc<Mutex<BTreeMap<&'static str, u32>>>,
    events: mpsc::UnboundedSender<(&'static str, Vec<Value>)>,
}

impl Mock {
    /// Answers the resource's open watch with `events` (or its next one,
    /// when none is open); kube's watcher then watches again from there.
    fn send(&self, kind: &'static str, events: Vec<Value>) {
        self.events
            .send((kind, events))
            .expect("mock API server alive");
    }
}

fn watch_body(events: &[Value]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    body
}

/// Serves the reflectors' requests.
fn serve(mut handle: Handle, mut script: Script) -> Mock {
    let lists = Arc::new(Mutex::new(BTreeMap::new()));
    let counts = lists.clone();
    let (events, mut queued) = mpsc::unbounded_channel::<(&'static str, Vec<Value>)>();
    tokio::spawn(async move {
        let mut parked: BTreeMap<&'static str, SendResponse<http::Response<Body>>> =
            BTreeMap::new();
        let mut pending: BTreeMap<&'static str, Vec<Vec<Value>>> = script
            .watch_events
            .iter()
            .map(|(k, v)| (*k, vec![v.clone()]))
            .collect();
        loop {
            let (req, send) = tokio::select! {
                next = handle.next_request() => match next {
                    Some(next) => next,
                    None => return,
                },
                Some((kind, batch)) = queued.recv() => {
                    match parked.remove(kind) {
                        Some(send) => respond(send, 200, watch_body(&batch)),
                        None => pending.entry(kind).or_default().push(batch),
                    }
                    continue;
                }
            };
            let kind = resource(req.uri().path());
            let query = req.uri().query().unwrap_or("");
            if query.contains("watch=true") {
                let batch = pending.get_mut(kind).filter(|p| !p.is_empty());
                match batch {
                    Some(batches) => respond(send, 200, watch_body(&batches.remove(0))),
                    // Hold the watch open, as an API server with nothing new would.
                    None => {
                        parked.insert(kind, send);
                    }
                }
                continue;
            }
            let n = {
                let mut c = counts.lock().unwrap();
                let n = c.entry(kind).or_insert(0);
                *n += 1;
                *n
            };
            if script.missing.contains(&kind) {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404});
                respond(send, 404, serde_json::to_vec(&status).unwrap());
                continue;
            }
            if n == 1 && script.fail_first_list.contains(&kind) {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "message": "etcd is having a bad day", "reason": "InternalError", "code": 500});
                respond(send, 500, serde_json::to_vec(&status).unwrap());
                continue;
            }
            let body = script
                .lists
                .get(kind)
                .cloned()
                .unwrap_or_else(|| list("List", "v1", vec![]));
            match script.held_lists.remove(kind) {
                Some(release) => {
                    tokio::spawn(async move {
                        let _ = release.await;
                        respond(send, 200, serde_json::to_vec(&body).unwrap());
                    });
                }
                None => respond(send, 200, serde_json::to_vec(&body).unwrap()),
            }
        }
    });
    Mock { lists, events }
}

async fn wait_for(k8s: &Kubernetes, what: &str, ok: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
    let mut rx = k8s.snapshots();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let snap = rx.borrow_and_update().clone();
            if ok(&snap) {
                return snap;
            }
            rx.changed().await.expect("discovery alive");
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {what}; last: {:#?}",
            k8s.snapshots().borrow()
        )
    })
}

fn base_lists() -> BTreeMap<&'static str, Value> {
    BTreeMap::from([
        (
            "replicasets",
            list("ReplicaSetList", "apps/v1", vec![replica_set()]),
        ),
        (
            "pods",
            list(
                "PodList",
                "v1",
                vec![
                    pod("web-abc-1", "10.0.0.1", true),
                    pod("web-abc-9", "10.0.0.9", false),
                ],
            ),
        ),
        ("services", list("ServiceList", "v1", vec![service()])),
        (
            "endpointslices",
            list(
                "EndpointSliceList",
                "discovery.k8s.io/v1",
                vec![slice(&[
                    ("10.0.0.1", "web-abc-1", true),
                    ("10.0.0.7", "web-abc-7", false),
                ])],
            ),
        ),
    ])
}

#[tokio::test]
async fn mock_api_server_objects_become_endpoint_sets() {
    let (service, handle) = mock::pair::<http::Request<Body>, http::Response<Body>>();
    let script = Script {
        lists: base_lists(),
        watch_events: BTreeMap::from([
            (
                "pods",
                vec![json!({"type": "ADDED", "object": pod("web-abc-2", "10.0.0.2", true)})],
            ),
            (
                "endpointslices",
                vec![
                    json!({"type": "MODIFIED", "object": slice(&[("10.0.0.1", "web-abc-1", true), ("10.0.0.2", "web-abc-2", true)])}),
                ],
            ),
        ]),
        ..Script::default()
    };
    serve(handle, script);
    let k8s = Kubernetes::start(
        kube::Client::new(service, "default"),
        "cluster.local",
        Defaults::default(),
    );

    let snap = wait_for(&k8s, "two ready endpoints after the watch events", |s| {
        s.services
            .values()
            .any(|svc| svc.ports.get(&80).is_some_and(|p| p.endpoints.len() == 2))
    })
    .await;

    let web = conduit_api::DeploymentRef::new("demo", "web");
    let deployment = &snap.deployments[&web];
    assert_eq!(deployment.service_account, "web");
    assert_eq!(
        deployment.labels.get("app").map(String::as_str),
        Some("web")
    );
    assert!(!deployment.labels.contains_key("pod-template-hash"));
    let pods: Vec<_> = deployment
        .pods
        .iter()
        .map(|p| (p.name.as_str(), p.meshed))
        .collect();
    assert_eq!(
        pods,
        [
            ("web-abc-1", true),
            ("web-abc-2", true),
            ("web-abc-9", false)
        ]
    );
    assert_eq!(
        deployment.pods[0].tap,
        Some("10.0.0.1:4190".parse().unwrap())
    );

    let r = snap.resolve(&"web.demo.svc.cluster.local:80".parse().unwrap(), "other");
    assert!(r.exists);
    let addrs: Vec<String> = r.endpoints.iter().map(|e| e.addr.to_string()).collect();
    assert_eq!(
        addrs,
        ["10.0.0.1:8080", "10.0.0.2:8080"],
        "service port 80 maps to target port 8080 by name; unready endpoints are left out"
    );
    let e = &r.endpoints[0];
    assert_eq!(e.pod.as_deref(), Some("web-abc-1"));
    assert_eq!(e.deployment.as_ref(), Some(&web));
    assert_eq!(e.hint, ProtocolHint::H2);
    assert_eq!(
        e.identity.as_ref().unwrap().to_string(),
        "web.demo.serviceaccount.identity.conduit.cluster.local"
    );
    let raw = snap.resolve(&"web.demo:9000".parse().unwrap(), "demo");
    assert!(raw.opaque);
    assert!(raw.endpoints.iter().all(|e| e.hint == ProtocolHint::Opaque));

    let health = k8s.health();
    let watches: Vec<_> = health
        .iter()
        .filter(|h| h.description.starts_with("can watch"))
        .collect();
    assert_eq!(watches.len(), RESOURCES.len());
    assert!(
        watches.iter().all(|h| h.status == HealthStatus::Ok),
        "{health:#?}"
    );
    assert!(
        health
            .iter()
            .any(|h| h.status == HealthStatus::Failed
                && h.description.contains("control plane pods")),
        "no pod runs in namespace conduit in this mock: {health:#?}"
    );
}

#[tokio::test]
async fn mock_api_server_errors_are_retried_with_backoff() {
    let (service, handle) = mock::pair::<http::Request<Body>, http::Response<Body>>();
    let script = Script {
        lists: base_lists(),
        fail_first_list: vec!["services"],
        ..Script::default()
    };
    let mock = serve(handle, script);
    let k8s = Kubernetes::start(
        kube::Client::new(service, "default"),
        "cluster.local",
        Defaults::default(),
    );

    let mut saw_error = false;
    let snap = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            saw_error |= k8s.health().iter().any(|h| {
                h.status == HealthStatus::Failed
                    && h.description.contains("services")
                    && h.hint.contains("bad day")
            });
            let snap = k8s.snapshots().borrow().clone();
            if snap.resolve(&"web.demo:80".parse().unwrap(), "demo").exists {
                return snap;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the services watch recovers after its failed list");
    assert!(saw_error, "the failed list was reported to `conduit check`");
    assert_eq!(
        mock.lists.lock().unwrap()["services"],
        2,
        "one failed list, one retry"
    );
    assert_eq!(
        snap.resolve(&"web.demo:80".parse().unwrap(), "demo")
            .endpoints
            .len(),
        1
    );
    assert!(
        k8s.health()
            .iter()
            .filter(|h| h.description.starts_with("can watch"))
            .all(|h| h.status == HealthStatus::Ok)
    );
}
