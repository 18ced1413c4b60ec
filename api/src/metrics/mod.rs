//! The metric vocabulary: names and labels that proxies emit and the store,
//! controller, dashboards and Grafana query. They are Linkerd's, so existing
//! Linkerd dashboards work unchanged.
//!
//! - The names and label names below are the strings on the wire.
//! - [`family`]: each family as a value that knows its name, HELP, TYPE
//!   and, as a type, its labels: the proxy writes its headers from them,
//!   the store serves them as metadata, and the controller's matchers can
//!   only name labels the family has.
//! - [`labels`]: those label types, and the label sets the proxy builds.
//! - [`tls`]: the values of the `tls` and `no_tls_reason` labels.

pub mod family;
pub mod labels;
pub mod tls;

pub use tls::{NoTlsReason, Tls};

/// Requests received, by `direction`, `authority`, peer labels.
pub const REQUEST_TOTAL: &str = "request_total";
/// Responses, additionally by `status_code`, `grpc_status`,
/// `classification` and, for the responses the proxy wrote itself or the
/// requests it failed, `error_reason`.
pub const RESPONSE_TOTAL: &str = "response_total";
/// Time to response headers. Reported as an HdrHistogram; served as
/// `response_latency_ms_bucket/_sum/_count`.
pub const RESPONSE_LATENCY_MS: &str = "response_latency_ms";
pub const TCP_OPEN_TOTAL: &str = "tcp_open_total";
pub const TCP_CLOSE_TOTAL: &str = "tcp_close_total";
pub const TCP_READ_BYTES_TOTAL: &str = "tcp_read_bytes_total";
pub const TCP_WRITE_BYTES_TOTAL: &str = "tcp_write_bytes_total";
pub const TCP_OPEN_CONNECTIONS: &str = "tcp_open_connections";

/// Per-route series (routes come from the destination profile): logical
/// requests, as the application sent them, whatever retries happened.
/// Labeled like the outbound HTTP series plus `route`.
pub const ROUTE_REQUEST_TOTAL: &str = "route_request_total";
/// Adds `status_code`, `grpc_status`, `classification` (the route's
/// response classes decide it) and `error_reason` to the route's labels.
pub const ROUTE_RESPONSE_TOTAL: &str = "route_response_total";
/// Time to response headers of the logical request, retries included.
pub const ROUTE_RESPONSE_LATENCY_MS: &str = "route_response_latency_ms";
/// Requests sent again after a retryable failure.
pub const ROUTE_RETRY_TOTAL: &str = "route_retry_total";
/// Retryable failures that were not retried because the route's retry
/// budget was spent.
pub const ROUTE_RETRY_BUDGET_EXHAUSTED_TOTAL: &str = "route_retry_budget_exhausted_total";

/// Requests a proxy could not count under a learned route of their own,
/// by `reason`: `budget` (the authority holds its maximum number of
/// learned templates) or `too_long` (a path longer than a template may
/// be). Each was counted under the authority's `route="_overflow"`
/// learned route instead, so clients choosing paths cannot grow series.
pub const LEARNED_ROUTES_OVERFLOW_TOTAL: &str = "learned_routes_overflow_total";
/// `reason` value of [`LEARNED_ROUTES_OVERFLOW_TOTAL`] for paths over the
/// template length (the budget's is [`OVERFLOW_REASON_BUDGET`]).
pub const OVERFLOW_REASON_TOO_LONG: &str = "too_long";
/// The value of `learned` on the route series of a learned path template;
/// a profile's (declared) routes carry no `learned` label.
pub const LEARNED_ROUTE: &str = "true";

/// Proxy self-observability: what it dropped so that it never blocks
/// traffic. Labeled with the proxy's own `namespace`, `deployment`, `pod`.
pub const TELEMETRY_REPORTS_SENT_TOTAL: &str = "telemetry_reports_sent_total";
pub const TELEMETRY_REPORTS_DROPPED_TOTAL: &str = "telemetry_reports_dropped_total";
pub const TAP_EVENTS_SAMPLED_TOTAL: &str = "tap_events_sampled_total";
pub const TAP_EVENTS_DROPPED_TOTAL: &str = "tap_events_dropped_total";
/// The flight recorder: failed or slow requests kept in the tap history
/// beyond sampling, and those it let go because its budget was spent.
pub const TAP_EVENTS_RECORDED_TOTAL: &str = "tap_events_recorded_total";
pub const TAP_RECORDER_OVERFLOW_TOTAL: &str = "tap_recorder_overflow_total";
/// Destination profiles the proxy refused as invalid (the previous one
/// stayed in force).
pub const DESTINATION_PROFILES_REJECTED_TOTAL: &str = "destination_profiles_rejected_total";

/// When the proxy's current certificate expires (Unix seconds); absent
/// while the proxy has none.
pub const IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS: &str =
    "identity_cert_expiration_timestamp_seconds";
/// Certificates the proxy obtained from the identity service, and attempts
/// that failed (it keeps its current certificate and retries).
pub const IDENTITY_CERT_REFRESH_TOTAL: &str = "identity_cert_refresh_total";
pub const IDENTITY_CERT_REFRESH_FAILURES_TOTAL: &str = "identity_cert_refresh_failures_total";
/// mTLS handshakes between proxies that failed, by `direction` and
/// `reason` (an expired or foreign certificate, the wrong identity...).
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "tls_handshake_failures_total";
/// The identity service's certificates issued, and requests refused by
/// `reason`.
pub const IDENTITY_CERTS_ISSUED_TOTAL: &str = "identity_certs_issued_total";
pub const IDENTITY_CERTIFY_REFUSED_TOTAL: &str = "identity_certify_refused_total";

/// Inbound connections (TCP) and requests (HTTP) that policy allowed and
/// denied, by `srv_name`, `route_name` and, for allowed ones,
/// `authz_name`; `audit="true"` marks denials let through by audit mode.
pub const INBOUND_HTTP_AUTHZ_ALLOW_TOTAL: &str = "inbound_http_authz_allow_total";
pub const INBOUND_HTTP_AUTHZ_DENY_TOTAL: &str = "inbound_http_authz_deny_total";
pub const INBOUND_TCP_AUTHZ_ALLOW_TOTAL: &str = "inbound_tcp_authz_allow_total";
pub const INBOUND_TCP_AUTHZ_DENY_TOTAL: &str = "inbound_tcp_authz_deny_total";

/// Label sets a proxy refused a series of their own, by `family` (the
/// first metric of the family: `request_total`, `route_request_total`,
/// `tcp_open_total`) and `reason`: `budget` (the family holds its maximum
/// number of label sets) or `unknown_authority` (an inbound authority that
/// is none of the Deployment's names). Each was counted in the family's
/// `overflow` label set instead, so a peer choosing label values cannot
/// grow the proxy's memory or the store's series.
pub const METRICS_LABEL_SETS_OVERFLOW_TOTAL: &str = "metrics_label_sets_overflow_total";
/// Label sets forgotten after being idle (unused and unchanged) for the
/// proxy's retention time, by `family`.
pub const METRICS_LABEL_SETS_EVICTED_TOTAL: &str = "metrics_label_sets_evicted_total";
/// The value that stands for every label value a series could not keep
/// (see [`METRICS_LABEL_SETS_OVERFLOW_TOTAL`]). No authority, identity or
/// Kubernetes name can be spelled like it.
pub const OVERFLOW_LABEL_VALUE: &str = "_overflow";
/// `reason` values of [`METRICS_LABEL_SETS_OVERFLOW_TOTAL`].
pub const OVERFLOW_REASON_BUDGET: &str = "budget";
pub const OVERFLOW_REASON_UNKNOWN_AUTHORITY: &str = "unknown_authority";

/// Inbound connections the proxy refused outright, by `reason`:
/// `proxy_port`, a transparent-mode connection whose original destination
/// is one of the proxy's own ports (forwarding it would loop, or let a peer
/// use the pod's outbound listener).
pub const INBOUND_CONNECTIONS_REFUSED_TOTAL: &str = "inbound_connections_refused_total";
pub const REFUSED_REASON_PROXY_PORT: &str = "proxy_port";

/// `peer` values of the TCP families: which side of the proxy a
/// connection is on.
pub const PEER_SRC: &str = "src";
pub const PEER_DST: &str = "dst";

/// When the process started (Unix seconds), as Prometheus' client
/// libraries name it: a restart shows as a change.
pub const PROCESS_START_TIME_SECONDS: &str = "process_start_time_seconds";

/// Label names.
pub mod label {
    pub const DIRECTION: &str = "direction";
    pub const NAMESPACE: &str = "namespace";
    pub const DEPLOYMENT: &str = "deployment";
    pub const POD: &str = "pod";
    /// The version of the proxy's workload: on Kubernetes the pod's
    /// ReplicaSet hash (its `pod-template-hash` label, which Linkerd's
    /// Prometheus relabels to this name), in local mode what the proxy's
    /// `--workload-version` says. One value per pod, so a Deployment has
    /// one per version running: what compares versions during a rollout.
    pub const POD_TEMPLATE_HASH: &str = "pod_template_hash";
    pub const DST_NAMESPACE: &str = "dst_namespace";
    pub const DST_DEPLOYMENT: &str = "dst_deployment";
    pub const AUTHORITY: &str = "authority";
    pub const TLS: &str = "tls";
    /// Why a connection is not secured (with `tls="no_identity"`).
    pub const NO_TLS_REASON: &str = "no_tls_reason";
    pub const REASON: &str = "reason";
    pub const CLIENT_ID: &str = "client_id";
    pub const SERVER_ID: &str = "server_id";
    pub const STATUS_CODE: &str = "status_code";
    pub const GRPC_STATUS: &str = "grpc_status";
    pub const CLASSIFICATION: &str = "classification";
    /// Why the proxy answered itself or failed the request
    /// ([`crate::ErrorReason`]); absent on the application's responses.
    pub const ERROR_REASON: &str = "error_reason";
    pub const ROUTE: &str = "route";
    /// `true` on a route the proxy learned from paths (see
    /// [`super::LEARNED_ROUTE`]); absent on a profile's routes.
    pub const LEARNED: &str = "learned";
    pub const PEER: &str = "peer";
    pub const SRV_NAME: &str = "srv_name";
    pub const ROUTE_NAME: &str = "route_name";
    pub const AUTHZ_NAME: &str = "authz_name";
    pub const AUDIT: &str = "audit";
    /// Which metric family a proxy self-observability series is about.
    pub const FAMILY: &str = "family";
    /// Histogram bucket upper bound, as Prometheus names it.
    pub const LE: &str = "le";
    /// An exemplar's request id: the label OpenMetrics, Prometheus and
    /// Grafana's exemplar links use for the id of the traced request.
    pub const TRACE_ID: &str = "trace_id";
}

/// Upper bounds (ms) of the `response_latency_ms_bucket` series, Linkerd's,
/// so `histogram_quantile` queries written for Linkerd give comparable
/// answers. `+Inf` is implied.
pub const LATENCY_BUCKETS_MS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1_000.0, 2_000.0, 3_000.0, 4_000.0, 5_000.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0,
];
