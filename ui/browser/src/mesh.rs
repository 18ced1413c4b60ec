//! The mesh the dashboard is looked at with: the real telemetry store, the
//! real controller serving the bundle, and real proxies carrying steady,
//! known traffic (namespace `demo`):
//!
//! ```text
//! load ──> web-0 proxy (outbound) ──┬─> voting-0 proxy ──> upstream: 20 ms, every 10th request 500
//!                                   └─> emoji-0 proxy  ──> upstream: 2 ms, never fails
//! ```
//!
//! Built from `conduit-testbed`'s processes; the browser tests and the
//! `ui` load test share it so both look at the same thing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conduit_api::json::Stat;
use conduit_testbed::{
    Controller, Process, Proxy, ProxySpec, Store, TempDir, Upstream, UpstreamSpec, drive_load,
    http_get, wait_for_http,
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

pub struct Mesh {
    pub store: Store,
    pub controller: Controller,
    dir: TempDir,
    bundle: PathBuf,
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
        let store = Store::start();
        let ui = bundle.display().to_string();
        let controller =
            Controller::start_with_args(&store.grpc_url(), &discovery, &["--ui-dir", &ui]);
        let proxy = |deployment: &str, pod: &str, app: SocketAddr| {
            Proxy::start(ProxySpec {
                namespace: "demo",
                deployment,
                pod,
                app,
                telemetry: Some(store.grpc_url()),
                destination: Some(controller.destination_url()),
                extra: ["--tap-sample-rate", "1", "--tap-sample-max-rps", "1000"]
                    .map(String::from)
                    .to_vec(),
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
        let voting = proxy("voting", "voting-0", voting_app.addr);
        let emoji = proxy("emoji", "emoji-0", emoji_app.addr);
        let web = proxy("web", "web-0", web_app.addr);
        publish(
            &discovery,
            &[("web", &web), ("voting", &voting), ("emoji", &emoji)],
        )?;
        let load = Load::start(web.outbound);
        let mesh = Self {
            store,
            controller,
            dir,
            bundle: bundle.to_path_buf(),
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
        let (status, _, body) = http_get(
            self.controller.http,
            "/api/v1/stat?namespace=demo&window=1m",
        )
        .ok()?;
        (status == 200).then(|| serde_json::from_str(&body).ok())?
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

    /// Starts the controller again on the same addresses, as a supervisor
    /// would after a crash, and waits until it answers.
    pub fn restart_controller(&mut self) -> Result<(), String> {
        let args: Vec<String> = [
            "--grpc-listen",
            &self.controller.grpc.to_string(),
            "--http-listen",
            &self.controller.http.to_string(),
            "--store-addr",
            &self.store.grpc_url(),
            "--discovery",
            &format!(
                "static:{}",
                self.dir.path().join("discovery.yaml").display()
            ),
            "--ui-dir",
            &self.bundle.display().to_string(),
            "--api-token-file",
            &self.controller.api_token_file.display().to_string(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
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

/// Publishes the proxies in the discovery file, which the controller
/// watches (as with `conduit demo`); written whole, then renamed.
fn publish(discovery: &Path, deployments: &[(&str, &Proxy)]) -> Result<(), String> {
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
    let tmp = discovery.with_extension("tmp");
    std::fs::write(&tmp, yaml).map_err(|e| e.to_string())?;
    std::fs::rename(tmp, discovery).map_err(|e| e.to_string())
}

/// Steady traffic from two threads, one bounded `drive_load` second after
/// another, until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(target: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [
            (VOTING, VOTING_PATHS, VOTING_RPS),
            (EMOJI, EMOJI_PATHS, EMOJI_RPS),
        ]
        .into_iter()
        .map(|(authority, paths, rps)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    drive_load(target, authority, paths, rps, Duration::from_secs(1));
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
