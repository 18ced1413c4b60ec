//! The mesh the dashboard is looked at with: the real telemetry store, the
//! real controller serving the bundle, and real proxies carrying steady,
//! known traffic (namespace `demo`):
//!
//! ```text
//! load ──> web-0 proxy (outbound) ─mTLS─┬─> voting-0 proxy ──> upstream: 20 ms, every 10th request 500
//!                                       └─> emoji-0 proxy  ──> upstream: 2 ms, never fails
//! intruder (plaintext, no identity) ──────> voting-0 proxy: 403, denied by policy
//! web-0 proxy (outbound) ──> gone.demo:8080, a closed port: 502, unreachable
//! ```
//!
//! The steady load can be paused ([`Mesh::pause_load`]) so a test sends a
//! known number of requests of its own ([`Mesh::send_to_voting`]).
//!
//! Every pod runs version `v1`; [`Mesh::roll_out_voting`] starts voting's
//! `v2` beside it (every [`ROLLOUT_FAIL_EVERY`]-th request fails), as
//! `conduit demo --rollout` does.
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
use conduit_testbed::engine::Engine;
use conduit_testbed::{
    Controller, MeshIdentity, Process, Proxy, ProxySpec, Store, TempDir, Upstream, UpstreamSpec,
    drive_load, free_addr, http_get, wait_for_http,
};

pub const VOTING: &str = "voting.demo.svc.cluster.local:8080";
pub const EMOJI: &str = "emoji.demo:8080";
/// An authority web's proxy sends to a closed port (its static endpoint):
/// the proxy answers 502 itself, reason `unreachable`.
pub const GONE: &str = "gone.demo:8080";
/// Nothing listens on port 1 of loopback (a privileged port no test binds).
const CLOSED_PORT: &str = "127.0.0.1:1";
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
/// The version of every pod, and of voting's rolled-out pod, which fails
/// every `ROLLOUT_FAIL_EVERY`-th request.
pub const FIRST_VERSION: &str = "v1";
pub const ROLLOUT_VERSION: &str = "v2";
pub const ROLLOUT_FAIL_EVERY: u64 = 2;
const NAMESPACE: &str = "demo";
const DEPLOYMENTS: [&str; 3] = ["web", "voting", "emoji"];

pub struct Mesh {
    pub store: Store,
    pub controller: Controller,
    dir: TempDir,
    bundle: PathBuf,
    identity: MeshIdentity,
    proxies: [Proxy; 3],
    apps: [Upstream; 3],
    /// Voting's second version, once rolled out.
    rollout: Option<(Proxy, Upstream)>,
    load: Option<Load>,
    /// `--metrics-backend prometheus:URL`, when the controller reads an
    /// external engine.
    backend: Option<String>,
}

impl Mesh {
    /// Starts everything and sends traffic; returns once the store holds
    /// some of it for both upstreams.
    pub fn start(bundle: &Path) -> Result<Self, String> {
        Self::start_reading(bundle, None)
    }

    /// As [`Mesh::start`], the store forwarding every series to `engine`
    /// (remote write) and the controller reading its metrics from it
    /// (`--metrics-backend prometheus:URL`) when one is given.
    pub fn start_reading(bundle: &Path, engine: Option<&Engine>) -> Result<Self, String> {
        let backend = engine.map(|e| format!("prometheus:{}", e.url()));
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
        let controller_args = controller_args(&identity, bundle, backend.as_deref());
        let controller_args: Vec<&str> = controller_args.iter().map(String::as_str).collect();
        let controller = Controller::start_with_args(
            &format!("https://{store_grpc}"),
            &discovery,
            &controller_args,
        );
        let mut store_args = identity.workload_args(&controller, &store_identity());
        if let Some(engine) = engine {
            store_args.extend([
                "--remote-write-url".to_string(),
                format!("{}/api/v1/write", engine.url()),
            ]);
        }
        let store = Store::start_on(store_grpc, &store_args);
        let proxy = |deployment: &str, app: SocketAddr| {
            let pod = format!("{deployment}-0");
            let ends = Ends {
                identity: &identity,
                controller: &controller,
                store: &store,
            };
            ends.proxy(deployment, &pod, FIRST_VERSION, app)
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
        let web = {
            let ends = Ends {
                identity: &identity,
                controller: &controller,
                store: &store,
            };
            ends.proxy_with(
                "web",
                "web-0",
                FIRST_VERSION,
                web_app.addr,
                &["--outbound-endpoint", &format!("{GONE}={CLOSED_PORT}")],
            )
        };
        publish(
            &discovery,
            &[
                ("web", "web-0", &web),
                ("voting", "voting-0", &voting),
                ("emoji", "emoji-0", &emoji),
            ],
            voting_app.addr.port(),
        )?;
        let load = Load::start(web.outbound, voting.inbound);
        let mesh = Self {
            store,
            controller,
            dir,
            bundle: bundle.to_path_buf(),
            identity,
            proxies: [web, voting, emoji],
            apps: [web_app, voting_app, emoji_app],
            rollout: None,
            load: Some(load),
            backend,
        };
        mesh.wait_for_traffic(Duration::from_secs(30))?;
        Ok(mesh)
    }

    /// Starts voting's second version beside the first and adds it to
    /// voting's endpoints, so web's traffic splits between them.
    pub fn roll_out_voting(&mut self) -> Result<(), String> {
        let app = Upstream::start(UpstreamSpec {
            delay: Duration::from_millis(20),
            fail_every: ROLLOUT_FAIL_EVERY,
        });
        let ends = Ends {
            identity: &self.identity,
            controller: &self.controller,
            store: &self.store,
        };
        let v2 = ends.proxy("voting", "voting-v2-0", ROLLOUT_VERSION, app.addr);
        let [web, voting, emoji] = &self.proxies;
        publish(
            &self.dir.path().join("discovery.yaml"),
            &[
                ("web", "web-0", web),
                ("voting", "voting-0", voting),
                ("voting", "voting-v2-0", &v2),
                ("emoji", "emoji-0", emoji),
            ],
            self.apps[1].addr.port(),
        )?;
        self.rollout = Some((v2, app));
        Ok(())
    }

    /// Stops the steady load (every thread's round ends first).
    pub fn pause_load(&mut self) {
        self.load.take();
    }

    /// Starts the steady load again.
    pub fn resume_load(&mut self) {
        let [web, voting, _] = &self.proxies;
        self.load = Some(Load::start(web.outbound, voting.inbound));
    }

    /// Sends `rps` requests a second for `secs` seconds from web to
    /// voting; returns how many voting answered (200, or its upstream's
    /// 500), failing if any did not reach it.
    pub fn send_to_voting(&self, rps: u32, secs: u64) -> Result<u64, String> {
        let (codes, _) = drive_load(
            self.proxies[0].outbound,
            VOTING,
            VOTING_PATHS,
            rps,
            Duration::from_secs(secs),
        );
        if codes.keys().any(|c| *c != 200 && *c != 500) {
            return Err(format!("not every request reached voting: {codes:?}"));
        }
        Ok(codes.values().sum())
    }

    /// Sends one request from web to [`GONE`]; returns its status.
    pub fn call_gone(&self) -> Result<u16, String> {
        let (codes, _) = drive_load(
            self.proxies[0].outbound,
            GONE,
            &["/gone"],
            1,
            Duration::from_secs(1),
        );
        codes
            .into_keys()
            .next()
            .ok_or_else(|| "no answer from web's proxy".to_string())
    }

    /// `GET /api/v1/stat` of Deployment `demo/NAME` from `since` to
    /// `until` (RFC 3339 or how long ago), as the controller answers.
    pub fn stat_between(&self, name: &str, since: &str, until: &str) -> Option<Stat> {
        let path = format!("/api/v1/stat?namespace=demo&name={name}&since={since}&until={until}");
        serde_json::from_str(&self.get(&path)?).ok()
    }

    /// `GET /api/v1/stat` of `demo/NAME` by version over the last minute.
    pub fn stat_by_version(&self, name: &str) -> Option<Stat> {
        let path = format!("/api/v1/stat?namespace=demo&name={name}&window=1m&by=version");
        serde_json::from_str(&self.get(&path)?).ok()
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
        args.extend(controller_args(
            &self.identity,
            &self.bundle,
            self.backend.as_deref(),
        ));
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

/// What a proxy of the mesh talks to.
struct Ends<'a> {
    identity: &'a MeshIdentity,
    controller: &'a Controller,
    store: &'a Store,
}

impl Ends<'_> {
    /// A proxy of pod `pod` of `deployment`, running `version`, with
    /// identity and every request tapped.
    fn proxy(&self, deployment: &str, pod: &str, version: &str, app: SocketAddr) -> Proxy {
        self.proxy_with(deployment, pod, version, app, &[])
    }

    /// [`Self::proxy`] with `more` flags.
    fn proxy_with(
        &self,
        deployment: &str,
        pod: &str,
        version: &str,
        app: SocketAddr,
        more: &[&str],
    ) -> Proxy {
        let mut extra = self
            .identity
            .workload_args(self.controller, &IdentityName::new(deployment, NAMESPACE));
        extra.extend(
            [
                "--service-account",
                deployment,
                "--workload-version",
                version,
                "--tap-sample-rate",
                "1",
                "--tap-sample-max-rps",
                "1000",
            ]
            .map(String::from),
        );
        extra.extend(more.iter().map(ToString::to_string));
        Proxy::start(ProxySpec {
            namespace: NAMESPACE,
            deployment,
            pod,
            app,
            telemetry: Some(format!("https://{}", self.store.grpc)),
            destination: Some(format!("https://{}", self.controller.mesh)),
            extra,
        })
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
fn controller_args(identity: &MeshIdentity, bundle: &Path, backend: Option<&str>) -> Vec<String> {
    let mut args = identity.controller_args("24h");
    args.extend(["--ui-dir".to_string(), bundle.display().to_string()]);
    if let Some(backend) = backend {
        args.extend(["--metrics-backend".to_string(), backend.to_string()]);
    }
    args
}

/// Publishes the proxies (Deployment, pod, proxy; a Deployment's pods
/// next to each other) in the discovery file, which the controller
/// watches (as with `conduit demo`), with the policy on voting's
/// application port `voting_port`; written whole, then renamed.
fn publish(
    discovery: &Path,
    pods: &[(&str, &str, &Proxy)],
    voting_port: u16,
) -> Result<(), String> {
    let mut yaml = String::from("version: 1\nnamespaces:\n  demo:\n    deployments:\n");
    let mut deployments: Vec<&str> = Vec::new();
    for (name, pod, p) in pods {
        if deployments.last() != Some(name) {
            deployments.push(name);
            yaml.push_str(&format!(
                "      {name}:\n        service_account: {name}\n        pods:\n"
            ));
        }
        yaml.push_str(&format!(
            "          - {{name: {pod}, addr: {}, tap: {}, admin: {}}}\n",
            p.inbound, p.tap, p.admin
        ));
    }
    yaml.push_str("    services:\n");
    for name in deployments {
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
