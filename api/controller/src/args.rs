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
    /// The telemetry store's gRPC query API. Two, comma-separated, for a
    /// pair of stores fed by the same proxies: a call one cannot answer is
    /// asked of the other.
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_STORE_ADDR",
        default_value = "http://127.0.0.1:9096",
        value_delimiter = ','
    )]
    pub store_addr: Vec<String>,
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
    /// gRPC address proxies use: the destination and identity services
    /// (mTLS once the identity flags are given)
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_MESH_LISTEN",
        default_value = "127.0.0.1:8086"
    )]
    pub mesh_listen: SocketAddr,
    /// The control plane's namespace (the controller's identity is its
    /// ServiceAccount there)
    #[arg(long, env = "CONDUIT_CONTROLLER_NAMESPACE", default_value = conduit_api::identity::CONTROL_PLANE_NAMESPACE)]
    pub namespace: String,
    /// File holding the token that opens live tap, tap search and top
    /// (`Authorization: Bearer <token>`; `conduit demo` writes one). On
    /// Kubernetes without it, callers present their own Kubernetes token,
    /// checked with TokenReview and SubjectAccessReview (verb `tap`).
    #[arg(long, env = "CONDUIT_CONTROLLER_API_TOKEN_FILE", value_name = "PATH")]
    pub api_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Where stat, routes, edges, authz and the dashboard's charts read
/// metrics, and the bounds of an external backend.
#[derive(clap::Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Where metrics are read: `embedded` (the telemetry store) or
    /// `prometheus:http://HOST:PORT[/PREFIX]`, a Prometheus-compatible query
    /// API (Prometheus, VictoriaMetrics, Thanos Query, Mimir's
    /// `/prometheus`) that the store feeds with `--remote-write-url`. Top,
    /// tap and pod counts stay with the store and the proxies.
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_METRICS_BACKEND",
        default_value = "embedded",
        value_name = "BACKEND"
    )]
    pub metrics_backend: conduit_api::metrics_backend::MetricsBackend,
    /// External metrics backend: longest wait for one answer (connecting,
    /// sending the query, reading the whole answer)
    #[arg(long, env = "CONDUIT_CONTROLLER_METRICS_BACKEND_TIMEOUT", default_value = "10s", value_parser = conduit_api::duration::parse)]
    pub metrics_backend_timeout: std::time::Duration,
    /// External metrics backend: largest answer, in bytes; a larger one is
    /// an error, not a truncated table
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_METRICS_BACKEND_MAX_BODY",
        default_value_t = 16 * 1024 * 1024,
        value_name = "BYTES"
    )]
    pub metrics_backend_max_body: usize,
}

impl MetricsArgs {
    pub fn limits(&self) -> crate::metrics_backend::Limits {
        crate::metrics_backend::Limits {
            timeout: self.metrics_backend_timeout,
            max_body: self.metrics_backend_max_body,
        }
    }
}

/// The timeouts and caps of the controller's listeners: every port answers
/// the cluster, so none may be held open, flooded or made to buffer
/// without bound.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// HTTP (dashboard, JSON API): time to send a request's headers, and
    /// for a kept-alive connection its next request
    #[arg(long, env = "CONDUIT_CONTROLLER_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = conduit_api::duration::parse)]
    pub http_header_timeout: std::time::Duration,
    /// HTTP: a connection on which no byte moves is closed (live views
    /// send a keep-alive every 15 s)
    #[arg(long, env = "CONDUIT_CONTROLLER_HTTP_IDLE_TIMEOUT", default_value = "5m", value_parser = conduit_api::duration::parse)]
    pub http_idle_timeout: std::time::Duration,
    /// HTTP: open connections (more wait to be accepted)
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_HTTP_MAX_CONNECTIONS",
        default_value_t = 512
    )]
    pub http_max_connections: usize,
    /// HTTP/2 streams on one connection to the HTTP server
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_HTTP_MAX_STREAMS",
        default_value_t = 100
    )]
    pub http_max_streams: u32,
    /// gRPC (the public API, and the mesh port every proxy keeps a
    /// connection to): open connections per listener (more wait to be
    /// accepted)
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_GRPC_MAX_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub grpc_max_connections: usize,
    /// gRPC: concurrent streams on one connection (more: REFUSED_STREAM).
    /// A proxy holds two on its one connection for every outbound
    /// authority it has resolved (endpoints and profile), up to its
    /// `--outbound-max-authorities` (1 000), plus its policy watches
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_GRPC_MAX_STREAMS",
        default_value_t = 2_100
    )]
    pub grpc_max_streams: u32,
    /// gRPC: ping interval of an idle connection
    #[arg(long, env = "CONDUIT_CONTROLLER_GRPC_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = conduit_api::duration::parse)]
    pub grpc_keepalive_interval: std::time::Duration,
    /// gRPC: time for a ping's answer before the connection is closed
    #[arg(long, env = "CONDUIT_CONTROLLER_GRPC_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = conduit_api::duration::parse)]
    pub grpc_keepalive_timeout: std::time::Duration,
    /// gRPC: streams a connection makes the server reset before it is
    /// closed (GOAWAY)
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_GRPC_MAX_RESET_STREAMS",
        default_value_t = 1024
    )]
    pub grpc_max_reset_streams: usize,
    /// Live tap and top streams served at once (each fans in every pod of
    /// a Deployment); more get RESOURCE_EXHAUSTED
    #[arg(long, env = "CONDUIT_CONTROLLER_MAX_LIVE_TAPS", default_value_t = 64)]
    pub max_live_taps: usize,
    /// Certificate requests the identity service works on at once (each
    /// may cost a TokenReview); more get RESOURCE_EXHAUSTED and proxies
    /// retry with backoff
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_MAX_CONCURRENT_CERTIFY",
        default_value_t = 32
    )]
    pub max_concurrent_certify: usize,
}

impl LimitArgs {
    pub fn http(&self) -> conduit_listen::http::HttpLimits {
        conduit_listen::http::HttpLimits {
            header_timeout: self.http_header_timeout,
            idle_timeout: self.http_idle_timeout,
            max_connections: self.http_max_connections,
            max_streams: self.http_max_streams,
        }
    }

    pub fn grpc(&self) -> conduit_listen::grpc::GrpcLimits {
        conduit_listen::grpc::GrpcLimits {
            max_connections: self.grpc_max_connections,
            max_streams: self.grpc_max_streams,
            keepalive_interval: self.grpc_keepalive_interval,
            keepalive_timeout: self.grpc_keepalive_timeout,
            max_reset_streams: self.grpc_max_reset_streams,
        }
    }
}

/// Inbound policy on Kubernetes; the static discovery file says its own.
#[derive(clap::Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Kubernetes: what ports get that no Server selects and whose workload
    /// and namespace have no `config.conduit.io/default-inbound-policy`
    /// annotation: all-unauthenticated, all-authenticated,
    /// cluster-unauthenticated, cluster-authenticated, deny or audit
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_DEFAULT_INBOUND_POLICY",
        default_value = "all-unauthenticated"
    )]
    pub default_inbound_policy: conduit_api::policy::DefaultPolicy,
    /// Kubernetes: the cluster's networks, comma-separated CIDRs, for the
    /// `cluster-*` default policies
    #[arg(long, env = "CONDUIT_CONTROLLER_CLUSTER_NETWORKS", value_delimiter = ',', default_values = conduit_api::policy::DEFAULT_CLUSTER_NETWORKS, value_parser = network)]
    pub cluster_networks: Vec<String>,
}

impl PolicyArgs {
    pub fn defaults(&self) -> crate::policy::kubernetes::Defaults {
        crate::policy::kubernetes::Defaults {
            mesh: self.default_inbound_policy,
            cluster_networks: self.cluster_networks.clone(),
        }
    }
}

fn network(s: &str) -> Result<String, String> {
    s.parse::<conduit_api::policy::Cidr>()?;
    Ok(s.to_string())
}

/// The identity service: without these flags the mesh runs in plaintext.
#[derive(clap::Args, Debug, Clone)]
pub struct IdentityArgs {
    /// PEM trust anchors every proxy trusts (one or more certificates)
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_IDENTITY_TRUST_ANCHORS",
        value_name = "PATH"
    )]
    pub identity_trust_anchors: Option<PathBuf>,
    /// PEM certificate of the issuer, signed by a trust anchor
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_IDENTITY_ISSUER_CERTIFICATE",
        value_name = "PATH",
        requires = "identity_trust_anchors"
    )]
    pub identity_issuer_certificate: Option<PathBuf>,
    /// PKCS#8 PEM key of the issuer
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_IDENTITY_ISSUER_KEY",
        value_name = "PATH",
        requires = "identity_issuer_certificate"
    )]
    pub identity_issuer_key: Option<PathBuf>,
    /// Local mode: the key (hex) the workloads' tokens are signed with; on
    /// Kubernetes tokens are checked with a TokenReview instead
    #[arg(
        long,
        env = "CONDUIT_CONTROLLER_IDENTITY_TOKEN_KEY",
        value_name = "PATH"
    )]
    pub identity_token_key: Option<PathBuf>,
    /// Lifetime of the certificates the identity service issues
    #[arg(long, env = "CONDUIT_CONTROLLER_IDENTITY_CERT_LIFETIME", default_value = "24h", value_parser = conduit_api::duration::parse)]
    pub identity_cert_lifetime: std::time::Duration,
    /// The mesh's trust domain: identities end in `.serviceaccount.identity.conduit.<TRUST_DOMAIN>`
    #[arg(long, env = "CONDUIT_CONTROLLER_TRUST_DOMAIN", default_value = conduit_api::identity::DEFAULT_TRUST_DOMAIN, value_parser = trust_domain)]
    pub trust_domain: String,
}

fn trust_domain(s: &str) -> Result<String, String> {
    conduit_api::identity::validate_trust_domain(s).map(|()| s.to_string())
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
