//! The JSON form of the public API: what the controller's HTTP API
//! (`/api/v1/*`) returns, what `conduit ... -o json` prints, and what the
//! dashboard deserializes.
//!
//! One set of types for all three keeps them from drifting: the dashboard
//! compares its numbers with `conduit stat -o json`, and a script written
//! against one works against the other. The types are plain serde (no
//! protobuf), so the WASM dashboard uses them without the `proto` feature;
//! conversions from the gRPC messages are compiled with `proto`.
//!
//! Conventions: snake_case names, latencies in milliseconds (`*_ms`),
//! rates per second, Unix times in microseconds (`*_unix_us`), a metric
//! block is `null` when no request was seen in the window.

use serde::{Deserialize, Serialize};

use crate::DeploymentRef;

/// `GET /api/v1/version`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
    /// `local` or `kubernetes`.
    pub mode: String,
    pub dashboard_url: String,
}

/// A Deployment and how many of its pods are meshed (their proxy reports
/// to the store) out of how many discovery knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub namespace: String,
    pub name: String,
    pub meshed_pods: u32,
    pub total_pods: u32,
}

/// `GET /api/v1/deployments`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentList {
    pub deployments: Vec<Deployment>,
}

/// Golden metrics of some traffic over a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Golden {
    pub success_count: u64,
    pub failure_count: u64,
    /// `success_count / (success_count + failure_count)`, in [0, 1].
    pub success_rate: f64,
    /// Requests per second over the window.
    pub rps: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    pub latency_ms_p99: f64,
}

impl Golden {
    pub fn total(&self) -> u64 {
        self.success_count + self.failure_count
    }
}

/// One row of `conduit stat`: a Deployment (or, with `from`/`to`, the
/// traffic of an edge) and its golden metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatRow {
    pub namespace: String,
    pub name: String,
    pub meshed_pods: u32,
    pub total_pods: u32,
    /// `null` when no request was seen in the window.
    pub metrics: Option<Golden>,
    pub tcp_open_connections: u64,
    /// Grouped by version (`by=version`): the `pod_template_hash` the
    /// row's pods report (empty for pods that report none); the pod
    /// counts are then that version's reporting pods. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The window figures cover, `(start, end]`: as RFC 3339 times in UTC and
/// as Unix ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Span {
    pub start: String,
    pub end: String,
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
}

impl Span {
    pub fn new(start_unix_ms: i64, end_unix_ms: i64) -> Self {
        use crate::time_range::Rfc3339;
        Self {
            start: Rfc3339(start_unix_ms).to_string(),
            end: Rfc3339(end_unix_ms).to_string(),
            start_unix_ms,
            end_unix_ms,
        }
    }
}

/// `GET /api/v1/stat`, and each `stat` event of `/api/v1/stat/stream`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// The window the figures cover, e.g. `1m`.
    pub window: String,
    /// When the figures were computed (Unix ms).
    pub time_unix_ms: i64,
    /// Where the window starts and ends.
    #[serde(flatten)]
    pub span: Span,
    /// The longest histogram interval merged into the latency quantiles
    /// (1 s for recent data, 1 min for older): a window starting or
    /// ending inside one has quantiles over all of it.
    #[serde(default)]
    pub latency_resolution_ms: i64,
    pub rows: Vec<StatRow>,
}

/// `GET /api/v1/stat/history`: golden metrics of Deployments at evenly
/// spaced moments, each over the trailing `window` (for charts and
/// sparklines).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatHistory {
    pub window: String,
    pub step: String,
    pub series: Vec<StatSeries>,
}

/// One Deployment's points, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatSeries {
    pub namespace: String,
    pub name: String,
    pub points: Vec<StatPoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatPoint {
    /// The end of the window this point covers.
    pub time_unix_ms: i64,
    /// `null` when the window saw no request.
    pub metrics: Option<Golden>,
}

/// One path of `conduit top`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopRow {
    pub method: String,
    pub authority: String,
    pub path: String,
    pub metrics: Golden,
}

/// `GET /api/v1/top`, and each `top` event of `/api/v1/top/stream`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Top {
    /// Most requests first.
    pub rows: Vec<TopRow>,
}

/// One side of a tapped request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    /// `ip:port`, empty when unknown.
    pub address: String,
    pub deployment: Option<DeploymentRef>,
    /// mTLS identity, empty for plaintext.
    pub identity: String,
}

/// A request and its response as one proxy saw them (each `tap` event of
/// `/api/v1/tap/stream`, each element of `/api/v1/tap/search`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TapEvent {
    pub request_id: String,
    /// `inbound` or `outbound`, empty when the proxy did not say.
    pub direction: String,
    pub source: Peer,
    pub destination: Peer,
    pub tls: bool,
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub request_start_unix_us: i64,
    pub response_latency_us: u64,
    pub response_duration_us: u64,
    /// 0 when no response came back (see `error`).
    pub http_status: u32,
    pub grpc_status: Option<i32>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// The proxy's reason when it answered itself; empty otherwise.
    pub error: String,
    /// Why the event is in the tap history: `sampled`, `failed` or
    /// `slow` (the flight recorder); empty on live tap streams.
    #[serde(default)]
    pub kept: String,
    /// Its cause from the closed set ([`crate::ErrorReason`]), as the
    /// `error_reason` metric label spells it; empty otherwise.
    #[serde(default)]
    pub error_reason: String,
}

/// `GET /api/v1/tap/search`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TapSearch {
    /// Newest first.
    pub events: Vec<TapEvent>,
}

/// Traffic seen from one Deployment to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub src: DeploymentRef,
    pub dst: DeploymentRef,
    pub client_id: String,
    pub server_id: String,
    pub secured: bool,
    /// Why the edge is not secured; empty when it is.
    pub no_tls_reason: String,
}

/// `GET /api/v1/edges`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Edges {
    /// The window in which the edges carried traffic.
    #[serde(flatten)]
    pub span: Span,
    pub edges: Vec<Edge>,
}

/// One route of a Deployment's service profiles (`[DEFAULT]` for requests
/// no route matched).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteRow {
    pub route: String,
    pub authority: String,
    pub metrics: Option<Golden>,
    /// A path template the proxies learned, not a profile's route.
    #[serde(default)]
    pub learned: bool,
}

/// `GET /api/v1/routes`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Routes {
    /// The window the figures cover.
    #[serde(flatten)]
    pub span: Span,
    pub rows: Vec<RouteRow>,
}

/// One authorization of one route of one Server, or what none admitted;
/// counts over the request's window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthzRow {
    /// The Server, or `default:<mode>` for the ports no Server selects.
    pub server: String,
    /// 0 for the default policy.
    pub port: u16,
    /// `default` without routes; empty for requests on none.
    pub route: String,
    /// The authorization; empty on the row of denials.
    pub authorization: String,
    pub admits: String,
    pub allowed: f64,
    pub denied: f64,
    /// Denials that audit mode let through.
    pub audited: f64,
}

/// `GET /api/v1/authz`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Authz {
    /// The window the counts cover.
    #[serde(flatten)]
    pub span: Span,
    pub default_policy: String,
    pub rows: Vec<AuthzRow>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Warning,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub category: String,
    pub description: String,
    pub status: CheckStatus,
    /// What is wrong and what to do next; empty when OK.
    pub hint: String,
}

/// `GET /api/v1/check`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub results: Vec<CheckResult>,
}

/// The body of every non-2xx answer of the HTTP API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// A sentence for a person: what is wrong and what to do.
    pub error: String,
    /// A stable word for programs: `invalid_argument`, `not_found`,
    /// `unavailable`, `failed_precondition`, `internal`.
    pub code: String,
}

#[cfg(feature = "proto")]
mod from_proto {
    use std::net::IpAddr;

    use super::*;
    use crate::proto::{mesh::v1 as mesh, public::v1 as public, tap::v1 as tap};

    impl From<public::GoldenMetrics> for Golden {
        fn from(m: public::GoldenMetrics) -> Self {
            let total = m.success_count + m.failure_count;
            Self {
                success_count: m.success_count,
                failure_count: m.failure_count,
                success_rate: if total == 0 {
                    0.0
                } else {
                    m.success_count as f64 / total as f64
                },
                rps: m.requests_per_second,
                latency_ms_p50: m.latency_p50_ms,
                latency_ms_p95: m.latency_p95_ms,
                latency_ms_p99: m.latency_p99_ms,
            }
        }
    }

    impl From<public::VersionResponse> for Version {
        fn from(v: public::VersionResponse) -> Self {
            Self {
                version: v.version,
                mode: v.mode,
                dashboard_url: v.dashboard_url,
            }
        }
    }

    impl From<public::Deployment> for Deployment {
        fn from(d: public::Deployment) -> Self {
            let r = d.deployment.unwrap_or_default();
            Self {
                namespace: r.namespace,
                name: r.name,
                meshed_pods: d.meshed_pods,
                total_pods: d.total_pods,
            }
        }
    }

    impl From<public::ListDeploymentsResponse> for DeploymentList {
        fn from(r: public::ListDeploymentsResponse) -> Self {
            Self {
                deployments: r.deployments.into_iter().map(Into::into).collect(),
            }
        }
    }

    impl From<public::StatRow> for StatRow {
        fn from(r: public::StatRow) -> Self {
            let d = Deployment::from(r.deployment.unwrap_or_default());
            Self {
                namespace: d.namespace,
                name: d.name,
                meshed_pods: d.meshed_pods,
                total_pods: d.total_pods,
                metrics: r.metrics.map(Into::into),
                tcp_open_connections: r.tcp_open_connections,
                version: r.version,
            }
        }
    }

    impl From<public::StatResponse> for Stat {
        fn from(r: public::StatResponse) -> Self {
            let len = u64::try_from(r.end_unix_ms - r.start_unix_ms).unwrap_or(0);
            Self {
                window: crate::duration::format(std::time::Duration::from_millis(len)),
                time_unix_ms: r.end_unix_ms,
                span: Span::new(r.start_unix_ms, r.end_unix_ms),
                latency_resolution_ms: r.latency_resolution_ms,
                rows: r.rows.into_iter().map(Into::into).collect(),
            }
        }
    }

    impl From<public::TopRow> for TopRow {
        fn from(r: public::TopRow) -> Self {
            Self {
                method: r.method,
                authority: r.authority,
                path: r.path,
                metrics: r.metrics.unwrap_or_default().into(),
            }
        }
    }

    impl From<public::TopUpdate> for Top {
        fn from(u: public::TopUpdate) -> Self {
            Self {
                rows: u.rows.into_iter().map(Into::into).collect(),
            }
        }
    }

    /// `ip:port` of a wire address; empty when the bytes are no IP.
    pub fn socket_addr(a: &mesh::TcpAddress) -> String {
        let ip = match a.ip.len() {
            4 => <[u8; 4]>::try_from(a.ip.as_slice()).map(IpAddr::from).ok(),
            16 => <[u8; 16]>::try_from(a.ip.as_slice()).map(IpAddr::from).ok(),
            _ => None,
        };
        match ip {
            Some(IpAddr::V6(ip)) => format!("[{ip}]:{}", a.port),
            Some(ip) => format!("{ip}:{}", a.port),
            None => String::new(),
        }
    }

    impl From<tap::Peer> for Peer {
        fn from(p: tap::Peer) -> Self {
            Self {
                address: p.address.as_ref().map(socket_addr).unwrap_or_default(),
                deployment: p.deployment.filter(|d| !d.name.is_empty()).map(Into::into),
                identity: p.identity,
            }
        }
    }

    impl From<tap::TapEvent> for TapEvent {
        fn from(e: tap::TapEvent) -> Self {
            let direction = match mesh::Direction::try_from(e.direction) {
                Ok(mesh::Direction::Inbound) => "inbound",
                Ok(mesh::Direction::Outbound) => "outbound",
                _ => "",
            };
            let kept = e.kept().name().unwrap_or_default();
            Self {
                request_id: e.request_id,
                direction: direction.to_string(),
                source: e.source.unwrap_or_default().into(),
                destination: e.destination.unwrap_or_default().into(),
                tls: e.tls,
                method: e.method,
                scheme: e.scheme,
                authority: e.authority,
                path: e.path,
                request_start_unix_us: e.request_start_unix_us,
                response_latency_us: e.response_latency_us,
                response_duration_us: e.response_duration_us,
                http_status: e.http_status,
                grpc_status: e.grpc_status,
                request_bytes: e.request_bytes,
                response_bytes: e.response_bytes,
                kept: kept.to_string(),
                error: e.error,
                error_reason: e.error_reason,
            }
        }
    }

    impl From<public::Edge> for Edge {
        fn from(e: public::Edge) -> Self {
            Self {
                src: e.src.unwrap_or_default().into(),
                dst: e.dst.unwrap_or_default().into(),
                client_id: e.client_id,
                server_id: e.server_id,
                secured: e.secured,
                no_tls_reason: e.no_tls_reason,
            }
        }
    }

    impl From<public::EdgesResponse> for Edges {
        fn from(r: public::EdgesResponse) -> Self {
            Self {
                span: Span::new(r.start_unix_ms, r.end_unix_ms),
                edges: r.edges.into_iter().map(Into::into).collect(),
            }
        }
    }

    impl From<public::RouteRow> for RouteRow {
        fn from(r: public::RouteRow) -> Self {
            Self {
                route: r.route,
                authority: r.authority,
                metrics: r.metrics.map(Into::into),
                learned: r.learned,
            }
        }
    }

    impl From<public::RoutesResponse> for Routes {
        fn from(r: public::RoutesResponse) -> Self {
            Self {
                span: Span::new(r.start_unix_ms, r.end_unix_ms),
                rows: r.rows.into_iter().map(Into::into).collect(),
            }
        }
    }

    impl From<public::AuthzRow> for AuthzRow {
        fn from(r: public::AuthzRow) -> Self {
            Self {
                server: r.server,
                port: u16::try_from(r.port).unwrap_or(0),
                route: r.route,
                authorization: r.authorization,
                admits: r.admits,
                allowed: r.allowed,
                denied: r.denied,
                audited: r.audited,
            }
        }
    }

    impl From<public::AuthzResponse> for Authz {
        fn from(r: public::AuthzResponse) -> Self {
            Self {
                span: Span::new(r.start_unix_ms, r.end_unix_ms),
                default_policy: r.default_policy,
                rows: r.rows.into_iter().map(Into::into).collect(),
            }
        }
    }

    impl From<public::CheckResult> for CheckResult {
        fn from(r: public::CheckResult) -> Self {
            let status = match public::CheckStatus::try_from(r.status) {
                Ok(public::CheckStatus::Ok) => CheckStatus::Ok,
                Ok(public::CheckStatus::Warning) => CheckStatus::Warning,
                _ => CheckStatus::Failed,
            };
            Self {
                category: r.category,
                description: r.description,
                status,
                hint: r.hint,
            }
        }
    }

    impl From<public::CheckResponse> for Check {
        fn from(r: public::CheckResponse) -> Self {
            Self {
                results: r.results.into_iter().map(Into::into).collect(),
            }
        }
    }
}

#[cfg(feature = "proto")]
pub use from_proto::socket_addr;

#[cfg(all(test, feature = "proto"))]
mod tests {
    use super::*;
    use crate::proto::{mesh::v1 as mesh, public::v1 as public};

    #[test]
    fn success_rate_is_derived_and_safe_without_traffic() {
        let g = Golden::from(public::GoldenMetrics {
            success_count: 9,
            failure_count: 1,
            ..Default::default()
        });
        assert!((g.success_rate - 0.9).abs() < 1e-9);
        assert_eq!(g.total(), 10);
        assert_eq!(
            Golden::from(public::GoldenMetrics::default()).success_rate,
            0.0
        );
    }

    #[test]
    fn addresses_print_like_socket_addrs() {
        let v4 = mesh::TcpAddress {
            ip: vec![127, 0, 0, 1],
            port: 80,
        };
        assert_eq!(socket_addr(&v4), "127.0.0.1:80");
        let mut v6 = vec![0; 16];
        v6[15] = 1;
        assert_eq!(
            socket_addr(&mesh::TcpAddress { ip: v6, port: 8 }),
            "[::1]:8"
        );
        assert_eq!(
            socket_addr(&mesh::TcpAddress {
                ip: vec![1],
                port: 8
            }),
            ""
        );
    }
}
