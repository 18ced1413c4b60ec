//! The command line, as clap parses it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use conduit_api::ResourceTarget;
use conduit_api::time_range::TimePoint;

use crate::output::Format;
use crate::values::{self, DeployName};

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
    /// File of the control plane's API token, which tap and top need
    /// [default: the local demo's; on Kubernetes, the kubeconfig's token]
    #[arg(
        long,
        env = "CONDUIT_API_TOKEN_FILE",
        global = true,
        value_name = "PATH"
    )]
    pub(crate) api_token_file: Option<std::path::PathBuf>,
}

/// A window anywhere in the store's retention, instead of one ending now.
#[derive(Args, Debug, Clone)]
pub(crate) struct TimeBounds {
    /// Start of the window: how long ago (e.g. 2h) or an RFC 3339 time
    /// (e.g. 2026-12-07T13:00:00Z); the window runs to --until
    #[arg(long, value_parser = values::time_point, conflicts_with = "time_window")]
    pub(crate) since: Option<TimePoint>,
    /// End of the window, as --since [default: now]; without --since the
    /// window is the --time-window before it
    #[arg(long, value_parser = values::time_point)]
    pub(crate) until: Option<TimePoint>,
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
    Install(InstallArgs),
    /// Print what `kubectl delete -f -` needs to remove the control plane
    Uninstall(UninstallArgs),
    /// Add the Conduit proxy to Kubernetes workloads in a manifest stream
    Inject(InjectArgs),
    /// Remove the Conduit proxy from workloads in a manifest stream
    Uninject(UninjectArgs),
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
    /// Per-route metrics of a Deployment: its service profiles' routes,
    /// then the path templates the proxies learned for the rest
    Routes(RoutesArgs),
    /// The inbound policy of a Deployment and what it allowed and denied
    Authz(DeploymentWindowArgs),
    /// The mTLS certificate of each pod of a Deployment (subject, names,
    /// issuer, validity), as its peers see it
    Identity(IdentityArgs),
    /// What one Deployment's proxies see: their metrics, resolved
    /// destinations or inbound policy (read through the controller)
    Diagnostics(DiagnosticsArgs),
    /// Open the web dashboard
    Dashboard(DashboardArgs),
    /// Run the whole mesh with a demo application on this machine
    Demo(crate::cmd::demo::DemoArgs),
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

/// How `install` and `inject` print manifests.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ManifestFormat {
    /// YAML documents separated by `---`
    Yaml,
    /// One JSON document (a `List` when there are several objects)
    Json,
}

#[derive(Args, Debug)]
pub(crate) struct InstallArgs {
    /// Namespace of the control plane
    #[arg(short, long, default_value = "conduit", value_parser = values::namespace)]
    pub(crate) namespace: String,
    /// High availability: three controller replicas and a pair of telemetry
    /// stores, each on different nodes with a PodDisruptionBudget (inject
    /// workloads with `--ha` too, so their proxies report to both stores)
    #[arg(long)]
    pub(crate) ha: bool,
    /// Image of the sidecar proxy, recorded in the `conduit-config` ConfigMap
    #[arg(long, value_name = "IMAGE", default_value_t = conduit_deploy::images::proxy())]
    pub(crate) proxy_image: String,
    /// Image of the proxy's iptables init container, recorded likewise
    #[arg(long, value_name = "IMAGE", default_value_t = conduit_deploy::images::proxy_init())]
    pub(crate) proxy_init_image: String,
    /// Image of the controller (public API, destination, dashboard)
    #[arg(long, value_name = "IMAGE", default_value_t = conduit_deploy::images::controller())]
    pub(crate) controller_image: String,
    /// Image of the telemetry store
    #[arg(long, value_name = "IMAGE", default_value_t = conduit_deploy::images::telemetry_store())]
    pub(crate) store_image: String,
    /// Size of the telemetry store's volume
    #[arg(long, value_name = "QUANTITY", default_value = "10Gi")]
    pub(crate) store_volume_size: String,
    /// What ports get that no Server selects, unless their workload or
    /// namespace is annotated `config.conduit.io/default-inbound-policy`:
    /// all-unauthenticated, all-authenticated, cluster-unauthenticated,
    /// cluster-authenticated, deny or audit
    #[arg(long, value_name = "POLICY", default_value = "all-unauthenticated")]
    pub(crate) default_inbound_policy: conduit_api::policy::DefaultPolicy,
    /// PEM trust anchor(s) of the mesh identity [default: generated]
    #[arg(long, value_name = "PEM", requires_all = ["identity_issuer_certificate_file", "identity_issuer_key_file"])]
    pub(crate) identity_trust_anchors_file: Option<std::path::PathBuf>,
    /// PEM issuer certificate, signed by a trust anchor
    #[arg(long, value_name = "PEM", requires = "identity_trust_anchors_file")]
    pub(crate) identity_issuer_certificate_file: Option<std::path::PathBuf>,
    /// PEM (PKCS#8) private key of the issuer certificate
    #[arg(long, value_name = "PEM", requires = "identity_trust_anchors_file")]
    pub(crate) identity_issuer_key_file: Option<std::path::PathBuf>,
    /// Where the controller reads stat, routes, edges and the dashboard's
    /// charts: `embedded` (the telemetry store) or
    /// `prometheus:http://HOST:PORT[/PREFIX]` (Prometheus, VictoriaMetrics,
    /// Thanos Query, Mimir's /prometheus); feed it with --remote-write-url
    #[arg(long, value_name = "BACKEND", default_value = "embedded")]
    pub(crate) metrics_backend: conduit_api::metrics_backend::MetricsBackend,
    /// Have the telemetry store forward every series to this Prometheus
    /// remote-write endpoint (http://…/api/v1/write of Prometheus, Mimir,
    /// Thanos Receive, VictoriaMetrics)
    #[arg(long, value_name = "URL", value_parser = remote_write_url)]
    pub(crate) remote_write_url: Option<String>,
    /// Labels the telemetry store adds to every series it forwards
    /// (repeatable, or comma-separated), e.g. `cluster=eu-1`. `$(POD_NAME)`
    /// in a value is the store replica's pod name: `replica=$(POD_NAME)`
    /// tells the two stores of an --ha pair apart, for an engine that
    /// deduplicates by a replica label (Thanos Query, Mimir's HA tracker)
    #[arg(
        long,
        value_name = "NAME=VALUE",
        value_delimiter = ',',
        requires = "remote_write_url",
        value_parser = conduit_api::labels::parse_pair
    )]
    pub(crate) remote_write_external_label: Vec<(String, String)>,
    /// Print, instead of the control plane, the Prometheus scrape job that
    /// reads every meshed proxy's /metrics directly (for an external
    /// --metrics-backend fed by scraping rather than by the store)
    #[arg(long)]
    pub(crate) prometheus_scrape_config: bool,
    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,
    #[arg(short, long, value_enum, default_value_t = ManifestFormat::Yaml)]
    pub(crate) output: ManifestFormat,
}

/// The cluster the manifests are for.
#[derive(Args, Debug)]
pub(crate) struct ClusterArgs {
    /// The cluster's DNS domain
    #[arg(long, value_name = "DOMAIN", default_value = conduit_deploy::CLUSTER_DOMAIN, value_parser = dns_domain)]
    pub(crate) cluster_domain: String,
}

#[derive(Args, Debug)]
pub(crate) struct UninstallArgs {
    /// Namespace of the control plane
    #[arg(short, long, default_value = "conduit", value_parser = values::namespace)]
    pub(crate) namespace: String,
    #[arg(short, long, value_enum, default_value_t = ManifestFormat::Yaml)]
    pub(crate) output: ManifestFormat,
}

#[derive(Args, Debug)]
pub(crate) struct InjectArgs {
    /// A manifest file, a directory of them (*.yaml, *.yml, *.json), or `-` for standard input
    #[arg(default_value = "-")]
    pub(crate) input: String,
    /// Namespace of the control plane the proxies report to
    #[arg(long, default_value = "conduit", value_parser = values::namespace)]
    pub(crate) control_plane_namespace: String,
    /// Inbound ports that bypass the proxy, e.g. `25,8000-8100`
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    pub(crate) skip_inbound_ports: Vec<conduit_api::sidecar::PortRange>,
    /// Outbound ports that bypass the proxy, e.g. `3306`
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    pub(crate) skip_outbound_ports: Vec<conduit_api::sidecar::PortRange>,
    /// Ports the proxy forwards as opaque TCP without protocol detection
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    pub(crate) opaque_ports: Vec<conduit_api::sidecar::PortRange>,
    /// Image of the sidecar proxy
    #[arg(long, value_name = "IMAGE", default_value_t = conduit_deploy::images::proxy())]
    pub(crate) proxy_image: String,
    /// Image of the iptables init container
    #[arg(long, value_name = "IMAGE", default_value_t = conduit_deploy::images::proxy_init())]
    pub(crate) init_image: String,
    /// The proxy's log filter (`RUST_LOG` syntax), e.g. `info,conduit_proxy=debug`
    #[arg(long, value_name = "FILTER")]
    pub(crate) proxy_log_level: Option<String>,
    /// The mesh's trust anchors (the `ca.crt` of the
    /// conduit-identity-trust-anchors Secret): proxies then certify
    /// themselves and speak mTLS; without it they run in plaintext
    #[arg(long, value_name = "PATH")]
    pub(crate) identity_trust_anchors_file: Option<std::path::PathBuf>,
    /// What the proxies admit before the policy controller first answers
    /// them (all-unauthenticated, all-authenticated,
    /// cluster-unauthenticated, cluster-authenticated, deny, audit): the
    /// cluster's default from `conduit install`; a workload's
    /// `config.conduit.io/default-inbound-policy` annotation wins
    #[arg(long, value_name = "POLICY")]
    pub(crate) default_inbound_policy: Option<conduit_api::policy::DefaultPolicy>,
    /// The control plane was installed with `--ha`: proxies report to both
    /// of its telemetry stores
    #[arg(long)]
    pub(crate) ha: bool,
    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,
    #[arg(short, long, value_enum, default_value_t = ManifestFormat::Yaml)]
    pub(crate) output: ManifestFormat,
}

#[derive(Args, Debug)]
pub(crate) struct UninjectArgs {
    /// A manifest file, a directory of them (*.yaml, *.yml, *.json), or `-` for standard input
    #[arg(default_value = "-")]
    pub(crate) input: String,
    #[arg(short, long, value_enum, default_value_t = ManifestFormat::Yaml)]
    pub(crate) output: ManifestFormat,
}

/// The store accepts plain `http://` remote-write URLs only.
pub(crate) fn remote_write_url(s: &str) -> Result<String, String> {
    let host = s.strip_prefix("http://").unwrap_or_default();
    if host.is_empty() || host.starts_with('/') || s.contains(char::is_whitespace) {
        return Err(format!(
            "{s:?} is not an http:// URL like http://prometheus:9090/api/v1/write (the store \
             sends plain HTTP; put a TLS-terminating proxy in front of an https endpoint)"
        ));
    }
    Ok(s.to_string())
}

fn dns_domain(s: &str) -> Result<String, String> {
    conduit_api::deployment::validate_name(s)
        .map(|()| s.to_string())
        .map_err(|_| format!("{s:?} is not a DNS domain like cluster.local"))
}

#[derive(Args, Debug)]
pub(crate) struct StatArgs {
    /// `deploy` for all Deployments, `deploy/NAME` for one
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    /// Only traffic from this Deployment (`deploy/NAME`)
    #[arg(long)]
    pub(crate) from: Option<DeployName>,
    /// Namespace of --from [default: --namespace]
    #[arg(long, value_parser = values::namespace)]
    pub(crate) from_namespace: Option<String>,
    /// Only traffic to this Deployment (`deploy/NAME`)
    #[arg(long)]
    pub(crate) to: Option<DeployName>,
    /// Namespace of --to [default: --namespace]
    #[arg(long, value_parser = values::namespace)]
    pub(crate) to_namespace: Option<String>,
    /// Window the rates and quantiles cover, ending now (or at --until),
    /// e.g. 30s, 1m, 10m
    #[arg(short = 't', long, default_value = "1m", value_parser = values::window)]
    pub(crate) time_window: Duration,
    /// One row per Deployment, or per version of each Deployment (its
    /// pods' `pod_template_hash`) to compare them during a rollout
    #[arg(long, value_enum, default_value_t = StatBy::Deployment, conflicts_with = "from")]
    pub(crate) by: StatBy,
    #[command(flatten)]
    pub(crate) bounds: TimeBounds,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// What a row of `conduit stat` stands for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatBy {
    /// A Deployment
    Deployment,
    /// A version of a Deployment: its pods with one `pod_template_hash`
    /// (a ReplicaSet on Kubernetes)
    Version,
}

#[derive(Args, Debug)]
pub(crate) struct TopArgs {
    /// `deploy/NAME`
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    /// Print one table after two seconds of traffic and exit
    #[arg(long)]
    pub(crate) once: bool,
    /// Sliding window the counts cover
    #[arg(short = 't', long, default_value = "10s", value_parser = values::window)]
    pub(crate) time_window: Duration,
    /// Paths shown at most
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) limit: u32,
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
    pub(crate) to: Option<DeployName>,
    /// Namespace of --to [default: --namespace]
    #[arg(long, value_parser = values::namespace)]
    pub(crate) to_namespace: Option<String>,
    /// Only requests whose path starts with this
    #[arg(long, value_parser = values::path_prefix)]
    pub(crate) path: Option<String>,
    /// Only requests with this HTTP method
    #[arg(long, value_parser = values::method)]
    pub(crate) method: Option<String>,
    /// Only requests to this authority
    #[arg(long)]
    pub(crate) authority: Option<String>,
    /// Events per second at most
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) max_rps: u32,
    /// Stop after this many requests (history search: at most this many, default 100)
    #[arg(long)]
    pub(crate) limit: Option<u64>,
    /// Search past requests from this long ago instead of tapping live, e.g. 10m
    #[arg(long, value_parser = values::duration)]
    pub(crate) since: Option<Duration>,
    /// Tap history query (tantivy syntax), with --since
    #[arg(long, requires = "since")]
    pub(crate) query: Option<String>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug)]
pub(crate) struct EdgesArgs {
    /// `deploy`, or `deploy/NAME` for the edges of one Deployment
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    /// Edges with traffic in this window, ending now (or at --until)
    #[arg(short = 't', long, default_value = "5m", value_parser = values::window)]
    pub(crate) time_window: Duration,
    #[command(flatten)]
    pub(crate) bounds: TimeBounds,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug)]
pub(crate) struct IdentityArgs {
    /// `deploy/NAME`
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug)]
pub(crate) struct DiagnosticsArgs {
    /// What to show
    #[arg(value_enum)]
    pub(crate) kind: DiagnosticsKind,
    /// `deploy/NAME`
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    /// One pod by name [default: every meshed pod, each under its name]
    #[arg(long, value_name = "NAME")]
    pub(crate) pod: Option<String>,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DiagnosticsKind {
    /// The proxy's Prometheus metrics, as its admin port's /metrics serves them
    ProxyMetrics,
    /// Its outbound destination cache: each authority's endpoints, their
    /// identities, protocol hints and breaker state
    Endpoints,
    /// The inbound policy it enforces on each port, and where it came from
    Policy,
}

/// `routes`: a Deployment's routes over a window.
#[derive(Args, Debug)]
pub(crate) struct RoutesArgs {
    #[command(flatten)]
    pub(crate) window: DeploymentWindowArgs,
    /// List only the path templates the proxies learned (`GET
    /// /api/vote/{id}`; `_overflow` counts requests past their template
    /// budget), with their request counts
    #[arg(long)]
    pub(crate) learned: bool,
}

/// One Deployment's figures over a window: `routes` and `authz`.
#[derive(Args, Debug)]
pub(crate) struct DeploymentWindowArgs {
    /// `deploy/NAME`
    pub(crate) target: ResourceTarget,
    #[command(flatten)]
    pub(crate) namespaces: NamespaceArgs,
    /// Window the figures cover, ending now (or at --until)
    #[arg(short = 't', long, default_value = "1m", value_parser = values::window)]
    pub(crate) time_window: Duration,
    #[command(flatten)]
    pub(crate) bounds: TimeBounds,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

#[derive(Args, Debug)]
pub(crate) struct DashboardArgs {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    /// Print the URL without opening a browser
    #[arg(long)]
    pub(crate) no_browser: bool,
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
