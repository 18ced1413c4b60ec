//! The mesh the dashboard is looked at with: the real telemetry store, the
//! real controller serving the bundle, and real proxies carrying steady,
//! known traffic (namespace `demo`):
//!
//! ```text
//! load ──> web-0 proxy (outbound) ─mTLS─┬─> voting-0 proxy ──> upstream: 20 ms, every 10th request 500
//!                                       └─> emoji-0 proxy  ──> upstream: 2 ms, never fails
//! intruder (plaintext, no identity) ──────> voting-0 proxy: 403, denied by policy
//! ```
//!
//! Identity is on, as in `conduit demo`: the controller issues each proxy
//! (and the store) a certificate, so meshed traffic is mTLS and the policy
//! can name who may call: voting's application port is a Server only
//! web's identity may reach, which makes both an allowed and a denied
//! count for the dashboard's authorization panel.
//!
//! Built from `conduit-testbed`'s processes; the browser tests and the
//! `ui` load test share it so both look at the same thing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conduit_api::IdentityName;
use conduit_api::json::{Authz, Edges, Routes, Stat};
use conduit_testbed::{
    Controller, MeshIdentity, Process, Proxy, ProxySpec, Store, TempDir, Upstream, UpstreamSpec,
    drive_load, free_addr, http_get, wait_for_http,
};

pub const VOTING: &str = "voting.demo.svc.cluster.local:8080";
pub const EMOJI: &str = "emoji.demo:8080";
pub const VOTING_PATHS: &[&str] = &["/vote/cat", "/vote/dog", "/results"];
pub const EMOJI_PATHS: &[&str] = &["/list", "/find/cat"];
/// Requests per second sent to each Deployment.
pub const VOTING_RPS: u32 = 20;
pub const EMOJI_RPS: u32 = 10;
/// Every `VOTING_FAIL_EVERY`-th request to voting fails.
pub const VOTING_FAIL_EVERY: u64 = 10;
/// The Server on voting's application port, and its one authorization,
/// which admits web's identity alone.
pub const VOTING_SERVER: &str = "voting-http";
pub const VOTING_AUTHORIZATION: &str = "web-only";
/// What the intruder asks voting for, straight at its pod: none of web's
/// paths, so views of voting can tell the two apart.
pub const INTRUDER_PATHS: &[&str] = &["/intruder"];
/// Denied requests per second: steady, so a counter over a window grows
/// (a single burst would be one sample, which `increase` reads as 0).
pub const INTRUDER_RPS: u32 = 1;
const NAMESPACE: &str = "demo";
const DEPLOYMENTS: [&str; 3] = ["web", "voting", "emoji"];

pub struct Mesh {
    pub store: Store,
    pub controller: Controller,
    dir: TempDir,
    bundle: PathBuf,
    identity: MeshIdentity,
    _proxies: [Proxy; 3],
    _apps: [Upstream; 3],
    load: Option<Load>,
}

impl Mesh {
    /// Starts everything and sends traffic; returns once the store holds
    /// some of it for both upstreams.
    pub fn start(bundle: &Path) -> Result<Self, String> {
        let dir = TempDir::new("ui-mesh");
        let discovery = dir.path().join("discovery.yaml");
        std::fs::write(&discovery, "version: 1\n").map_err(|e| e.to_string())?;
        let identities: Vec<IdentityName> = DEPLOYMENTS
            .iter()
            .map(|d| IdentityName::new(*d, NAMESPACE))
            .chain([store_identity()])
            .collect();
        let identity = MeshIdentity::new(&identities);
        // The store certifies itself with the controller, which must know
        // where the store will be: its address is chosen before either.
        let store_grpc = free_addr();
        let controller_args = controller_args(&identity, bundle);
        let controller_args: Vec<&str> = controller_args.iter().map(String::as_str).collect();
        let controller = Controller::start_with_args(
            &format!("https://{store_grpc}"),
            &discovery,
            &controller_args,
        );
        let store = Store::start_on(
            store_grpc,
            &identity.workload_args(&controller, &store_identity()),
        );
        let proxy = |deployment: &str, app: SocketAddr| {
            let mut extra =
                identity.workload_args(&controller, &IdentityName::new(deployment, NAMESPACE));
            extra.extend(
                [
                    "--service-account",
                    deployment,
                    "--tap-sample-rate",
                    "1",
                    "--tap-sample-max-rps",
                    "1000",
                ]
                .map(String::from),
            );
            Proxy::start(ProxySpec {
                namespace: NAMESPACE,
                deployment,
                pod: &format!("{deployment}-0"),
                app,
                telemetry: Some(format!("https://{}", store.grpc)),
                destination: Some(format!("https://{}", controller.mesh)),
                extra,
            })
        };
        let voting_app = Upstream::start(UpstreamSpec {
            delay: Duration::from_millis(20),
            fail_every: VOTING_FAIL_EVERY,
        });
        let emoji_app = Upstream::start(UpstreamSpec {
            delay: Duration::from_millis(2),
            fail_every: 0,
        });
        let web_app = Upstream::start(UpstreamSpec::default());
        let voting = proxy("voting", voting_app.addr);
        let emoji = proxy("emoji", emoji_app.addr);
        let web = proxy("web", web_app.addr);
        publish(
            &discovery,
            &[("web", &web), ("voting", &voting), ("emoji", &emoji)],
            voting_app.addr.port(),
        )?;
        let load = Load::start(web.outbound, voting.inbound);
        let mesh = Self {
            store,
            controller,
            dir,
            bundle: bundle.to_path_buf(),
            identity,
            _proxies: [web, voting, emoji],
            _apps: [web_app, voting_app, emoji_app],
            load: Some(load),
        };
        mesh.wait_for_traffic(Duration::from_secs(30))?;
        Ok(mesh)
    }

    /// `http://ip:port` of the dashboard.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.controller.http)
    }

    /// The URL that opens the dashboard with a session (what `conduit
    /// dashboard` prints), which tap and top need.
    pub fn session_url(&self) -> String {
        format!(
            "{}/auth?token={}",
            self.base_url(),
            self.controller.api_token
        )
    }

    /// `GET /api/v1/stat` of namespace `demo`, as the controller answers.
    pub fn stat(&self) -> Option<Stat> {
        serde_json::from_str(&self.get("/api/v1/stat?namespace=demo&window=1m")?).ok()
    }

    /// `GET /api/v1/authz` of Deployment `demo/NAME` over the last
    /// minute, as the controller answers.
    pub fn authz(&self, name: &str) -> Option<Authz> {
        let path = format!("/api/v1/authz?namespace=demo&name={name}&window=1m");
        serde_json::from_str(&self.get(&path)?).ok()
    }

    /// `GET /api/v1/routes` of Deployment `demo/NAME` over the last
    /// minute, as the controller answers.
    pub fn routes(&self, name: &str) -> Option<Routes> {
        let path = format!("/api/v1/routes?namespace=demo&name={name}&window=1m");
        serde_json::from_str(&self.get(&path)?).ok()
    }

    /// `GET /api/v1/edges` of every namespace, as the controller answers.
    pub fn edges(&self) -> Option<Edges> {
        serde_json::from_str(&self.get("/api/v1/edges?all_namespaces=true")?).ok()
    }

    /// The body of the controller's successful answer to `GET path`.
    fn get(&self, path: &str) -> Option<String> {
        let (status, _, body) = http_get(self.controller.http, path).ok()?;
        (status == 200).then_some(body)
    }

    fn wait_for_traffic(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let busy = self.stat().is_some_and(|s| {
                ["voting", "emoji"].iter().all(|n| {
                    s.rows.iter().any(|r| {
                        r.name == *n && r.metrics.as_ref().is_some_and(|m| m.total() >= 20)
                    })
                })
            });
            if busy {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!(
            "no traffic reached the store within {timeout:?}; the controller says {:?}",
            self.stat()
        ))
    }

    /// Kills the controller, as a crash would.
    pub fn kill_controller(&mut self) {
        self.controller.process.kill();
    }

    /// Starts the controller again on the same addresses and identity
    /// roots, as a supervisor would after a crash, and waits until it
    /// answers.
    pub fn restart_controller(&mut self) -> Result<(), String> {
        let c = &self.controller;
        let mut args: Vec<String> = [
            "--grpc-listen",
            &c.grpc.to_string(),
            "--http-listen",
            &c.http.to_string(),
            "--mesh-listen",
            &c.mesh.to_string(),
            "--store-addr",
            &format!("https://{}", self.store.grpc),
            "--discovery",
            &format!(
                "static:{}",
                self.dir.path().join("discovery.yaml").display()
            ),
            "--api-token-file",
            &c.api_token_file.display().to_string(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        args.extend(controller_args(&self.identity, &self.bundle));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.controller.process = Process::spawn("conduit-controller", &args);
        wait_for_http(self.controller.http, "/healthz", Duration::from_secs(30))
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // Stop the traffic before the proxies it goes through.
        self.load.take();
    }
}

fn store_identity() -> IdentityName {
    IdentityName::store(
        conduit_api::identity::CONTROL_PLANE_NAMESPACE,
        conduit_api::identity::DEFAULT_TRUST_DOMAIN,
    )
}

/// The controller's flags besides its addresses: the identity service
/// with the mesh's roots, and the dashboard's bundle.
fn controller_args(identity: &MeshIdentity, bundle: &Path) -> Vec<String> {
    let mut args = identity.controller_args("24h");
    args.extend(["--ui-dir".to_string(), bundle.display().to_string()]);
    args
}

/// Publishes the proxies in the discovery file, which the controller
/// watches (as with `conduit demo`), with the policy on voting's
/// application port `voting_port`; written whole, then renamed.
fn publish(
    discovery: &Path,
    deployments: &[(&str, &Proxy)],
    voting_port: u16,
) -> Result<(), String> {
    let mut yaml = String::from("version: 1\nnamespaces:\n  demo:\n    deployments:\n");
    for (name, p) in deployments {
        yaml.push_str(&format!(
            "      {name}:\n        service_account: {name}\n        pods:\n          \
             - {{name: {name}-0, addr: {}, tap: {}, admin: {}}}\n",
            p.inbound, p.tap, p.admin
        ));
    }
    yaml.push_str("    services:\n");
    for (name, _) in deployments {
        yaml.push_str(&format!(
            "      {name}: {{deployment: {name}, ports: [{{port: 8080}}]}}\n"
        ));
    }
    yaml.push_str(&format!(
        "    policy:\n      servers:\n        {VOTING_SERVER}: {{deployment: voting, port: {voting_port}}}\n\
         \x20     authorization_policies:\n        {VOTING_AUTHORIZATION}:\n          \
         target: {{server: {VOTING_SERVER}}}\n          required_authentications: [{{mesh_tls: web}}]\n\
         \x20     mesh_tls_authentications:\n        web: {{service_accounts: [{{name: web}}]}}\n"
    ));
    let tmp = discovery.with_extension("tmp");
    std::fs::write(&tmp, yaml).map_err(|e| e.to_string())?;
    std::fs::rename(tmp, discovery).map_err(|e| e.to_string())
}

/// Steady traffic from three threads, one bounded `drive_load` second
/// after another, until dropped: web's calls to voting and emoji through
/// its proxy, and the intruder's straight to voting's pod. A round that
/// ends early (its last request answered at once) waits out its second,
/// so the rate holds however fast the answers come.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(web: SocketAddr, voting_pod: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [
            (web, VOTING, VOTING_PATHS, VOTING_RPS),
            (web, EMOJI, EMOJI_PATHS, EMOJI_RPS),
            (voting_pod, VOTING, INTRUDER_PATHS, INTRUDER_RPS),
        ]
        .into_iter()
        .map(|(target, authority, paths, rps)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let round = Duration::from_secs(1);
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    drive_load(target, authority, paths, rps, round);
                    std::thread::sleep(round.saturating_sub(started.elapsed()));
                }
            })
        })
        .collect();
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The bundle in `ui/dist` (what `cargo xtask ui` writes), or an error
/// saying how to build it.
pub fn bundle() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
    if dir.join("index.html").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "no dashboard bundle in {}: build it with `cargo xtask ui`",
            dir.display()
        ))
    }
}
