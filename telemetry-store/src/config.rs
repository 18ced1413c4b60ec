//! The store's configuration: command-line flags, each also settable as a
//! `CONDUIT_STORE_*` environment variable, with defaults that fit a laptop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::time::parse_duration;
pub use crate::wal::FsyncPolicy;

#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "conduit-telemetry-store",
    version,
    about = "Conduit's telemetry store: ingests the proxies' reports and Prometheus remote-write, \
             keeps a rolling per-Deployment TSDB, and answers PromQL (Prometheus HTTP API) and \
             the controller's gRPC queries."
)]
pub struct Config {
    /// The controller's identity service, `https://HOST:PORT`. Set: the
    /// gRPC server is mTLS, proxies and the controller must prove mesh
    /// identities, and the store proves its own. Unset: plaintext.
    #[arg(long, env = "CONDUIT_STORE_IDENTITY_ADDR", value_name = "URL")]
    pub identity_addr: Option<String>,

    /// PEM trust anchors of the mesh.
    #[arg(
        long,
        env = "CONDUIT_STORE_IDENTITY_TRUST_ANCHORS",
        value_name = "PATH",
        requires = "identity_addr"
    )]
    pub identity_trust_anchors: Option<PathBuf>,

    /// The token proving the store's ServiceAccount (in local mode, the
    /// demo's token file).
    #[arg(
        long,
        env = "CONDUIT_STORE_IDENTITY_TOKEN_FILE",
        value_name = "PATH",
        requires = "identity_addr"
    )]
    pub identity_token_file: Option<PathBuf>,

    /// The mesh's trust domain.
    #[arg(long, env = "CONDUIT_STORE_TRUST_DOMAIN", default_value = conduit_api::identity::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,

    /// The control plane's namespace, where the store's and the
    /// controller's ServiceAccounts are.
    #[arg(long, env = "CONDUIT_STORE_NAMESPACE", default_value = conduit_api::identity::CONTROL_PLANE_NAMESPACE)]
    pub namespace: String,

    /// File holding the bearer token remote writers must send
    /// (`Authorization: Bearer <token>`). Unset: every remote write is
    /// refused with 401.
    #[arg(
        long,
        env = "CONDUIT_STORE_REMOTE_WRITE_TOKEN_FILE",
        value_name = "PATH"
    )]
    pub remote_write_token_file: Option<PathBuf>,

    /// File holding the bearer token readers of the tap history must send
    /// (`/api/v1/tap/search`, `/api/v1/tap/follow`: request paths,
    /// authorities, client addresses). Unset: those endpoints answer 401;
    /// the controller reads tap history over mTLS either way.
    #[arg(long, env = "CONDUIT_STORE_TAP_TOKEN_FILE", value_name = "PATH")]
    pub tap_token_file: Option<PathBuf>,

    /// Address of the HTTP server: PromQL API (/api/v1/*), remote-write
    /// receiver (/api/v1/write), /metrics, /-/ready, /-/healthy.
    #[arg(
        long,
        env = "CONDUIT_STORE_HTTP_LISTEN",
        default_value = "127.0.0.1:9095"
    )]
    pub http_listen: SocketAddr,

    /// Time a client has to send a request's headers (and, on HTTP/1.1,
    /// to start its next request on a kept-alive connection); slower
    /// connections are closed.
    #[arg(long, env = "CONDUIT_STORE_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http_header_timeout: Duration,

    /// Time a client has to send a request's body.
    #[arg(long, env = "CONDUIT_STORE_HTTP_BODY_TIMEOUT", default_value = "1m", value_parser = parse_duration)]
    pub http_body_timeout: Duration,

    /// An HTTP connection on which no byte moves for this long is closed
    /// (an answer being computed is still sent).
    #[arg(long, env = "CONDUIT_STORE_HTTP_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub http_idle_timeout: Duration,

    /// Open HTTP connections at most; more wait to be accepted
    /// (Prometheus' --web.max-connections).
    #[arg(
        long,
        env = "CONDUIT_STORE_HTTP_MAX_CONNECTIONS",
        default_value_t = 512
    )]
    pub http_max_connections: usize,

    /// Concurrent requests on one HTTP/2 connection to the HTTP server.
    #[arg(long, env = "CONDUIT_STORE_HTTP_MAX_STREAMS", default_value_t = 100)]
    pub http_max_streams: u32,

    /// Largest request body of the query and tap endpoints (form-encoded
    /// POSTs); larger ones get HTTP 413.
    #[arg(long, env = "CONDUIT_STORE_HTTP_MAX_REQUEST_BODY", default_value = "4MiB", value_parser = parse_bytes)]
    pub http_max_request_body: u64,

    /// Largest remote-write body (snappy-compressed); larger ones get
    /// HTTP 413.
    #[arg(long, env = "CONDUIT_STORE_REMOTE_WRITE_MAX_BODY", default_value = "32MiB", value_parser = parse_bytes)]
    pub remote_write_max_body: u64,

    /// Address of the gRPC server: conduit.telemetry.v1.Telemetry (proxy
    /// reports) and conduit.store.v1.Query (controller).
    #[arg(
        long,
        env = "CONDUIT_STORE_GRPC_LISTEN",
        default_value = "127.0.0.1:9096"
    )]
    pub grpc_listen: SocketAddr,

    /// Open gRPC connections at most; more wait to be accepted.
    #[arg(
        long,
        env = "CONDUIT_STORE_GRPC_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub grpc_max_connections: usize,

    /// Concurrent streams (calls) on one gRPC connection; more are refused
    /// (REFUSED_STREAM). A proxy uses one, the controller a handful.
    #[arg(long, env = "CONDUIT_STORE_GRPC_MAX_STREAMS", default_value_t = 100)]
    pub grpc_max_streams: u32,

    /// How often the gRPC server pings an idle connection, and how long it
    /// waits for the answer before closing it.
    #[arg(long, env = "CONDUIT_STORE_GRPC_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub grpc_keepalive_interval: Duration,

    #[arg(long, env = "CONDUIT_STORE_GRPC_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub grpc_keepalive_timeout: Duration,

    /// Streams a gRPC connection may make the server reset (malformed or
    /// refused ones) before the server closes it (GOAWAY
    /// ENHANCE_YOUR_CALM).
    #[arg(
        long,
        env = "CONDUIT_STORE_GRPC_MAX_RESET_STREAMS",
        default_value_t = 1024
    )]
    pub grpc_max_reset_streams: usize,

    /// A proxy's report stream that sends nothing for this long is ended
    /// (proxies report every second; a silent stream only holds a slot).
    #[arg(long, env = "CONDUIT_STORE_GRPC_REPORT_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub grpc_report_idle_timeout: Duration,

    /// Largest proxy report (one message of the Report stream).
    #[arg(long, env = "CONDUIT_STORE_GRPC_MAX_REPORT_SIZE", default_value = "16MiB", value_parser = parse_bytes)]
    pub grpc_max_report_size: u64,

    /// Largest request to the Query service.
    #[arg(long, env = "CONDUIT_STORE_GRPC_MAX_QUERY_SIZE", default_value = "1MiB", value_parser = parse_bytes)]
    pub grpc_max_query_size: u64,

    /// Largest answer of the Query service; a larger one fails with
    /// RESOURCE_EXHAUSTED (narrow the query).
    #[arg(long, env = "CONDUIT_STORE_GRPC_MAX_RESPONSE_SIZE", default_value = "64MiB", value_parser = parse_bytes)]
    pub grpc_max_response_size: u64,

    /// Directory of the WAL and blocks; created if missing.
    #[arg(
        long,
        env = "CONDUIT_STORE_DATA_DIR",
        default_value = "conduit-store-data"
    )]
    pub data_dir: PathBuf,

    /// Delete data older than this (e.g. 7d, 36h).
    #[arg(long, env = "CONDUIT_STORE_RETENTION_TIME", default_value = "7d", value_parser = parse_duration)]
    pub retention_time: Duration,

    /// Delete the oldest blocks when blocks and WAL exceed this size
    /// (e.g. 2GiB, 500MB, 0 for no limit).
    #[arg(long, env = "CONDUIT_STORE_RETENTION_SIZE", default_value = "2GiB", value_parser = parse_bytes)]
    pub retention_size: u64,

    /// Keep raw samples this long; older data is kept at one-minute
    /// resolution (rollups written as blocks are cut) up to
    /// --retention-time. `0s` keeps raw data for the whole retention.
    #[arg(long, env = "CONDUIT_STORE_RAW_RETENTION", default_value = "6h", value_parser = parse_duration)]
    pub raw_retention: Duration,

    /// Time range of the blocks cut from the in-memory head; the head
    /// keeps up to 1.5 of it. Smaller values bound memory more tightly.
    #[arg(long, env = "CONDUIT_STORE_BLOCK_DURATION", default_value = "2h", value_parser = parse_duration)]
    pub block_duration: Duration,

    /// When the WAL is flushed to disk: `always` (before acknowledging each
    /// write), `interval` (every --wal-fsync-interval) or `never` (by the
    /// OS). A crashed process loses nothing in any mode; a power loss loses
    /// up to one interval with `interval`.
    #[arg(long, env = "CONDUIT_STORE_WAL_FSYNC", value_enum, default_value_t = FsyncPolicy::Interval)]
    pub wal_fsync: FsyncPolicy,

    #[arg(long, env = "CONDUIT_STORE_WAL_FSYNC_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub wal_fsync_interval: Duration,

    /// Most series held in memory; new series past it are refused (and
    /// counted), existing series keep working.
    #[arg(
        long,
        env = "CONDUIT_STORE_MAX_ACTIVE_SERIES",
        default_value_t = 1_000_000
    )]
    pub max_active_series: usize,

    /// Most series (counter, gauge and histogram label sets) of one proxy
    /// report; a larger report is cut to this many, the rest counted and
    /// dropped.
    #[arg(
        long,
        env = "CONDUIT_STORE_MAX_SERIES_PER_REPORT",
        default_value_t = 10_000
    )]
    pub max_series_per_report: usize,

    /// Most series one proxy's reports write (a histogram counts once, with
    /// its bucket, sum and count series); its new series past it are
    /// refused and counted, its existing ones keep working.
    #[arg(
        long,
        env = "CONDUIT_STORE_MAX_SERIES_PER_PROXY",
        default_value_t = 20_000
    )]
    pub max_series_per_proxy: usize,

    /// Exemplars (requests behind a latency bucket, from the proxies'
    /// reports) kept per `_bucket` series for /api/v1/query_exemplars: the
    /// newest this many. 0 keeps none.
    #[arg(long, env = "CONDUIT_STORE_EXEMPLARS_PER_SERIES", default_value_t = 16)]
    pub exemplars_per_series: usize,

    /// Most `_bucket` series that hold exemplars; past it, those updated
    /// least recently are forgotten.
    #[arg(
        long,
        env = "CONDUIT_STORE_EXEMPLARS_MAX_SERIES",
        default_value_t = 50_000
    )]
    pub exemplars_max_series: usize,

    /// Most proxies the store keeps a status and a series budget for; past
    /// it, the least recently seen are forgotten.
    #[arg(long, env = "CONDUIT_STORE_MAX_PROXIES", default_value_t = 10_000)]
    pub max_proxies: usize,

    /// Proxies, and remote-write metric metadata, not seen for this long
    /// are forgotten.
    #[arg(long, env = "CONDUIT_STORE_PEER_STATE_TTL", default_value = "1h", value_parser = parse_duration)]
    pub peer_state_ttl: Duration,

    /// Most labels of one series; a remote-write request with a larger
    /// series is refused, a report's larger series is refused alone.
    #[arg(
        long,
        env = "CONDUIT_STORE_MAX_LABELS_PER_SERIES",
        default_value_t = 128
    )]
    pub max_labels_per_series: usize,

    /// Most samples in one remote-write request; larger requests get HTTP
    /// 400 (Prometheus sends 2000 by default).
    #[arg(
        long,
        env = "CONDUIT_STORE_REMOTE_WRITE_MAX_SAMPLES",
        default_value_t = 1_000_000
    )]
    pub remote_write_max_samples: usize,

    /// Most metric metadata entries (type, help, unit) kept from
    /// remote-write; the least recently seen go first, and a request's
    /// entries past it are ignored.
    #[arg(long, env = "CONDUIT_STORE_MAX_METADATA", default_value_t = 10_000)]
    pub max_metadata: usize,

    /// Most samples one query may hold in memory (Prometheus'
    /// --query.max-samples); past it the query fails with HTTP 422.
    #[arg(
        long,
        env = "CONDUIT_STORE_QUERY_MAX_SAMPLES",
        default_value_t = 50_000_000
    )]
    pub query_max_samples: usize,

    /// Longest a query may run; past it the query fails with HTTP 503.
    #[arg(long, env = "CONDUIT_STORE_QUERY_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub query_timeout: Duration,

    /// Longest query text accepted (PromQL and tap searches), in bytes;
    /// longer ones fail with HTTP 400 before any parsing.
    #[arg(long, env = "CONDUIT_STORE_QUERY_MAX_LENGTH", default_value_t = 65_536)]
    pub query_max_length: usize,

    /// Deepest nesting accepted in query text: brackets inside one another
    /// plus the operators within each. Parsing and evaluation recurse once
    /// per level on a 2 MiB stack, so this bounds their stack (nested
    /// calls overflow it from about 400 levels); deeper queries fail with
    /// HTTP 400 before any parsing.
    #[arg(long, env = "CONDUIT_STORE_QUERY_MAX_DEPTH", default_value_t = 128)]
    pub query_max_depth: usize,

    /// Queries (PromQL, series and label lookups, tap searches) evaluated
    /// at once (Prometheus' --query.max-concurrency); more wait in line,
    /// each for at most its timeout.
    #[arg(
        long,
        env = "CONDUIT_STORE_QUERY_MAX_CONCURRENCY",
        default_value_t = 20
    )]
    pub query_max_concurrency: usize,

    /// How far back an instant selector looks for a sample (Prometheus'
    /// --query.lookback-delta).
    #[arg(long, env = "CONDUIT_STORE_LOOKBACK_DELTA", default_value = "5m", value_parser = parse_duration)]
    pub lookback_delta: Duration,

    /// Keep tap events (sampled requests, searchable) this long; `0s`
    /// turns the tap history off.
    #[arg(long, env = "CONDUIT_STORE_TAP_RETENTION_TIME", default_value = "24h", value_parser = parse_duration)]
    pub tap_retention_time: Duration,

    /// Delete the oldest tap events when their index exceeds this size.
    #[arg(long, env = "CONDUIT_STORE_TAP_RETENTION_SIZE", default_value = "512MiB", value_parser = parse_bytes)]
    pub tap_retention_size: u64,

    /// Most events one tap search returns.
    #[arg(long, env = "CONDUIT_STORE_TAP_MAX_RESULTS", default_value_t = 10_000)]
    pub tap_max_results: usize,

    /// Clients following the tap history live at once (/api/v1/tap/follow
    /// and the gRPC FollowTap); more are refused.
    #[arg(long, env = "CONDUIT_STORE_TAP_MAX_FOLLOWERS", default_value_t = 32)]
    pub tap_max_followers: usize,

    /// Most events per second sent to one tap follower; a faster stream of
    /// matches reaches it late, in order, none skipped.
    #[arg(long, env = "CONDUIT_STORE_TAP_FOLLOW_RATE", default_value_t = 1000)]
    pub tap_follow_rate: usize,

    /// Tap events waiting to be indexed; when full, new ones are dropped
    /// (and counted) rather than slowing metric ingest.
    #[arg(long, env = "CONDUIT_STORE_TAP_QUEUE", default_value_t = 65_536)]
    pub tap_queue: usize,

    /// Forward every ingested series to this Prometheus remote-write
    /// endpoint (http://…/api/v1/write of Prometheus, Mimir, Thanos
    /// Receive, VictoriaMetrics). The WAL is the queue: nothing is lost
    /// while the endpoint is down, up to --remote-write-max-lag.
    #[arg(long, env = "CONDUIT_STORE_REMOTE_WRITE_URL", value_name = "URL")]
    pub remote_write_url: Option<String>,

    /// Forward only series matching one of these selectors (repeatable),
    /// e.g. `{namespace="prod"}`.
    #[arg(
        long,
        env = "CONDUIT_STORE_REMOTE_WRITE_MATCH",
        value_name = "SELECTOR",
        value_delimiter = ';'
    )]
    pub remote_write_match: Vec<String>,

    /// Labels to remove from forwarded series (repeatable, or
    /// comma-separated), e.g. `pod`.
    #[arg(
        long,
        env = "CONDUIT_STORE_REMOTE_WRITE_DROP_LABEL",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub remote_write_drop_label: Vec<String>,

    /// Labels to add to forwarded series that lack them (repeatable, or
    /// comma-separated), e.g. `cluster=eu-1`.
    #[arg(
        long,
        env = "CONDUIT_STORE_REMOTE_WRITE_EXTERNAL_LABEL",
        value_name = "NAME=VALUE",
        value_delimiter = ','
    )]
    pub remote_write_external_label: Vec<String>,

    /// Samples per remote-write request.
    #[arg(long, env = "CONDUIT_STORE_REMOTE_WRITE_BATCH", default_value_t = 2000)]
    pub remote_write_batch: usize,

    /// Remote-write requests in flight at once: series are split among
    /// this many shards, each sending one request at a time, so a series'
    /// samples arrive in order (1 to 64).
    #[arg(long, env = "CONDUIT_STORE_REMOTE_WRITE_SHARDS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub remote_write_shards: u16,

    /// WAL kept for a lagging remote-write endpoint; beyond it the oldest
    /// unsent samples are dropped (and counted).
    #[arg(long, env = "CONDUIT_STORE_REMOTE_WRITE_MAX_LAG", default_value = "1GiB", value_parser = parse_bytes)]
    pub remote_write_max_lag: u64,

    /// How far past the store's clock a sample, report or tap event may be
    /// dated; later ones (and ones before 1970) are refused and counted. A
    /// proxy's clock is trusted this far and no further.
    #[arg(long, env = "CONDUIT_STORE_FUTURE_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub future_window: Duration,

    /// How often background maintenance runs (cutting blocks, compaction,
    /// retention).
    #[arg(long, env = "CONDUIT_STORE_MAINTENANCE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub maintenance_interval: Duration,
}

impl Config {
    /// Defaults with another data directory and ephemeral ports, for
    /// embedding and tests.
    pub fn for_data_dir(dir: impl Into<PathBuf>) -> Self {
        use clap::Parser;
        let mut c = Self::parse_from(["conduit-telemetry-store"]);
        c.data_dir = dir.into();
        c.http_listen = ([127, 0, 0, 1], 0).into();
        c.grpc_listen = ([127, 0, 0, 1], 0).into();
        c
    }
}

impl Config {
    pub(crate) fn http_limits(&self) -> conduit_listen::http::HttpLimits {
        conduit_listen::http::HttpLimits {
            header_timeout: self.http_header_timeout,
            idle_timeout: self.http_idle_timeout,
            max_connections: self.http_max_connections,
            max_streams: self.http_max_streams,
        }
    }

    pub(crate) fn grpc_limits(&self) -> conduit_listen::grpc::GrpcLimits {
        conduit_listen::grpc::GrpcLimits {
            max_connections: self.grpc_max_connections,
            max_streams: self.grpc_max_streams,
            keepalive_interval: self.grpc_keepalive_interval,
            keepalive_timeout: self.grpc_keepalive_timeout,
            max_reset_streams: self.grpc_max_reset_streams,
        }
    }

    pub(crate) fn ingest_limits(&self) -> crate::ingest::IngestLimits {
        crate::ingest::IngestLimits {
            max_labels_per_series: self.max_labels_per_series,
            max_samples_per_write: self.remote_write_max_samples,
            max_metadata: self.max_metadata,
            max_series_per_report: self.max_series_per_report,
            max_series_per_proxy: self.max_series_per_proxy,
            exemplars_per_series: self.exemplars_per_series,
            exemplars_max_series: self.exemplars_max_series,
        }
    }

    /// What query text may be, for PromQL and tap searches alike.
    pub(crate) fn text_limits(&self) -> crate::query_text::TextLimits {
        crate::query_text::TextLimits {
            max_bytes: self.query_max_length,
            max_depth: self.query_max_depth,
        }
    }
}

/// Parses `2GiB`, `500MB`, `1024`, `0`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("cannot parse {s:?} as a size (e.g. 2GiB, 500MB)"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0f64.powi(4),
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    Ok((n * mult) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_write_shards_are_bounded() {
        use clap::Parser;
        let parse = |n: &str| {
            Config::try_parse_from(["store".into(), format!("--remote-write-shards={n}")])
        };
        assert_eq!(parse("1").unwrap().remote_write_shards, 1);
        assert_eq!(parse("64").unwrap().remote_write_shards, 64);
        for bad in ["0", "65", "-1", "four"] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains("--remote-write-shards"), "{err}");
        }
        assert!(
            parse("0").expect_err("0").to_string().contains("1..=64"),
            "the error names the bounds"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5XB").is_err());
    }

    /// The README's table of limits names real flags, each with its
    /// environment variable and the default the README gives.
    #[test]
    fn every_limit_in_the_readme_is_a_flag_with_that_default() {
        use clap::CommandFactory;
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## Telemetry store limits")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("a limits section in the README");
        let command = Config::command();
        let mut rows = 0;
        for line in section
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains("`--"))
        {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (default, flag) = (
                cells[2],
                cells[3].trim_matches('`').trim_start_matches("--"),
            );
            let arg = command
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .unwrap_or_else(|| panic!("the README names --{flag}, which is no flag"));
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            assert_eq!(defaults, [default], "--{flag}");
            let env = format!("CONDUIT_STORE_{}", flag.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                Some(env),
                "--{flag}"
            );
            rows += 1;
        }
        assert!(rows >= 30, "{rows} limits documented");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::for_data_dir("/tmp/x");
        assert_eq!(c.retention_time, Duration::from_secs(7 * 86_400));
        assert_eq!(c.lookback_delta, Duration::from_secs(300));
        assert_eq!(c.wal_fsync, FsyncPolicy::Interval);
    }
}
