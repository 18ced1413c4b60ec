//! The proxy's configuration: flags, each also settable from the
//! environment as `CONDUIT_PROXY_<FLAG_IN_UPPER_SNAKE>`.
//!
//! A sidecar is configured by whoever injects it (`conduit inject`,
//! `conduit demo`), never by a hand-edited file, so everything a proxy needs
//! to know is here and every value is checked before a socket is opened.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use conduit_api::DeploymentRef;
use conduit_api::sidecar::PortRange;

/// How connections reach the proxy.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Applications address the proxy: inbound forwards everything to
    /// `--inbound-app-addr`; outbound routes HTTP by its authority and TCP by
    /// `--outbound-tcp-route`.
    Explicit,
    /// iptables redirects connections to the proxy; the original
    /// destination (`SO_ORIGINAL_DST`) says where they were going.
    Transparent,
}

/// `conduit-proxy run`: every setting of a running proxy.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// How connections reach the proxy.
    #[arg(long, env = "CONDUIT_PROXY_MODE", value_enum, default_value_t = Mode::Explicit)]
    pub mode: Mode,

    /// Where peers connect to reach the local application.
    #[arg(
        long,
        env = "CONDUIT_PROXY_INBOUND_LISTEN",
        default_value = "0.0.0.0:4143"
    )]
    pub inbound_listen: SocketAddr,

    /// Where the local application sends its outbound traffic.
    #[arg(
        long,
        env = "CONDUIT_PROXY_OUTBOUND_LISTEN",
        default_value = "127.0.0.1:4140"
    )]
    pub outbound_listen: SocketAddr,

    /// Admin server: /metrics (Prometheus text), /ready and /live.
    #[arg(
        long,
        env = "CONDUIT_PROXY_ADMIN_LISTEN",
        default_value = "0.0.0.0:4191"
    )]
    pub admin_listen: SocketAddr,

    /// Tap server (gRPC `conduit.tap.v1.Tap`).
    #[arg(long, env = "CONDUIT_PROXY_TAP_LISTEN", default_value = "0.0.0.0:4190")]
    pub tap_listen: SocketAddr,

    /// Explicit mode: the local application, where inbound traffic goes.
    #[arg(
        long,
        env = "CONDUIT_PROXY_INBOUND_APP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub inbound_app_addr: SocketAddr,

    /// Explicit mode: listen on LISTEN_ADDR and forward its connections as
    /// opaque TCP to AUTHORITY (resolved like HTTP authorities).
    /// Repeatable, or comma-separated.
    #[arg(
        long = "outbound-tcp-route",
        env = "CONDUIT_PROXY_OUTBOUND_TCP_ROUTE",
        value_name = "LISTEN_ADDR=AUTHORITY",
        value_delimiter = ','
    )]
    pub outbound_tcp_routes: Vec<TcpRoute>,

    /// A static endpoint of an outbound authority, used before (or instead
    /// of) the destination service: `AUTHORITY=ADDR[;h2][;opaque]
    /// [;deployment=NS/NAME][;identity=NAME]`. `h2` marks a meshed endpoint
    /// (a peer proxy's inbound), which gets HTTP/1.1 over multiplexed
    /// HTTP/2. Repeat an authority to balance over several endpoints.
    #[arg(
        long = "outbound-endpoint",
        env = "CONDUIT_PROXY_OUTBOUND_ENDPOINT",
        value_name = "AUTHORITY=ADDR[;OPTIONS]",
        value_delimiter = ','
    )]
    pub outbound_endpoints: Vec<EndpointSpec>,

    /// Destination ports whose protocol is not detected but forwarded as
    /// opaque TCP at once (server-speaks-first protocols: MySQL, SMTP...).
    /// Ports and ranges, comma-separated: `25,3306,5000-5010`.
    #[arg(
        long,
        env = "CONDUIT_PROXY_OPAQUE_PORTS",
        value_name = "PORTS",
        value_delimiter = ','
    )]
    pub opaque_ports: Vec<PortRange>,

    /// The namespace of the proxy's workload (a label on every series).
    #[arg(long, env = "CONDUIT_PROXY_NAMESPACE", default_value = "default")]
    pub namespace: String,

    /// The Deployment of the proxy's workload (a label on every series).
    #[arg(long, env = "CONDUIT_PROXY_DEPLOYMENT", default_value = "")]
    pub deployment: String,

    /// The pod the proxy runs in (a label on every series).
    #[arg(long, env = "CONDUIT_PROXY_POD", default_value = "")]
    pub pod: String,

    /// The version of the proxy's workload, the `pod_template_hash` label
    /// on every series, so `conduit stat --by version` compares versions
    /// during a rollout. `conduit inject` sets it to the pod's
    /// `pod-template-hash` label (its ReplicaSet); a Kubernetes label
    /// value, at most 63 characters. Empty: no version.
    #[arg(
        long,
        env = "CONDUIT_PROXY_WORKLOAD_VERSION",
        default_value = "",
        value_parser = parse_version
    )]
    pub workload_version: String,

    /// The service account of the workload: its identity name once mTLS is
    /// on.
    #[arg(long, env = "CONDUIT_PROXY_SERVICE_ACCOUNT", default_value = "")]
    pub service_account: String,

    /// The controller's identity service, `https://HOST:PORT`. Set: the
    /// proxy gets a certificate for its ServiceAccount's identity and
    /// speaks mTLS to meshed peers. Unset: identity is off (plaintext).
    #[arg(long, env = "CONDUIT_PROXY_IDENTITY_ADDR", value_name = "URL")]
    pub identity_addr: Option<GrpcAddr>,

    /// PEM trust anchors: every peer's and the control plane's certificate
    /// must chain to one of them.
    #[arg(
        long,
        env = "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS",
        value_name = "PATH",
        conflicts_with = "identity_trust_anchors_pem"
    )]
    pub identity_trust_anchors: Option<std::path::PathBuf>,

    /// The trust anchors as PEM text (how `conduit inject` passes them: a
    /// pod cannot mount the control plane's Secret from another namespace).
    #[arg(
        long,
        env = "CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS_PEM",
        value_name = "PEM"
    )]
    pub identity_trust_anchors_pem: Option<String>,

    /// The token that proves the ServiceAccount to the identity service (a
    /// projected ServiceAccount token; in local mode the demo's token
    /// file). Read afresh at every renewal.
    #[arg(long, env = "CONDUIT_PROXY_IDENTITY_TOKEN_FILE", value_name = "PATH")]
    pub identity_token_file: Option<std::path::PathBuf>,

    /// The mesh's trust domain.
    #[arg(long, env = "CONDUIT_PROXY_TRUST_DOMAIN", default_value = conduit_api::identity::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,

    /// The control plane's namespace: the controller and the store must
    /// prove their ServiceAccounts' identities there.
    #[arg(long, env = "CONDUIT_PROXY_CONTROL_PLANE_NAMESPACE", default_value = conduit_api::identity::CONTROL_PLANE_NAMESPACE)]
    pub control_plane_namespace: String,

    /// What inbound connections and requests get before the policy
    /// service has answered, or without one: all-unauthenticated,
    /// all-authenticated, cluster-unauthenticated, cluster-authenticated,
    /// deny or audit.
    #[arg(
        long,
        env = "CONDUIT_PROXY_DEFAULT_INBOUND_POLICY",
        default_value = "all-unauthenticated"
    )]
    pub default_inbound_policy: conduit_api::policy::DefaultPolicy,

    /// How long a new inbound connection waits for the policy service's
    /// first answer about its port before the default policy applies.
    #[arg(long, env = "CONDUIT_PROXY_INBOUND_POLICY_TIMEOUT", default_value = "1s", value_parser = conduit_api::duration::parse)]
    pub inbound_policy_timeout: std::time::Duration,

    /// The cluster's networks, comma-separated CIDRs, for the `cluster-*`
    /// default policies.
    #[arg(long, env = "CONDUIT_PROXY_CLUSTER_NETWORKS", value_delimiter = ',', default_values = conduit_api::policy::DEFAULT_CLUSTER_NETWORKS, value_parser = parse_network)]
    pub cluster_networks: Vec<String>,

    /// The telemetry store's gRPC address, e.g. `http://127.0.0.1:9096`
    /// (`https://` for mTLS). Give two (comma-separated or the flag twice)
    /// for a pair of stores: each gets every report, with a buffer of its own.
    /// Unset: nothing is pushed (metrics stay on /metrics).
    #[arg(
        long,
        env = "CONDUIT_PROXY_TELEMETRY_ADDR",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub telemetry_addr: Vec<GrpcAddr>,

    /// How often a report is pushed to the telemetry store.
    #[arg(long, env = "CONDUIT_PROXY_TELEMETRY_INTERVAL", default_value = "1s", value_parser = conduit_api::duration::parse)]
    pub telemetry_interval: Duration,

    /// Reports kept per store until it acknowledges them (while it is slow,
    /// down or restarting); the oldest is dropped (and counted) when full.
    #[arg(long, env = "CONDUIT_PROXY_TELEMETRY_BUFFER", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub telemetry_buffer: u32,

    /// Fraction of requests whose tap event goes into the telemetry stream
    /// (the store's searchable tap history), 0 to 1.
    #[arg(long, env = "CONDUIT_PROXY_TAP_SAMPLE_RATE", default_value_t = 0.1, value_parser = parse_fraction)]
    pub tap_sample_rate: f64,

    /// At most this many sampled tap events per second go into the
    /// telemetry stream.
    #[arg(long, env = "CONDUIT_PROXY_TAP_SAMPLE_MAX_RPS", default_value_t = 50)]
    pub tap_sample_max_rps: u32,

    /// Flight recorder: failed (5xx, gRPC error, reset, timeout, denied) and
    /// slow requests kept in the tap history whatever the sampling rate,
    /// at most this many a second; the rest is counted in
    /// `tap_recorder_overflow_total`. 0 turns the recorder off.
    #[arg(long, env = "CONDUIT_PROXY_RECORDER_MAX_RPS", default_value_t = 20)]
    pub recorder_max_rps: u32,

    /// Flight recorder: a response slower than this (time to headers) is
    /// kept. Unset: the p99 this proxy measured over the last 10 s for the
    /// request's direction (inbound: its Deployment's own latency).
    #[arg(long, env = "CONDUIT_PROXY_RECORDER_SLOW_THRESHOLD", value_parser = conduit_api::duration::parse)]
    pub recorder_slow_threshold: Option<Duration>,

    /// Events per second a live tap subscriber gets when it asks for none
    /// (`max_rps = 0`); also the most it may ask for.
    #[arg(long, env = "CONDUIT_PROXY_TAP_MAX_RPS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub tap_max_rps: u32,

    /// The controller's destination service, e.g. `http://127.0.0.1:8086`
    /// (`https://` for mTLS).
    /// Unset: outbound authorities resolve through --outbound-endpoint, DNS
    /// or the original destination only.
    #[arg(long, env = "CONDUIT_PROXY_DESTINATION_ADDR", value_name = "URL")]
    pub destination_addr: Option<GrpcAddr>,

    /// An outbound authority unused this long is forgotten (its destination
    /// subscriptions closed).
    #[arg(long, env = "CONDUIT_PROXY_DESTINATION_IDLE_TIMEOUT", default_value = "60s", value_parser = conduit_api::duration::parse)]
    pub destination_idle_timeout: Duration,

    /// Outbound authorities kept resolved (or being resolved) at most; past
    /// this the least recently used one is forgotten, and a new authority
    /// is refused (503) while all of them are still being resolved.
    #[arg(long, env = "CONDUIT_PROXY_OUTBOUND_MAX_AUTHORITIES", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub outbound_max_authorities: u32,

    /// How long the first request to a new authority waits for the
    /// destination service before falling back to DNS.
    #[arg(long, env = "CONDUIT_PROXY_DESTINATION_RESOLVE_TIMEOUT", default_value = "3s", value_parser = conduit_api::duration::parse)]
    pub destination_resolve_timeout: Duration,

    /// Largest request head (request line and headers) accepted; larger
    /// gets 431.
    #[arg(long, env = "CONDUIT_PROXY_MAX_HEADER_BYTES", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(8_192..=16_777_216))]
    pub max_header_bytes: u32,

    /// A client must send a complete request head within this time (against
    /// slowloris); otherwise it gets 408 and the connection is closed.
    #[arg(long, env = "CONDUIT_PROXY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = conduit_api::duration::parse)]
    pub header_read_timeout: Duration,

    /// A connection that has not shown its protocol after this long is
    /// forwarded as opaque TCP.
    #[arg(long, env = "CONDUIT_PROXY_DETECT_TIMEOUT", default_value = "1s", value_parser = conduit_api::duration::parse)]
    pub detect_timeout: Duration,

    /// Time allowed to open a connection to an endpoint.
    #[arg(long, env = "CONDUIT_PROXY_CONNECT_TIMEOUT", default_value = "1s", value_parser = conduit_api::duration::parse)]
    pub connect_timeout: Duration,

    /// Outbound requests wait at most this long for response headers when
    /// their route sets no timeout; `0s` disables.
    #[arg(long, env = "CONDUIT_PROXY_OUTBOUND_REQUEST_TIMEOUT", default_value = "10s", value_parser = conduit_api::duration::parse)]
    pub outbound_request_timeout: Duration,

    /// Consecutive failures that take an endpoint out of balancing.
    #[arg(long, env = "CONDUIT_PROXY_FAILURE_ACCRUAL_CONSECUTIVE", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    pub failure_accrual_consecutive: u32,

    /// How long an endpoint stays out after tripping, doubled on each failed
    /// probe up to ten times this.
    #[arg(long, env = "CONDUIT_PROXY_FAILURE_ACCRUAL_BACKOFF", default_value = "1s", value_parser = conduit_api::duration::parse)]
    pub failure_accrual_backoff: Duration,

    /// Request bodies up to this size are buffered so the request can be
    /// retried; larger requests are never retried.
    #[arg(
        long,
        env = "CONDUIT_PROXY_RETRY_MAX_BODY_BYTES",
        default_value_t = 65_536
    )]
    pub retry_max_body_bytes: u32,

    /// Inbound: add a `forwarded: for=...` header (RFC 7239) naming the
    /// client. By default `forwarded`/`x-forwarded-*` pass unchanged.
    #[arg(long, env = "CONDUIT_PROXY_INBOUND_ADD_FORWARDED")]
    pub inbound_add_forwarded: bool,

    /// Runtime worker threads (the cores the proxy may use).
    #[arg(long, env = "CONDUIT_PROXY_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,

    /// Label sets each metric family keeps at most (`request_total`'s,
    /// `route_request_total`'s, `tcp_open_total`'s); further ones are
    /// counted in the family's `_overflow` set, so peers cannot grow the
    /// proxy's memory by choosing label values.
    #[arg(long, env = "CONDUIT_PROXY_METRICS_MAX_LABEL_SETS", default_value_t = crate::metrics::DEFAULT_MAX_LABEL_SETS, value_parser = clap::value_parser!(u32).range(1..))]
    pub metrics_max_label_sets: u32,

    /// Path templates learned per outbound authority at most (requests no
    /// profile route matches get per-route metrics under their template,
    /// `GET /api/vote/{id}`); requests with a new template past that count
    /// under the authority's `_overflow` route and in
    /// `learned_routes_overflow_total`. 0 turns learning off.
    #[arg(long, env = "CONDUIT_PROXY_LEARNED_ROUTES_MAX", default_value_t = crate::learned_routes::DEFAULT_MAX_TEMPLATES)]
    pub learned_routes_max: u32,

    /// A label set unused for this long is forgotten (its series leave
    /// /metrics and the telemetry reports).
    #[arg(long, env = "CONDUIT_PROXY_METRICS_RETAIN_IDLE", default_value = "10m", value_parser = conduit_api::duration::parse)]
    pub metrics_retain_idle: Duration,

    /// Inbound: a name the Deployment is also known by (a Service's),
    /// `HOST` on any port or `HOST:PORT`. Repeatable, or comma-separated.
    /// The Deployment's own names (`NAME`, `NAME.NAMESPACE`,
    /// `NAME.NAMESPACE.svc[.CLUSTER_DOMAIN]`), the pod's, the dialed address
    /// and `--outbound-endpoint`s naming this Deployment are known anyway;
    /// any other authority is labelled `_overflow`.
    #[arg(
        long = "inbound-authority",
        env = "CONDUIT_PROXY_INBOUND_AUTHORITY",
        value_name = "HOST[:PORT]",
        value_delimiter = ',',
        value_parser = parse_host_or_authority
    )]
    pub inbound_authorities: Vec<String>,

    /// The cluster's DNS domain, which completes the Deployment's names.
    #[arg(long, env = "CONDUIT_PROXY_CLUSTER_DOMAIN", default_value = conduit_api::discovery_file::DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// Admin server: a client must send a complete request head within this
    /// time (against slowloris), or the connection is closed.
    #[arg(long, env = "CONDUIT_PROXY_ADMIN_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = conduit_api::duration::parse)]
    pub admin_header_read_timeout: Duration,

    /// Admin server: a connection on which no byte moved for this long is
    /// closed (a keep-alive client gone quiet, a client that stopped
    /// reading).
    #[arg(long, env = "CONDUIT_PROXY_ADMIN_IDLE_TIMEOUT", default_value = "60s", value_parser = conduit_api::duration::parse)]
    pub admin_idle_timeout: Duration,

    /// Admin server: connections served at once; more are closed on
    /// accept.
    #[arg(long, env = "CONDUIT_PROXY_ADMIN_MAX_CONNECTIONS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub admin_max_connections: u32,

    /// Live tap subscriptions at once; more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "CONDUIT_PROXY_TAP_MAX_SUBSCRIBERS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub tap_max_subscribers: u32,

    /// Tap server: HTTP/2 streams per connection at once; more are refused
    /// (REFUSED_STREAM).
    #[arg(long, env = "CONDUIT_PROXY_TAP_MAX_CONCURRENT_STREAMS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub tap_max_concurrent_streams: u32,

    /// Tap server: largest request message accepted (a tap filter is a few
    /// hundred bytes).
    #[arg(long, env = "CONDUIT_PROXY_TAP_MAX_REQUEST_BYTES", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1_024..))]
    pub tap_max_request_bytes: u32,

    /// HTTP/2 servers (inbound, outbound): streams per connection at once;
    /// more are refused (REFUSED_STREAM).
    #[arg(long, env = "CONDUIT_PROXY_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_concurrent_streams: u32,

    /// HTTP/2 servers (inbound, outbound, tap): streams a client may reset
    /// before they were served (the "rapid reset" attack) before the
    /// connection is closed with ENHANCE_YOUR_CALM.
    #[arg(long, env = "CONDUIT_PROXY_HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_pending_accept_reset_streams: u32,

    /// HTTP/2 servers (inbound, outbound, tap): streams the proxy may reset
    /// for a client's protocol errors (malformed or refused streams, the
    /// "made you reset" attack) before the connection is closed with
    /// ENHANCE_YOUR_CALM.
    #[arg(long, env = "CONDUIT_PROXY_HTTP2_MAX_LOCAL_ERROR_RESET_STREAMS", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_local_error_reset_streams: u32,

    /// HTTP/2 servers (inbound, outbound, tap): how often a PING checks
    /// that a client is still there; `0s` disables.
    #[arg(long, env = "CONDUIT_PROXY_HTTP2_KEEPALIVE_INTERVAL", default_value = "10s", value_parser = conduit_api::duration::parse)]
    pub http2_keepalive_interval: Duration,

    /// HTTP/2 servers: a client that does not answer a keep-alive PING
    /// within this is disconnected.
    #[arg(long, env = "CONDUIT_PROXY_HTTP2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = conduit_api::duration::parse)]
    pub http2_keepalive_timeout: Duration,

    /// Inbound: a meshed client must complete its mTLS handshake within
    /// this, or the connection is closed.
    #[arg(long, env = "CONDUIT_PROXY_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = conduit_api::duration::parse)]
    pub tls_handshake_timeout: Duration,
}

impl Config {
    /// The proxy's own Deployment, when it was told.
    pub fn deployment_ref(&self) -> Option<DeploymentRef> {
        (!self.deployment.is_empty())
            .then(|| DeploymentRef::new(self.namespace.clone(), self.deployment.clone()))
    }

    pub(crate) fn is_opaque_port(&self, port: u16) -> bool {
        self.opaque_ports.iter().any(|r| r.contains(port))
    }

    pub(crate) fn h2_limits(&self) -> crate::http::server::H2Limits {
        crate::http::server::H2Limits {
            max_concurrent_streams: self.http2_max_concurrent_streams,
            max_pending_accept_reset_streams: self.http2_max_pending_accept_reset_streams as usize,
            max_local_error_reset_streams: self.http2_max_local_error_reset_streams as usize,
            keepalive_interval: Some(self.http2_keepalive_interval).filter(|d| !d.is_zero()),
            keepalive_timeout: self.http2_keepalive_timeout,
        }
    }

    pub(crate) fn series_limits(&self) -> crate::metrics::SeriesLimits {
        crate::metrics::SeriesLimits {
            max_label_sets: self.metrics_max_label_sets as usize,
            retain_idle: self.metrics_retain_idle,
        }
    }
}

/// `LISTEN_ADDR=AUTHORITY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpRoute {
    pub listen: SocketAddr,
    pub authority: String,
}

impl FromStr for TcpRoute {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (listen, authority) = s
            .split_once('=')
            .ok_or_else(|| format!("expected LISTEN_ADDR=AUTHORITY, got {s:?}"))?;
        let listen = listen
            .trim()
            .parse()
            .map_err(|_| format!("{listen:?} is not a socket address (e.g. 127.0.0.1:3306)"))?;
        let authority = authority.trim();
        validate_authority(authority)?;
        Ok(Self {
            listen,
            authority: authority.to_string(),
        })
    }
}

/// What a static endpoint says about its peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    pub authority: String,
    pub addr: SocketAddr,
    /// A meshed endpoint: HTTP/1.1 goes over multiplexed HTTP/2.
    pub h2: bool,
    /// Forward bytes, never detect.
    pub opaque: bool,
    pub deployment: Option<DeploymentRef>,
    pub identity: Option<String>,
}

impl FromStr for EndpointSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (authority, rest) = s.split_once('=').ok_or_else(|| {
            format!("expected AUTHORITY=ADDR[;h2][;deployment=NS/NAME], got {s:?}")
        })?;
        let authority = authority.trim();
        validate_authority(authority)?;
        let mut parts = rest.split(';').map(str::trim);
        let addr = parts.next().unwrap_or_default();
        let addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not a socket address (e.g. 127.0.0.1:4143)"))?;
        let mut spec = Self {
            authority: authority.to_string(),
            addr,
            h2: false,
            opaque: false,
            deployment: None,
            identity: None,
        };
        for part in parts.filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                None if part == "h2" => spec.h2 = true,
                None if part == "opaque" => spec.opaque = true,
                Some(("deployment", d)) => {
                    spec.deployment = Some(d.parse().map_err(|e| format!("deployment: {e}"))?)
                }
                Some(("identity", id)) => spec.identity = Some(id.to_string()),
                _ => {
                    return Err(format!(
                        "unknown endpoint option {part:?}: use h2, opaque, deployment=NS/NAME or identity=NAME"
                    ));
                }
            }
        }
        Ok(spec)
    }
}

/// A gRPC address: `http://host:port` (plaintext) or `https://host:port`
/// (mTLS with the proxy's identity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcAddr(pub String);

impl GrpcAddr {
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// `host:port`.
    pub fn authority(&self) -> Result<String, String> {
        let uri: http::Uri = self.0.parse().map_err(|e| format!("{self}: {e}"))?;
        uri.authority()
            .map(|a| a.to_string())
            .ok_or_else(|| format!("{self} has no HOST:PORT"))
    }
}

impl FromStr for GrpcAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uri: http::Uri = s
            .parse()
            .map_err(|e| format!("{s:?} is not a URL ({e}); use e.g. https://127.0.0.1:8086"))?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        if !scheme_ok || uri.authority().is_none() || uri.port_u16().is_none() {
            return Err(format!(
                "{s:?}: expected https://HOST:PORT (mTLS) or http://HOST:PORT (plaintext)"
            ));
        }
        Ok(Self(s.trim_end_matches('/').to_string()))
    }
}

impl fmt::Display for GrpcAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An authority must be `host:port` so it names one service port.
fn parse_version(s: &str) -> Result<String, String> {
    conduit_api::deployment::validate_version(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

fn validate_authority(authority: &str) -> Result<(), String> {
    let valid = authority
        .parse::<http::uri::Authority>()
        .ok()
        .filter(|a| a.port_u16().is_some() && !a.host().is_empty());
    match valid {
        Some(_) => Ok(()),
        None => Err(format!(
            "{authority:?} is not an authority: use HOST:PORT, e.g. web.demo.svc.cluster.local:8080"
        )),
    }
}

/// `HOST` or `HOST:PORT`, lower case (as authorities are compared).
fn parse_host_or_authority(s: &str) -> Result<String, String> {
    let s = s.trim();
    // A port, or nothing but the host (no `user@`, no empty port).
    let valid = |a: &http::uri::Authority| {
        !a.host().is_empty() && (a.port_u16().is_some() || a.as_str() == a.host())
    };
    s.parse::<http::uri::Authority>()
        .ok()
        .filter(valid)
        .map(|a| a.as_str().to_ascii_lowercase())
        .ok_or_else(|| format!("{s:?} is not HOST or HOST:PORT, e.g. web.demo.svc.cluster.local"))
}

fn parse_network(s: &str) -> Result<String, String> {
    s.parse::<conduit_api::policy::Cidr>()?;
    Ok(s.to_string())
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| format!("{s:?} is not a fraction between 0 and 1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_specs() {
        let e: EndpointSpec = "web.demo:8080=127.0.0.1:4143;h2;deployment=demo/web"
            .parse()
            .unwrap();
        assert_eq!(e.authority, "web.demo:8080");
        assert_eq!(e.addr, "127.0.0.1:4143".parse().unwrap());
        assert!(e.h2 && !e.opaque);
        assert_eq!(e.deployment, Some(DeploymentRef::new("demo", "web")));

        for bad in [
            "web.demo=127.0.0.1:1",
            "web.demo:80",
            "web.demo:80=nowhere",
            "web.demo:80=127.0.0.1:1;h3",
            "web.demo:80=127.0.0.1:1;deployment=web",
        ] {
            assert!(bad.parse::<EndpointSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tcp_routes_and_ports() {
        let r: TcpRoute = "127.0.0.1:3306=db.demo:3306".parse().unwrap();
        assert_eq!(r.authority, "db.demo:3306");
        assert!("3306=db:3306".parse::<TcpRoute>().is_err());
    }

    #[test]
    fn grpc_addrs() {
        assert!("http://127.0.0.1:9096".parse::<GrpcAddr>().is_ok());
        assert!("127.0.0.1:9096".parse::<GrpcAddr>().is_err());
        assert!("ftp://store:9096".parse::<GrpcAddr>().is_err());
        let tls: GrpcAddr = "https://store:9096".parse().unwrap();
        assert!(tls.is_tls());
        assert_eq!(tls.authority().unwrap(), "store:9096");
    }
}
