//! Policy on Kubernetes, against the MOCK API server of the parent module
//! (no real one can run here): `policy.conduit.io/v1` objects, Namespaces,
//! ReplicaSets and Pods go through kube's real client, watchers and
//! reflectors, the controller compiles them, and proxies' view is read
//! from the real policy service over gRPC on loopback.

use std::collections::BTreeMap;
use std::time::Duration;

use conduit_api::DeploymentRef;
use conduit_api::discovery_file::DiscoveryFile;
use conduit_api::policy::{DEFAULT_POLICY_ANNOTATION, DefaultPolicy};
use conduit_api::proto::policy::v1 as pb;
use conduit_controller::discovery::kubernetes::Kubernetes;
use conduit_controller::discovery::{Discovery, Health, HealthStatus};
use conduit_controller::policy::kubernetes::Defaults;
use conduit_controller::policy::{InboundPolicies, PolicyIndex};
use pb::inbound_server_policies_client::InboundServerPoliciesClient;
use pb::inbound_server_policies_server::InboundServerPoliciesServer;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower_test::mock;

use super::{Mock, Script, list, serve, wait_for};

fn namespace(name: &str, default_policy: Option<&str>) -> Value {
    let mut metadata = json!({"name": name, "resourceVersion": "1"});
    if let Some(policy) = default_policy {
        metadata["annotations"] = json!({ DEFAULT_POLICY_ANNOTATION: policy });
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
}

/// The pod template of a ReplicaSet, or a pod's metadata and spec.
struct PodParts {
    labels: Value,
    /// Named container ports: `[[name, number]]`.
    ports: &'static [(&'static str, u16)],
    annotations: Value,
}

impl PodParts {
    fn new(labels: Value, ports: &'static [(&'static str, u16)]) -> Self {
        Self {
            labels,
            ports,
            annotations: json!({}),
        }
    }

    fn default_policy(mut self, policy: &str) -> Self {
        self.annotations = json!({ DEFAULT_POLICY_ANNOTATION: policy });
        self
    }

    fn spec(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|(name, port)| json!({"name": name, "containerPort": port}))
            .collect();
        json!({"containers": [{"name": "app", "ports": ports}]})
    }
}

/// A ReplicaSet of Deployment `deployment` at `revision`.
fn replica_set(ns: &str, name: &str, deployment: &str, revision: u32, pod: &PodParts) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": name, "namespace": ns, "resourceVersion": "1",
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": "d", "controller": true}]
        },
        "spec": {
            "selector": {"matchLabels": pod.labels.clone()},
            "template": {
                "metadata": {"labels": pod.labels.clone(), "annotations": pod.annotations.clone()},
                "spec": pod.spec()
            }
        }
    })
}

fn pod(ns: &str, name: &str, replica_set: &str, parts: &PodParts) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "resourceVersion": "1",
            "labels": parts.labels.clone(),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replica_set, "uid": "r", "controller": true}]
        },
        "spec": parts.spec(),
        "status": {"phase": "Running", "podIP": "10.0.0.1"}
    })
}

fn resource_in(ns: &str, kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "policy.conduit.io/v1", "kind": kind,
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
        "spec": spec
    })
}

fn resource(kind: &str, name: &str, spec: Value) -> Value {
    resource_in("demo", kind, name, spec)
}

fn event(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object})
}

fn web_template() -> PodParts {
    PodParts::new(json!({"app": "web"}), &[("http", 8080)])
}

fn voting_policy(authentication: &str) -> Value {
    resource(
        "AuthorizationPolicy",
        "web-api-voting",
        json!({
            "targetRef": {"group": "policy.conduit.io", "kind": "HTTPRoute", "name": "web-api"},
            "requiredAuthenticationRefs": [
                {"group": "policy.conduit.io", "kind": "MeshTLSAuthentication", "name": authentication}
            ]
        }),
    )
}

fn internal_networks(cidr: &str) -> Value {
    resource(
        "NetworkAuthentication",
        "internal",
        json!({"networks": [{"cidr": cidr, "except": ["10.9.0.0/16"]}]}),
    )
}

fn web_http_server(protocol: &str) -> Value {
    resource(
        "Server",
        "web-http",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "port": "http", "proxyProtocol": protocol}),
    )
}

/// Namespace `demo`: Deployment `web` (current template: `app: web`,
/// port `http` 8080; an older template also had `legacy: "true"`; one pod
/// labelled `canary` by hand) and Deployment `db` (port `pg` 5432,
/// defaulting to `deny`), with one resource of every kind and more.
fn cluster(namespace_default: Option<&str>) -> BTreeMap<&'static str, Value> {
    let web = web_template();
    let legacy = PodParts::new(json!({"app": "web", "legacy": "true"}), &[("http", 8080)]);
    let canary = PodParts::new(json!({"app": "web", "canary": "true"}), &[("http", 8080)]);
    let db = PodParts::new(json!({"app": "db"}), &[("pg", 5432)]).default_policy("deny");
    let policy =
        |kind: &str, items: Vec<Value>| list(&format!("{kind}List"), "policy.conduit.io/v1", items);
    BTreeMap::from([
        (
            "namespaces",
            list(
                "NamespaceList",
                "v1",
                vec![
                    namespace("demo", namespace_default),
                    namespace("other", None),
                ],
            ),
        ),
        (
            "replicasets",
            list(
                "ReplicaSetList",
                "apps/v1",
                vec![
                    replica_set("demo", "web-old", "web", 1, &legacy),
                    replica_set("demo", "web-abc", "web", 2, &web),
                    replica_set("demo", "db-xyz", "db", 1, &db),
                ],
            ),
        ),
        (
            "pods",
            list(
                "PodList",
                "v1",
                vec![pod("demo", "web-abc-1", "web-abc", &canary)],
            ),
        ),
        (
            "servers",
            policy(
                "Server",
                vec![
                    web_http_server("HTTP/1"),
                    resource(
                        "Server",
                        "db-pg",
                        json!({
                            "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]},
                            "port": 5432, "proxyProtocol": "opaque"
                        }),
                    ),
                    resource(
                        "Server",
                        "web-canary",
                        json!({"podSelector": {"matchLabels": {"canary": "true"}}, "port": 9090}),
                    ),
                    resource(
                        "Server",
                        "legacy",
                        json!({"podSelector": {"matchLabels": {"legacy": "true"}}, "port": 7070}),
                    ),
                ],
            ),
        ),
        (
            "httproutes",
            policy(
                "HTTPRoute",
                vec![resource(
                    "HTTPRoute",
                    "web-api",
                    json!({
                        "parentRefs": [{"group": "policy.conduit.io", "kind": "Server", "name": "web-http"}],
                        "rules": [
                            {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}]},
                            {"matches": [{"path": {"type": "RegularExpression", "value": "/v[0-9]+/.*"},
                                          "headers": [{"name": "X-Tenant", "value": "blue"}]}]}
                        ]
                    }),
                )],
            ),
        ),
        (
            "authorizationpolicies",
            policy(
                "AuthorizationPolicy",
                vec![
                    voting_policy("voting"),
                    resource(
                        "AuthorizationPolicy",
                        "ns-internal",
                        json!({
                            "targetRef": {"kind": "Namespace", "name": "demo"},
                            "requiredAuthenticationRefs": [{"kind": "NetworkAuthentication", "name": "internal"}],
                            "audit": true
                        }),
                    ),
                    resource(
                        "AuthorizationPolicy",
                        "db-web",
                        json!({
                            "targetRef": {"group": "policy.conduit.io", "kind": "Server", "name": "db-pg"},
                            "requiredAuthenticationRefs": [{"kind": "MeshTLSAuthentication", "name": "demo-all", "namespace": "demo"}]
                        }),
                    ),
                ],
            ),
        ),
        (
            "meshtlsauthentications",
            policy(
                "MeshTLSAuthentication",
                vec![
                    resource(
                        "MeshTLSAuthentication",
                        "voting",
                        json!({
                            "identities": ["*.other.serviceaccount.identity.conduit.cluster.local"],
                            "identityRefs": [{"kind": "ServiceAccount", "name": "voting"}]
                        }),
                    ),
                    resource(
                        "MeshTLSAuthentication",
                        "demo-all",
                        json!({
                            "identities": ["*.demo.serviceaccount.identity.conduit.cluster.local"],
                            "identityRefs": [{"kind": "Namespace", "name": "ops"}]
                        }),
                    ),
                ],
            ),
        ),
        (
            "networkauthentications",
            policy(
                "NetworkAuthentication",
                vec![internal_networks("10.0.0.0/8")],
            ),
        ),
    ])
}

/// The same policy in local mode's discovery file, which the controller
/// has compiled since before Kubernetes support.
const SAME_AS_FILE: &str = r#"
version: 1
namespaces:
  demo:
    deployments: {web: {}, db: {}}
    policy:
      servers:
        web-http: {deployment: web, port: 8080, protocol: HTTP/1}
        db-pg: {deployment: db, port: 5432, protocol: opaque}
        web-canary: {deployment: web, port: 9090}
      http_routes:
        web-api:
          server: web-http
          matches:
            - {path: {prefix: /api}, method: GET}
            - {path: {regex: "/v[0-9]+/.*"}, headers: [{name: X-Tenant, value: blue}]}
      authorization_policies:
        web-api-voting: {target: {http_route: web-api}, required_authentications: [{mesh_tls: voting}]}
        ns-internal: {target: {namespace: demo}, required_authentications: [{network: internal}], audit: true}
        db-web: {target: {server: db-pg}, required_authentications: [{mesh_tls: demo-all}]}
      mesh_tls_authentications:
        voting:
          identities: ["*.other.serviceaccount.identity.conduit.cluster.local"]
          service_accounts: [{name: voting}]
        demo-all:
          identities: ["*.demo.serviceaccount.identity.conduit.cluster.local"]
          namespaces: [ops]
      network_authentications:
        internal: {networks: [{cidr: 10.0.0.0/8, except: [10.9.0.0/16]}]}
"#;

fn start(script: Script, defaults: Defaults) -> (Kubernetes, Mock) {
    let (service, handle) =
        mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
    let mock = serve(handle, script);
    let client = kube::Client::new(service, "default");
    (Kubernetes::start(client, "cluster.local", defaults), mock)
}

fn web(port: u16) -> (DeploymentRef, u16) {
    (DeploymentRef::new("demo", "web"), port)
}

fn port(policy: &PolicyIndex, (workload, port): &(DeploymentRef, u16)) -> pb::Server {
    policy.port(workload, *port)
}

async fn compiled(k8s: &Kubernetes) -> std::sync::Arc<conduit_controller::discovery::Snapshot> {
    wait_for(k8s, "the policy resources compiled", |s| {
        !s.policy.is_pending() && s.policy.port(&web(8080).0, 8080).name == "web-http"
    })
    .await
}

/// Polls `conduit check`'s view of the backend until `ok` holds.
async fn wait_for_health(k8s: &Kubernetes, what: &str, ok: impl Fn(&[Health]) -> bool) {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while !ok(&k8s.health()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "timed out waiting for {what}: {:#?}",
        k8s.health()
    );
}

fn policy_failure<'a>(health: &'a [Health], ns: &str) -> Option<&'a Health> {
    health.iter().find(|h| {
        h.status == HealthStatus::Failed
            && h.description == format!("policy resources of namespace {ns} compile")
    })
}

#[tokio::test]
async fn every_kind_compiles_into_the_policy_of_the_ports_it_selects() {
    let script = Script {
        lists: cluster(Some("all-authenticated")),
        ..Script::default()
    };
    let defaults = Defaults {
        mesh: DefaultPolicy::ClusterUnauthenticated,
        cluster_networks: vec!["10.0.0.0/8".into()],
    };
    let (k8s, _mock) = start(script, defaults);
    let snap = compiled(&k8s).await;
    let policy = &snap.policy;

    let http = port(policy, &web(8080));
    assert_eq!(http.protocol, pb::ProxyProtocol::Http1 as i32);
    let routes: Vec<_> = http.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(routes, ["web-api"]);
    assert_eq!(http.routes[0].matches.len(), 2, "both rules' matches");
    assert_eq!(http.routes[0].authorizations[0].name, "web-api-voting");
    assert_eq!(http.authorizations[0].name, "ns-internal");
    assert!(
        http.audit,
        "ns-internal audits every Server of the namespace"
    );
    let db = DeploymentRef::new("demo", "db");
    let pg = policy.port(&db, 5432);
    assert_eq!(pg.name, "db-pg");
    assert_eq!(pg.protocol, pb::ProxyProtocol::Opaque as i32);
    assert_eq!(
        port(policy, &web(9090)).name,
        "web-canary",
        "a label of the pod alone selects its Deployment"
    );
    assert_eq!(
        port(policy, &web(7070)).name,
        "default:all-authenticated",
        "only the current pod template counts, not an older ReplicaSet's"
    );

    // Translated, the resources are exactly what the discovery file says.
    let file: DiscoveryFile = serde_saphyr::from_str(SAME_AS_FILE).unwrap();
    let local = PolicyIndex::from_file(&file).unwrap();
    for p in [web(8080), web(9090), (db.clone(), 5432)] {
        assert_eq!(port(policy, &p), port(&local, &p), "{p:?}");
    }

    // Defaults: the workload's pod template, else the namespace, else the
    // controller's flag.
    assert_eq!(policy.port(&db, 80).name, "default:deny");
    assert_eq!(port(policy, &web(80)).name, "default:all-authenticated");
    let elsewhere = policy.port(&DeploymentRef::new("other", "api"), 80);
    assert_eq!(elsewhere.name, "default:cluster-unauthenticated");
    assert_eq!(elsewhere.authorizations[0].networks[0].cidr, "10.0.0.0/8");
    assert!(
        k8s.health()
            .iter()
            .any(|h| h.status == HealthStatus::Ok && h.description.contains("policy resources")),
        "{:#?}",
        k8s.health()
    );
}

#[tokio::test]
async fn watch_events_reach_a_watch_port_subscriber() {
    let (release_servers, held) = oneshot::channel();
    let script = Script {
        lists: cluster(None),
        held_lists: BTreeMap::from([("servers", held)]),
        ..Script::default()
    };
    let (k8s, mock) = start(script, Defaults::default());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = InboundServerPoliciesServer::new(InboundPolicies::new(k8s.snapshots()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = InboundServerPoliciesClient::new(channel);
    let spec = pb::PortSpec {
        workload: Some(web(8080).0.into()),
        port: 8080,
    };
    let mut stream = client.watch_port(spec).await.unwrap().into_inner();
    // Until Servers are listed, a default policy would open the port
    // they close: the subscriber hears nothing.
    let early = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
    assert!(early.is_err(), "sent before every watch listed: {early:?}");
    release_servers.send(()).unwrap();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a policy update within 10 s")
            .unwrap()
            .expect("the stream stays open")
    };

    let first = next().await;
    assert_eq!(first.name, "web-http");
    assert_eq!(first.authorizations[0].networks[0].cidr, "10.0.0.0/8");

    mock.send(
        "networkauthentications",
        vec![event("MODIFIED", internal_networks("192.168.0.0/16"))],
    );
    let modified = next().await;
    assert_eq!(
        modified.authorizations[0].networks[0].cidr,
        "192.168.0.0/16"
    );

    mock.send(
        "authorizationpolicies",
        vec![event(
            "DELETED",
            resource("AuthorizationPolicy", "ns-internal", json!({})),
        )],
    );
    let deleted = next().await;
    assert!(deleted.authorizations.is_empty(), "{deleted:?}");
    assert!(!deleted.audit);

    mock.send("servers", vec![event("MODIFIED", web_http_server("gRPC"))]);
    assert_eq!(next().await.protocol, pb::ProxyProtocol::Grpc as i32);
}

#[tokio::test]
async fn a_malformed_resource_is_refused_by_name_and_its_namespace_keeps_its_policy() {
    let script = Script {
        lists: cluster(None),
        ..Script::default()
    };
    let (k8s, mock) = start(script, Defaults::default());
    let before = compiled(&k8s).await;
    let http_before = port(&before.policy, &web(8080));

    mock.send(
        "authorizationpolicies",
        vec![event("MODIFIED", voting_policy("nope"))],
    );
    // Meanwhile namespace `other` gets a Deployment and a Server, which
    // apply although `demo` is refused.
    let api = PodParts::new(json!({"app": "api"}), &[]);
    mock.send(
        "replicasets",
        vec![event(
            "ADDED",
            replica_set("other", "api-1", "api", 1, &api),
        )],
    );
    mock.send(
        "servers",
        vec![event(
            "ADDED",
            resource_in(
                "other",
                "Server",
                "api-http",
                json!({"podSelector": {"matchLabels": {"app": "api"}}, "port": 80}),
            ),
        )],
    );
    wait_for_health(&k8s, "the dangling reference reported", |h| {
        policy_failure(h, "demo").is_some_and(|f| {
            f.hint.contains(
                "AuthorizationPolicy web-api-voting: there is no MeshTLSAuthentication nope in the namespace",
            ) && f.hint.contains("previous policy stays in force")
        })
    })
    .await;
    let other = DeploymentRef::new("other", "api");
    let snap = wait_for(&k8s, "namespace other compiled", |s| {
        s.policy.port(&other, 80).name == "api-http"
    })
    .await;
    assert_eq!(port(&snap.policy, &web(8080)), http_before);
    assert!(policy_failure(&k8s.health(), "other").is_none());

    // Fixed, it applies; broken otherwise (a spec the controller cannot
    // read), it is refused again.
    mock.send(
        "authorizationpolicies",
        vec![event("MODIFIED", voting_policy("demo-all"))],
    );
    let fixed = wait_for(&k8s, "the fixed policy", |s| {
        let route = &s.policy.port(&web(8080).0, 8080).routes[0];
        route.authorizations[0]
            .authentication
            .as_ref()
            .is_some_and(|a| format!("{a:?}").contains("ops"))
    })
    .await;
    wait_for_health(&k8s, "the error cleared", |h| {
        policy_failure(h, "demo").is_none()
    })
    .await;
    mock.send(
        "servers",
        vec![event("MODIFIED", web_http_server("HTTP/3"))],
    );
    wait_for_health(&k8s, "the undecodable Server reported", |h| {
        policy_failure(h, "demo").is_some_and(|f| {
            f.hint
                .starts_with("Server web-http: spec: unknown variant `HTTP/3`")
        })
    })
    .await;
    assert_eq!(
        port(&k8s.snapshots().borrow().policy, &web(8080)),
        port(&fixed.policy, &web(8080))
    );
}

#[tokio::test]
async fn namespace_and_workload_annotations_set_the_default_live() {
    let script = Script {
        lists: cluster(Some("all-authenticated")),
        ..Script::default()
    };
    let (k8s, mock) = start(script, Defaults::default());
    let snap = compiled(&k8s).await;
    let db = DeploymentRef::new("demo", "db");
    assert_eq!(snap.policy.default_for(&db), DefaultPolicy::Deny);
    assert_eq!(
        snap.policy.default_for(&web(80).0),
        DefaultPolicy::AllAuthenticated
    );

    mock.send(
        "namespaces",
        vec![event("MODIFIED", namespace("demo", Some("audit")))],
    );
    // A rollout: the new template's annotation wins over the old one's.
    let rolled =
        PodParts::new(json!({"app": "db"}), &[("pg", 5432)]).default_policy("all-unauthenticated");
    mock.send(
        "replicasets",
        vec![event(
            "ADDED",
            replica_set("demo", "db-new", "db", 2, &rolled),
        )],
    );
    let snap = wait_for(&k8s, "the new annotations", |s| {
        s.policy.default_for(&web(80).0) == DefaultPolicy::Audit
            && s.policy.default_for(&db) == DefaultPolicy::AllUnauthenticated
    })
    .await;
    assert_eq!(port(&snap.policy, &web(80)).name, "default:audit");

    mock.send(
        "namespaces",
        vec![event("MODIFIED", namespace("demo", Some("allow")))],
    );
    wait_for_health(&k8s, "the bad annotation reported", |h| {
        policy_failure(h, "demo").is_some_and(|f| {
            f.hint.starts_with(&format!(
                "Namespace demo: annotation {DEFAULT_POLICY_ANNOTATION}: unknown default inbound policy \"allow\""
            ))
        })
    })
    .await;
    assert_eq!(
        k8s.snapshots().borrow().policy.default_for(&web(80).0),
        DefaultPolicy::Audit
    );
}

/// The example of `deploy/examples/policy.yaml`, which `conduit install`'s
/// tests check against the CustomResourceDefinitions, compiles as it says.
#[tokio::test]
async fn the_deploy_example_compiles() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/examples/policy.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let mut lists = BTreeMap::new();
    for kind in conduit_api::policy::resources::KINDS {
        let items: Vec<Value> = docs
            .iter()
            .filter(|d| d["kind"] == kind.kind)
            .cloned()
            .collect();
        assert!(!items.is_empty(), "the example has no {}", kind.kind);
        let list = list(&format!("{}List", kind.kind), "policy.conduit.io/v1", items);
        lists.insert(kind.plural, list);
    }
    let voting = PodParts::new(json!({"app": "voting"}), &[("http", 8080)]);
    lists.insert(
        "replicasets",
        list(
            "ReplicaSetList",
            "apps/v1",
            vec![replica_set("demo", "voting-1", "voting", 1, &voting)],
        ),
    );
    let script = Script {
        lists,
        ..Script::default()
    };
    let (k8s, _mock) = start(script, Defaults::default());
    let workload = DeploymentRef::new("demo", "voting");
    let snap = wait_for(&k8s, "the example compiled", |s| {
        !s.policy.is_pending() && s.policy.port(&workload, 8080).name == "voting-http"
    })
    .await;
    let server = snap.policy.port(&workload, 8080);
    let routes: Vec<(&str, &str)> = server
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.authorizations[0].name.as_str()))
        .collect();
    assert_eq!(
        routes,
        [("voting-api", "web-votes"), ("voting-rest", "meshed-rest")]
    );
    assert!(
        k8s.health()
            .iter()
            .all(|h| h.status != HealthStatus::Failed || !h.description.contains("policy")),
        "{:#?}",
        k8s.health()
    );
}

/// Without the CustomResourceDefinitions, policy stays unanswered (proxies
/// keep what they apply) and `conduit check` says what is missing.
#[tokio::test]
async fn without_the_definitions_policy_stays_pending_and_check_says_why() {
    let script = Script {
        lists: cluster(None),
        missing: vec!["servers"],
        ..Script::default()
    };
    let (k8s, _mock) = start(script, Defaults::default());
    wait_for_health(&k8s, "the missing definition reported", |h| {
        h.iter().any(|h| {
            h.status == HealthStatus::Failed
                && h.description == "can watch servers through the Kubernetes API"
                && h.hint
                    .contains("CustomResourceDefinitions are not installed")
        })
    })
    .await;
    // Discovery goes on without it.
    wait_for(&k8s, "the other watches listed", |s| {
        s.deployments.contains_key(&web(80).0)
    })
    .await;
    assert!(k8s.snapshots().borrow().policy.is_pending());
    assert!(
        k8s.health()
            .iter()
            .any(|h| h.status == HealthStatus::Warning
                && h.description == "policy is compiled from the Kubernetes API"),
        "{:#?}",
        k8s.health()
    );
}
