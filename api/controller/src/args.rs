//! The controller's command line. Every flag can also be set through the
//! environment as `CONDUIT_CONTROLLER_<FLAG>` (e.g.
//! `CONDUIT_CONTROLLER_STORE_ADDR`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "conduit-controller",
    version = conduit_api::VERSION,
    about = "Conduit control plane: public API (gRPC + JSON/SSE), destination service, dashboard"
)]
pub struct Args {
    /// gRPC address of the public API and the destination service
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_GRPC_LISTEN",
        default_value = "127.0.0.1:50751"
    )]
    pub grpc_listen: SocketAddr,
    /// HTTP address of the dashboard and the JSON/SSE API
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_HTTP_LISTEN",
        default_value = "127.0.0.1:50750"
    )]
    pub http_listen: SocketAddr,
    /// The telemetry store's gRPC query API
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_STORE_ADDR",
        default_value = "http://127.0.0.1:9096"
    )]
    pub store_addr: String,
    /// Where endpoints come from: `static:PATH` (a YAML file, watched) or `kubernetes`
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_DISCOVERY",
        default_value = "static:conduit-discovery.yaml"
    )]
    pub discovery: DiscoverySource,
    /// Directory of the dashboard bundle [default: `dist` next to the binary, else the workspace's ui/dist]
    #[arg(long, env = "CONDUIT_CONTROLLER_UI_DIR")]
    pub ui_dir: Option<PathBuf>,
    /// What Version reports: `local` (the demo) or `kubernetes` [default: from --discovery]
    #[arg(long, env = "CONDUIT_CONTROLLER_MODE")]
    pub mode: Option<Mode>,
    /// DNS suffix of service names
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,
}

impl Args {
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or(match self.discovery {
            DiscoverySource::Static(_) => Mode::Local,
            DiscoverySource::Kubernetes => Mode::Kubernetes,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoverySource {
    Static(PathBuf),
    Kubernetes,
}

impl FromStr for DiscoverySource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            _ if s == "kubernetes" => Ok(Self::Kubernetes),
            Some(("static", path)) if !path.is_empty() => Ok(Self::Static(path.into())),
            _ => Err(format!(
                "{s:?} is not a discovery source: use `static:PATH` or `kubernetes`"
            )),
        }
    }
}

#[derive(clap::ValueEnum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Local,
    Kubernetes,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Kubernetes => "kubernetes",
        }
    }
}
