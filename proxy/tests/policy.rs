//! Inbound authorization policy end to end: a real controller compiles the
//! `policy:` section of its static discovery file and streams it to a real
//! server proxy, which enforces it on requests from a meshed client proxy
//! (mTLS), another meshed proxy, and a plaintext client on loopback.
//!
//! One mesh runs the whole sequence, rewriting the file between steps:
//! each step waits (at most 1 s, the bound) for the new policy to
//! show in behaviour, so the steps also prove live updates.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use conduit_api::IdentityName;
use conduit_testbed::{
    Controller, MeshIdentity, Proxy, ProxySpec, TempDir, Upstream, free_addr, http_get, metric_sum,
    raw_request,
};

fn id(sa: &str) -> IdentityName {
    IdentityName::new(sa, "test")
}

/// A policy change must apply within this.
const APPLY_WITHIN: Duration = Duration::from_secs(1);

struct Mesh {
    identity: MeshIdentity,
    controller: Controller,
    file: PathBuf,
    _dir: TempDir,
    app: Upstream,
    server: Proxy,
    client: Proxy,
    other: Proxy,
}

fn write(path: &Path, text: &str) {
    // Write then rename, so the controller never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The discovery file: deployment `web` with `web_extra` under it, and
/// `policy` as the namespace's policy section.
fn discovery(web_extra: &str, policy: &str) -> String {
    format!(
        "version: 1\nnamespaces:\n  test:\n    deployments:\n      web:\n        service_account: web\n{web_extra}\
         \x20     client: {{service_account: client}}\n      other: {{service_account: other}}\n{policy}"
    )
}

impl Mesh {
    fn start() -> Self {
        let identity = MeshIdentity::new(&[id("web"), id("client"), id("other")]);
        let dir = TempDir::new("policy");
        let file = dir.path().join("discovery.yaml");
        let app = Upstream::start(Default::default());
        write(&file, &discovery("", ""));
        let args = identity.controller_args("24h");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // No store: nothing here reads metrics through the controller.
        let controller = Controller::start_with_args("http://127.0.0.1:9", &file, &args);
        let proxy = |sa: &'static str, extra: Vec<String>| {
            let mut args = identity.workload_args(&controller, &id(sa));
            args.extend(["--service-account".into(), sa.into()]);
            args.extend(extra);
            Proxy::start(ProxySpec {
                namespace: "test",
                deployment: sa,
                pod: sa,
                app: app.addr,
                telemetry: None,
                destination: Some(format!("https://{}", controller.mesh)),
                extra: args,
            })
        };
        let server = proxy("web", vec![]);
        let to_web = |server: &Proxy| {
            vec![
                "--outbound-endpoint".to_string(),
                format!("web.test:8080={};h2;identity={}", server.inbound, id("web")),
            ]
        };
        let client = proxy("client", to_web(&server));
        let other = proxy("other", to_web(&server));
        Self {
            identity,
            controller,
            file,
            _dir: dir,
            app,
            server,
            client,
            other,
        }
    }

    fn set(&self, web_extra: &str, policy: &str) {
        write(&self.file, &discovery(web_extra, policy));
    }

    /// Status codes of `method path` from the plaintext client, the meshed
    /// client and the other meshed proxy.
    fn statuses(&self, method: &str, path: &str) -> [u16; 3] {
        [
            request(self.server.inbound, method, path).0,
            request(self.client.outbound, method, path).0,
            request(self.other.outbound, method, path).0,
        ]
    }

    /// Waits for `want` (plaintext, client, other) on `GET /api/list`.
    fn expect(&self, step: &str, want: [u16; 3]) {
        self.expect_on(step, "GET", "/api/list", want)
    }

    /// Waits for two rounds in a row to answer `want`: one round alone can
    /// straddle the update (its first requests under the old policy, the
    /// last under the new), which would count as applied too early.
    fn expect_on(&self, step: &str, method: &str, path: &str, want: [u16; 3]) {
        let start = Instant::now();
        let mut matched = false;
        loop {
            let got = self.statuses(method, path);
            if got == want && matched {
                eprintln!("{step}: applied after {:?}", start.elapsed());
                return;
            }
            matched = got == want;
            if start.elapsed() > APPLY_WITHIN {
                panic!(
                    "{step}: {method} {path} answered {got:?} (plaintext, client, other), want {want:?} within {APPLY_WITHIN:?}\n{}",
                    self.server.process.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn metrics(&self) -> String {
        http_get(self.server.admin, "/metrics").unwrap().2
    }
}

/// One HTTP/1.1 request over a new connection: the status and the answer.
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    raw_request(
        addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: web.test:8080\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
}

fn server_policy(port: u16, auth: &str, extra: &str) -> String {
    format!(
        "    policy:\n      servers:\n        web-http: {{deployment: web, port: {port}}}\n{extra}\
         \x20     mesh_tls_authentications:\n        client-only: {{identities: [\"{}\"]}}\n\
         \x20       any-mesh: {{identities: [\"*\"]}}\n\
         \x20     network_authentications:\n        loopback: {{networks: [{{cidr: 127.0.0.0/8}}]}}\n{auth}",
        id("client")
    )
}

#[test]
fn policy_admits_what_it_names_and_applies_live() {
    let mesh = Mesh::start();
    let port = mesh.app.addr.port();
    for p in [&mesh.server, &mesh.client, &mesh.other] {
        conduit_testbed::wait_for_http(p.admin, "/ready", Duration::from_secs(20)).unwrap();
    }

    // No policy at all: the mesh default, all-unauthenticated.
    mesh.expect("all-unauthenticated", [200, 200, 200]);

    // The workload's default: deny blocks everyone, with 403 and the
    // proxy's error header, counted per server.
    mesh.set("        default_inbound_policy: deny\n", "");
    mesh.expect("deny", [403, 403, 403]);
    let (_, answer) = request(mesh.server.inbound, "GET", "/api/list");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("conduit-proxy-error: unauthorized"),
        "{answer}"
    );
    let m = mesh.metrics();
    assert!(
        metric_sum(
            &m,
            "inbound_http_authz_deny_total",
            &[("srv_name", "default:deny")]
        ) >= 3.0,
        "{m}"
    );

    // all-authenticated: the plaintext client is refused, meshed ones not.
    mesh.set("        default_inbound_policy: all-authenticated\n", "");
    mesh.expect("all-authenticated", [403, 200, 200]);

    // A Server with a policy naming one identity admits exactly it; the
    // policy's name is on the allow counter.
    let only_client = "      authorization_policies:\n        web-client:\n          target: {server: web-http}\n          required_authentications: [{mesh_tls: client-only}]\n";
    mesh.set("", &server_policy(port, only_client, ""));
    mesh.expect("identity", [403, 200, 403]);
    let m = mesh.metrics();
    assert!(
        metric_sum(
            &m,
            "inbound_http_authz_allow_total",
            &[
                ("srv_name", "web-http"),
                ("authz_name", "web-client"),
                ("audit", "false")
            ]
        ) >= 1.0,
        "{m}"
    );

    // A route-level policy: the client may list but not vote.
    let routes = "      http_routes:\n        list: {server: web-http, matches: [{path: {exact: /api/list}, method: GET}]}\n        vote: {server: web-http, matches: [{path: {prefix: /api/vote}}]}\n";
    let list_only = "      authorization_policies:\n        client-lists:\n          target: {http_route: list}\n          required_authentications: [{mesh_tls: client-only}, {network: loopback}]\n";
    mesh.set("", &server_policy(port, list_only, routes));
    mesh.expect("route list", [403, 200, 403]);
    mesh.expect_on("route vote", "POST", "/api/vote", [403, 403, 403]);
    let m = mesh.metrics();
    assert!(
        metric_sum(
            &m,
            "inbound_http_authz_deny_total",
            &[("srv_name", "web-http"), ("route_name", "vote")]
        ) >= 1.0,
        "{m}"
    );

    // Audit: what would be denied is let through and counted as audited.
    let audit = "      authorization_policies:\n        client-lists:\n          target: {server: web-http}\n          required_authentications: [{mesh_tls: client-only}]\n          audit: true\n";
    mesh.set("", &server_policy(port, audit, ""));
    mesh.expect("audit", [200, 200, 200]);
    let m = mesh.metrics();
    assert!(
        metric_sum(
            &m,
            "inbound_http_authz_allow_total",
            &[("srv_name", "web-http"), ("audit", "true")]
        ) >= 2.0,
        "{m}"
    );

    // A malformed policy is refused by name and the previous one stays.
    mesh.set("", &server_policy(port, only_client, ""));
    mesh.expect("identity again", [403, 200, 403]);
    let broken = "      authorization_policies:\n        web-client:\n          target: {server: no-such-server}\n";
    mesh.set("", &server_policy(port, broken, ""));
    std::thread::sleep(APPLY_WITHIN);
    assert_eq!(mesh.statuses("GET", "/api/list"), [403, 200, 403]);
    let check = mesh.controller.process.log();
    assert!(
        check.contains("no-such-server"),
        "the error names the resource:\n{check}"
    );

    // The controller away: the proxy keeps the last policy it had.
    let mut mesh = mesh;
    mesh.controller.process.kill();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(mesh.statuses("GET", "/api/list"), [403, 200, 403]);
    let _ = &mesh.identity;
}

/// Before a proxy has heard from any controller, the default policy from
/// its own flags applies; opaque TCP is checked per connection and a
/// denied connection is closed.
#[test]
fn without_a_controller_the_configured_default_applies_to_http_and_tcp() {
    let app = Upstream::start(Default::default());
    let proxy = Proxy::start(ProxySpec {
        namespace: "test",
        deployment: "web",
        pod: "web-0",
        app: app.addr,
        telemetry: None,
        // Nothing listens there: the policy service never answers.
        destination: Some(format!("http://{}", free_addr())),
        extra: vec![
            "--default-inbound-policy".into(),
            "deny".into(),
            "--opaque-ports".into(),
            app.addr.port().to_string(),
        ],
    });
    let mut s = TcpStream::connect(proxy.inbound).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a denied TCP connection is closed without an answer");
    let m = http_get(proxy.admin, "/metrics").unwrap().2;
    assert!(
        metric_sum(
            &m,
            "inbound_tcp_authz_deny_total",
            &[("srv_name", "default:deny")]
        ) >= 1.0,
        "{m}"
    );
}

/// A freshly started proxy holds its first clients until the controller
/// has said what the port admits: the permissive default must not let the
/// first requests of a new pod past a policy that denies them.
#[test]
fn the_first_request_after_start_up_gets_the_controllers_policy() {
    let identity = MeshIdentity::new(&[id("web")]);
    let dir = TempDir::new("policy-first");
    let file = dir.path().join("discovery.yaml");
    write(
        &file,
        &discovery("        default_inbound_policy: deny\n", ""),
    );
    let args = identity.controller_args("24h");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let controller = Controller::start_with_args("http://127.0.0.1:9", &file, &args);
    let app = Upstream::start(Default::default());
    let mut extra = identity.workload_args(&controller, &id("web"));
    extra.extend(["--service-account".into(), "web".into()]);
    let server = Proxy::start(ProxySpec {
        namespace: "test",
        deployment: "web",
        pod: "web",
        app: app.addr,
        telemetry: None,
        destination: Some(format!("https://{}", controller.mesh)),
        extra,
    });
    let (status, answer) = request(server.inbound, "GET", "/api/list");
    assert_eq!(status, 403, "the very first request: {answer}");
}
