//! The command line, as clap parses it.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use conduit_api::ResourceTarget;

use crate::output::Format;

/// Conduit: an ultralight service mesh whose observability needs nothing else.
#[derive(Parser, Debug)]
#[command(name = "conduit", version = conduit_api::VERSION, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the controller's public API is.
#[derive(Args, Debug, Clone)]
pub(crate) struct ApiArgs {
    /// Controller gRPC address [default: the local demo's 127.0.0.1:50751]
    #[arg(long, env = "CONDUIT_API_ADDR", global = true)]
    pub(crate) api_addr: Option<SocketAddr>,
}

/// Which namespaces a command looks at.
#[derive(Args, Debug, Clone)]
pub(crate) struct NamespaceArgs {
    /// Namespace of the resources
    #[arg(short, long, default_value = "default")]
    pub(crate) namespace: String,
    /// Every namespace (overrides --namespace)
    #[arg(short = 'A', long)]
    pub(crate) all_namespaces: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Print the control plane's Kubernetes manifests (for `kubectl apply -f -`)
    Install,
    /// Print what `kubectl delete` needs to remove the control plane
    Uninstall,
    /// Add the Conduit proxy to Kubernetes workloads in a manifest stream
    Inject(InjectArgs),
    /// Remove the Conduit proxy from workloads in a manifest stream
    Uninject(InjectArgs),
    /// Check that the control plane and the proxies are healthy
    Check(CommonArgs),
    /// Golden metrics per Deployment: success rate, RPS, latency
    Stat(StatArgs),
    /// Live top paths of a Deployment
    Top(TopArgs),
    /// Live requests of a Deployment, or search past ones
    Tap(TapArgs),
    /// Connections between Deployments and whether mTLS secures them
    Edges(EdgesArgs),
    /// Per-route metrics of a Deployment, from its service profiles
    Routes(RoutesArgs),
    /// Open the web dashboard
    Dashboard(CommonArgs),
    /// Run the whole mesh with a demo application on this machine
    Demo,
    /// Print the client's and the control plane's versions
    Version(VersionArgs),
    /// Print a shell completion script
    Completion(CompletionArgs),
}

#[derive(Args, Debug)]
pub(crate) struct CommonArgs {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
}

#[derive(Args, Debug)]
pub(crate) struct InjectArgs {
    /// A file, a directory of manifests, or `-` for standard input
    #[arg(default_value = "-")]
    pub(crate) input: String,
}

#[derive(Args, Debug)]
pub(crate) struct StatArgs {
    /// `deploy` for all Deployments, `deploy/NAME` for one
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    /// Only traffic from this Deployment (`deploy/NAME`)
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Only traffic to this Deployment (`deploy/NAME`)
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Window the rates and quantiles cover, e.g. 30s, 1m, 10m
    #[arg(short = 't', long, default_value = "1m")]
    pub(crate) time_window: String,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug)]
pub(crate) struct TopArgs {
    /// `deploy/NAME`
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    /// Print one table and exit instead of refreshing every second
    #[arg(long)]
    pub(crate) once: bool,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug)]
pub(crate) struct TapArgs {
    /// `deploy/NAME`
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    /// Only requests to this Deployment (`deploy/NAME`)
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Only requests whose path starts with this
    #[arg(long)]
    pub(crate) path: Option<String>,
    /// Only requests with this HTTP method
    #[arg(long)]
    pub(crate) method: Option<String>,
    /// Only requests to this authority
    #[arg(long)]
    pub(crate) authority: Option<String>,
    /// Events per second at most
    #[arg(long, default_value_t = 100)]
    pub(crate) max_rps: u32,
    /// Search past requests from this long ago instead of tapping live
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Tap history query (tantivy syntax), with --since
    #[arg(long)]
    pub(crate) query: Option<String>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug)]
pub(crate) struct EdgesArgs {
    /// `deploy`
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug)]
pub(crate) struct RoutesArgs {
    /// `deploy/NAME`
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug)]
pub(crate) struct VersionArgs {
    /// Print the client version only, without contacting the control plane
    #[arg(long)]
    pub(crate) client: bool,
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
}

#[derive(Args, Debug)]
pub(crate) struct CompletionArgs {
    pub(crate) shell: clap_complete::Shell,
}
