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

mod process;
mod upstream;

pub use process::{
    HttpAnswer, Process, TempDir, bin, free_addr, http_get, query_escape, wait_for_http,
    wait_for_tcp,
};
pub use upstream::{Upstream, UpstreamSpec, drive_load};

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// How long a process may take to start answering on a loaded machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `conduit-telemetry-store` with its data in a temp dir.
pub struct Store {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub data: TempDir,
    pub process: Process,
}

impl Store {
    pub fn start() -> Self {
        let (grpc, http, data) = (free_addr(), free_addr(), TempDir::new("store"));
        let process = Process::spawn(
            "conduit-telemetry-store",
            &[
                "--grpc-listen",
                &grpc.to_string(),
                "--http-listen",
                &http.to_string(),
                "--data-dir",
                &data.path().display().to_string(),
            ],
        );
        wait_for_http(http, "/-/ready", START_TIMEOUT)
            .unwrap_or_else(|e| process.fail(&format!("telemetry store never became ready: {e}")));
        Self {
            grpc,
            http,
            data,
            process,
        }
    }

    /// `http://ip:port` of the gRPC API, as the controller and proxies take it.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

/// A running `conduit-controller` with the static discovery backend.
pub struct Controller {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub process: Process,
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
        let (grpc, http) = (free_addr(), free_addr());
        let (grpc_s, http_s) = (grpc.to_string(), http.to_string());
        let discovery = format!("static:{}", discovery.display());
        let mut args = vec![
            "--grpc-listen",
            &grpc_s,
            "--http-listen",
            &http_s,
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
            process,
        }
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
}
