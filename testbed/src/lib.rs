//! A test bed of real Conduit processes on loopback, for end-to-end tests
//! of any crate (the controller's, `conduit demo`'s, the dashboard's).
//!
//! Every process listens on ports the OS picked free, is waited for until
//! it answers, writes its log to a file under the system temp dir, and is
//! killed when its handle drops. When a test panics, the logs of the
//! processes it started are printed, since they usually say why.
//!
//! ```no_run
//! use conduit_testbed::{Controller, Store, Upstream};
//! let store = Store::start();
//! let discovery = conduit_testbed::TempDir::new("disc");
//! # let path = discovery.path().join("discovery.yaml");
//! let controller = Controller::start(&store, &path);
//! let app = Upstream::start(Default::default());
//! ```
//!
//! Binaries are taken from the cargo target dir of the running test
//! (`target/debug`), or from `CONDUIT_BIN_DIR`; build them first with
//! `cargo build --bins`.

pub mod agreement;
pub mod discovery;
pub mod engine;
pub mod hostile;
mod process;
pub mod raw_h2;
mod upstream;
pub mod web_voting;

pub use process::{
    HttpAnswer, Process, TempDir, bin, free_addr, http_get, http_get_with, metric_sum,
    query_escape, raw_request, wait_for_http, wait_for_tcp,
};
pub use upstream::{Upstream, UpstreamSpec, drive_load};

use std::net::SocketAddr;
use std::path::Path;

use conduit_api::IdentityName;
use conduit_deploy::local_identity::IdentityFiles;
use std::time::Duration;

/// How long a process may take to start answering on a loaded machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `conduit-telemetry-store` with its data in a temp dir.
pub struct Store {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub data: TempDir,
    pub process: Process,
    /// Its whole command line, for [`Store::restart`].
    args: Vec<String>,
}

impl Store {
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Like [`Store::start`] with more flags, e.g. a workload's identity
    /// flags from [`MeshIdentity::workload_args`].
    pub fn start_with_args(extra: &[String]) -> Self {
        Self::start_on(free_addr(), extra)
    }

    /// Like [`Store::start_with_args`] with its gRPC API on `grpc`, for a
    /// controller started first that must know where the store will be.
    pub fn start_on(grpc: SocketAddr, extra: &[String]) -> Self {
        let (http, data) = (free_addr(), TempDir::new("store"));
        let mut args = vec![
            "--grpc-listen".to_string(),
            grpc.to_string(),
            "--http-listen".to_string(),
            http.to_string(),
            "--data-dir".to_string(),
            data.path().display().to_string(),
        ];
        args.extend_from_slice(extra);
        let process = Self::spawn(http, &args);
        Self {
            grpc,
            http,
            data,
            process,
            args,
        }
    }

    /// Starts the store again (killing it first if it runs) on the same
    /// ports, data directory and flags, as a supervisor would after a crash.
    pub fn restart(&mut self) {
        self.process.kill();
        self.process = Self::spawn(self.http, &self.args);
    }

    fn spawn(http: SocketAddr, args: &[String]) -> Process {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Process::spawn("conduit-telemetry-store", &args);
        wait_for_http(http, "/-/ready", START_TIMEOUT)
            .unwrap_or_else(|e| process.fail(&format!("telemetry store never became ready: {e}")));
        process
    }

    /// `http://ip:port` of the gRPC API, as the controller and proxies take it.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

/// A running `conduit-controller` with the static discovery backend.
pub struct Controller {
    /// The public API (the CLI's and the dashboard's).
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// Destination and identity, for proxies.
    pub mesh: SocketAddr,
    pub process: Process,
    /// The token that opens tap and top (`--api-token-file`), and its file.
    pub api_token: String,
    pub api_token_file: std::path::PathBuf,
    _token_dir: TempDir,
}

impl Controller {
    /// Starts the controller against `store` with discovery from the YAML
    /// file at `discovery` (which must exist and be valid).
    pub fn start(store: &Store, discovery: &Path) -> Self {
        Self::start_with_store_url(&store.grpc_url(), discovery)
    }

    /// Like [`Controller::start`] with any store address (e.g. one where no
    /// store runs, to test how the controller copes).
    pub fn start_with_store_url(store_url: &str, discovery: &Path) -> Self {
        Self::start_with_args(store_url, discovery, &[])
    }

    /// Like [`Controller::start_with_store_url`] with more flags, e.g.
    /// `["--ui-dir", path]`.
    pub fn start_with_args(store_url: &str, discovery: &Path, extra: &[&str]) -> Self {
        let (grpc, http, mesh) = (free_addr(), free_addr(), free_addr());
        let (grpc_s, http_s, mesh_s) = (grpc.to_string(), http.to_string(), mesh.to_string());
        let discovery = format!("static:{}", discovery.display());
        let token_dir = TempDir::new("api-token");
        let api_token_file = token_dir.path().join("api-token");
        let token = conduit_identity::bearer::BearerToken::generate();
        token.write(&api_token_file).expect("write the API token");
        let token_path = api_token_file.display().to_string();
        let mut args = vec![
            "--api-token-file",
            &token_path,
            "--grpc-listen",
            &grpc_s,
            "--http-listen",
            &http_s,
            "--mesh-listen",
            &mesh_s,
            "--store-addr",
            store_url,
            "--discovery",
            &discovery,
        ];
        args.extend_from_slice(extra);
        let process = Process::spawn("conduit-controller", &args);
        wait_for_http(http, "/healthz", START_TIMEOUT)
            .unwrap_or_else(|e| process.fail(&format!("controller never became ready: {e}")));
        wait_for_tcp(grpc, START_TIMEOUT)
            .unwrap_or_else(|e| process.fail(&format!("controller gRPC never listened: {e}")));
        Self {
            grpc,
            http,
            mesh,
            process,
            api_token: token.secret().to_string(),
            api_token_file,
            _token_dir: token_dir,
        }
    }

    /// Runs the `conduit` CLI against this controller, with its API token.
    pub fn conduit(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(bin("conduit"))
            .args(args)
            .args(["--api-addr", &self.grpc.to_string()])
            .env("CONDUIT_API_TOKEN_FILE", &self.api_token_file)
            .output()
            .expect("run conduit")
    }

    /// `conduit ARGS`, which must succeed, its standard output parsed as
    /// JSON (for `-o json`).
    pub fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let out = self.conduit(args);
        assert!(
            out.status.success(),
            "conduit {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("conduit {args:?} printed no JSON: {e}"))
    }

    /// `Authorization` for tap and top on the controller's APIs.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.api_token)
    }

    /// `http://ip:port` of the destination service, as plaintext proxies
    /// take it.
    pub fn destination_url(&self) -> String {
        format!("http://{}", self.mesh)
    }
}

/// Identity roots and workload tokens of a test mesh, in a temp dir (see
/// `conduit_deploy::local_identity`).
pub struct MeshIdentity {
    pub files: IdentityFiles,
    pub dir: TempDir,
}

impl MeshIdentity {
    /// Roots, and a token for each of `identities`.
    pub fn new(identities: &[IdentityName]) -> Self {
        let dir = TempDir::new("identity");
        let files = IdentityFiles::new(dir.path());
        files
            .generate(identities)
            .expect("generating the identity files");
        Self { files, dir }
    }

    /// Given roots (an issuer of a rotation, a bundle of anchors), and a
    /// token for each of `identities`.
    pub fn with_roots(roots: &conduit_deploy::IdentityRoots, identities: &[IdentityName]) -> Self {
        let dir = TempDir::new("identity");
        let files = IdentityFiles::new(dir.path());
        files.write_roots(roots).expect("writing the roots");
        files.write_tokens(identities).expect("writing the tokens");
        Self { files, dir }
    }

    /// The controller's flags: the identity service with these roots,
    /// issuing certificates valid `lifetime` (e.g. `24h`, `10s`).
    pub fn controller_args(&self, lifetime: &str) -> Vec<String> {
        let f = &self.files;
        let path = |p: std::path::PathBuf| p.display().to_string();
        vec![
            "--identity-trust-anchors".into(),
            path(f.trust_anchors()),
            "--identity-issuer-certificate".into(),
            path(f.issuer_certificate()),
            "--identity-issuer-key".into(),
            path(f.issuer_key()),
            "--identity-token-key".into(),
            path(f.token_key()),
            "--identity-cert-lifetime".into(),
            lifetime.into(),
        ]
    }

    /// A workload's flags: certify as `identity` with `controller`.
    pub fn workload_args(&self, controller: &Controller, identity: &IdentityName) -> Vec<String> {
        vec![
            "--identity-addr".into(),
            format!("https://{}", controller.mesh),
            "--identity-trust-anchors".into(),
            self.files.trust_anchors().display().to_string(),
            "--identity-token-file".into(),
            self.files.token(identity).display().to_string(),
        ]
    }
}

/// What a proxy is and where it sends things.
pub struct ProxySpec<'a> {
    pub namespace: &'a str,
    pub deployment: &'a str,
    pub pod: &'a str,
    /// The local application behind the inbound side.
    pub app: SocketAddr,
    pub telemetry: Option<String>,
    pub destination: Option<String>,
    /// Extra flags, e.g. `--tap-sample-rate 1`.
    pub extra: Vec<String>,
}

/// A running `conduit-proxy` in explicit mode.
pub struct Proxy {
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    pub admin: SocketAddr,
    pub tap: SocketAddr,
    pub process: Process,
}

impl Proxy {
    pub fn start(spec: ProxySpec<'_>) -> Self {
        let (inbound, outbound, admin, tap) = (free_addr(), free_addr(), free_addr(), free_addr());
        let mut args: Vec<String> = [
            "run",
            "--inbound-listen",
            &inbound.to_string(),
            "--outbound-listen",
            &outbound.to_string(),
            "--admin-listen",
            &admin.to_string(),
            "--tap-listen",
            &tap.to_string(),
            "--inbound-app-addr",
            &spec.app.to_string(),
            "--namespace",
            spec.namespace,
            "--deployment",
            spec.deployment,
            "--pod",
            spec.pod,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        if let Some(t) = &spec.telemetry {
            args.extend(["--telemetry-addr".into(), t.clone()]);
        }
        if let Some(d) = &spec.destination {
            args.extend(["--destination-addr".into(), d.clone()]);
        }
        args.extend(spec.extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Process::spawn("conduit-proxy", &refs);
        wait_for_http(admin, "/ready", START_TIMEOUT)
            .unwrap_or_else(|e| process.fail(&format!("proxy never became ready: {e}")));
        Self {
            inbound,
            outbound,
            admin,
            tap,
            process,
        }
    }

    /// This proxy as pod `name` of a Deployment in a local discovery file.
    pub fn discovery_pod(&self, name: &str) -> conduit_api::discovery_file::Pod {
        conduit_api::discovery_file::Pod {
            tap: Some(self.tap),
            admin: Some(self.admin),
            ..discovery::pod(name, self.inbound)
        }
    }
}
