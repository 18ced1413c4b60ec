//! Every metric family the mesh emits: its name, HELP, TYPE and labels.
//!
//! The proxy writes `/metrics` headers from these, the store answers
//! `/api/v1/metadata` with [`ALL`], and the controller selects series by a
//! family and labels of the family's own label type ([`super::labels`]).

use std::marker::PhantomData;

use super::labels::{
    Authz, Bare, Handshake, Http, LabelSets, Own, OwnReason, Reason, Response, Route,
    RouteResponse, Tcp,
};

/// A family's Prometheus TYPE.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A family, whatever its labels: what metadata needs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

/// Prometheus' text exposition header: the `# HELP` and `# TYPE` lines,
/// without the final newline.
impl std::fmt::Display for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { name, help, kind } = self;
        write!(f, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str())
    }
}

/// A family whose series carry the labels `L`.
pub struct Family<L> {
    pub meta: Meta,
    labels: PhantomData<fn() -> L>,
}

impl<L> Clone for Family<L> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<L> Copy for Family<L> {}

impl<L> Family<L> {
    const fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Self {
            meta: Meta { name, help, kind },
            labels: PhantomData,
        }
    }

    pub const fn name(&self) -> &'static str {
        self.meta.name
    }
}

/// Selecting a family's series in the store, and reading its rows.
#[cfg(feature = "proto")]
impl<L: super::labels::Label> Family<L> {
    /// `label="value"`.
    pub fn eq(&self, label: L, value: &str) -> store::Matcher {
        matcher(label.name(), store::matcher::Op::Equal, value)
    }

    /// `label=~"regex"`.
    pub fn regex(&self, label: L, regex: &str) -> store::Matcher {
        matcher(label.name(), store::matcher::Op::Regex, regex)
    }

    /// `__name__="name"`: this family's series only.
    pub fn select(&self) -> store::Matcher {
        matcher(METRIC_NAME, store::matcher::Op::Equal, self.meta.name)
    }

    /// The value of `label` in one of the family's series; empty when the
    /// series has none.
    pub fn label<'a>(&self, labels: &'a [mesh::Label], label: L) -> &'a str {
        labels
            .iter()
            .find(|l| l.name == label.name())
            .map_or("", |l| l.value.as_str())
    }
}

#[cfg(feature = "proto")]
use crate::proto::{mesh::v1 as mesh, store::v1 as store};

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// `__name__=~"a|b"`: the series of several families.
#[cfg(feature = "proto")]
pub fn select_any(families: &[Meta]) -> store::Matcher {
    let names: Vec<&str> = families.iter().map(|m| m.name).collect();
    matcher(METRIC_NAME, store::matcher::Op::Regex, &names.join("|"))
}

#[cfg(feature = "proto")]
fn matcher(name: &str, op: store::matcher::Op, value: &str) -> store::Matcher {
    store::Matcher {
        name: name.to_string(),
        op: op.into(),
        value: value.to_string(),
    }
}

macro_rules! families {
    ($($(#[$doc:meta])* $id:ident: $labels:ty = ($name:expr, $kind:ident, $help:expr);)*) => {
        $(
            $(#[$doc])*
            pub const $id: Family<$labels> = Family::new($name, Kind::$kind, $help);
        )*
        /// Every family, for metadata.
        pub const ALL: &[Meta] = &[$($id.meta),*];
    };
}

families! {
    REQUEST_TOTAL: Http = (super::REQUEST_TOTAL, Counter, "Total count of HTTP requests.");
    RESPONSE_TOTAL: Response = (
        super::RESPONSE_TOTAL,
        Counter,
        "Total count of HTTP responses, by status and classification."
    );
    RESPONSE_LATENCY_MS: Http = (
        super::RESPONSE_LATENCY_MS,
        Histogram,
        "Time between a request's headers arriving and its response's headers, in milliseconds."
    );
    ROUTE_REQUEST_TOTAL: Route = (
        super::ROUTE_REQUEST_TOTAL,
        Counter,
        "Total count of HTTP requests per destination profile route, as the application sent them."
    );
    ROUTE_RESPONSE_TOTAL: RouteResponse = (
        super::ROUTE_RESPONSE_TOTAL,
        Counter,
        "Total count of HTTP responses per route, classified by the route's response classes."
    );
    ROUTE_RESPONSE_LATENCY_MS: Route = (
        super::ROUTE_RESPONSE_LATENCY_MS,
        Histogram,
        "Time to response headers per route, retries included, in milliseconds."
    );
    ROUTE_RETRY_TOTAL: Route = (
        super::ROUTE_RETRY_TOTAL,
        Counter,
        "Requests sent again after a retryable failure."
    );
    ROUTE_RETRY_BUDGET_EXHAUSTED_TOTAL: Route = (
        super::ROUTE_RETRY_BUDGET_EXHAUSTED_TOTAL,
        Counter,
        "Retryable failures not retried because the retry budget was spent."
    );
    LEARNED_ROUTES_OVERFLOW_TOTAL: OwnReason = (
        super::LEARNED_ROUTES_OVERFLOW_TOTAL,
        Counter,
        "Requests counted under their authority's overflow learned route instead of a template of their own, by reason."
    );
    TCP_OPEN_TOTAL: Tcp = (super::TCP_OPEN_TOTAL, Counter, "Total count of opened connections.");
    TCP_CLOSE_TOTAL: Tcp = (super::TCP_CLOSE_TOTAL, Counter, "Total count of closed connections.");
    TCP_READ_BYTES_TOTAL: Tcp = (
        super::TCP_READ_BYTES_TOTAL,
        Counter,
        "Total count of bytes read from peers."
    );
    TCP_WRITE_BYTES_TOTAL: Tcp = (
        super::TCP_WRITE_BYTES_TOTAL,
        Counter,
        "Total count of bytes written to peers."
    );
    TCP_OPEN_CONNECTIONS: Tcp = (
        super::TCP_OPEN_CONNECTIONS,
        Gauge,
        "Number of currently open connections."
    );
    TELEMETRY_REPORTS_SENT_TOTAL: Own = (
        super::TELEMETRY_REPORTS_SENT_TOTAL,
        Counter,
        "Telemetry reports handed to the store's stream."
    );
    TELEMETRY_REPORTS_DROPPED_TOTAL: Own = (
        super::TELEMETRY_REPORTS_DROPPED_TOTAL,
        Counter,
        "Telemetry reports dropped because the store was slow or unreachable."
    );
    TAP_EVENTS_SAMPLED_TOTAL: Own = (
        super::TAP_EVENTS_SAMPLED_TOTAL,
        Counter,
        "Tap events sampled into the telemetry stream."
    );
    TAP_EVENTS_DROPPED_TOTAL: Own = (
        super::TAP_EVENTS_DROPPED_TOTAL,
        Counter,
        "Tap events dropped by rate limits or full buffers."
    );
    DESTINATION_PROFILES_REJECTED_TOTAL: Own = (
        super::DESTINATION_PROFILES_REJECTED_TOTAL,
        Counter,
        "Destination profiles refused as invalid; the previous profile stayed in force."
    );
    IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS: Own = (
        super::IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS,
        Gauge,
        "When the proxy's current certificate expires, in seconds since the Unix epoch."
    );
    IDENTITY_CERT_REFRESH_TOTAL: Own = (
        super::IDENTITY_CERT_REFRESH_TOTAL,
        Counter,
        "Certificates obtained from the identity service."
    );
    IDENTITY_CERT_REFRESH_FAILURES_TOTAL: Own = (
        super::IDENTITY_CERT_REFRESH_FAILURES_TOTAL,
        Counter,
        "Failed attempts to obtain a certificate (the current one stays in use)."
    );
    TLS_HANDSHAKE_FAILURES_TOTAL: Handshake = (
        super::TLS_HANDSHAKE_FAILURES_TOTAL,
        Counter,
        "mTLS handshakes between proxies that failed, by direction and reason."
    );
    INBOUND_HTTP_AUTHZ_ALLOW_TOTAL: Authz = (
        super::INBOUND_HTTP_AUTHZ_ALLOW_TOTAL,
        Counter,
        "Inbound HTTP requests that policy allowed (audit=\"true\": denials let through by audit mode)."
    );
    INBOUND_HTTP_AUTHZ_DENY_TOTAL: Authz = (
        super::INBOUND_HTTP_AUTHZ_DENY_TOTAL,
        Counter,
        "Inbound HTTP requests that policy denied."
    );
    INBOUND_TCP_AUTHZ_ALLOW_TOTAL: Authz = (
        super::INBOUND_TCP_AUTHZ_ALLOW_TOTAL,
        Counter,
        "Inbound connections that policy allowed (audit=\"true\": denials let through by audit mode)."
    );
    INBOUND_TCP_AUTHZ_DENY_TOTAL: Authz = (
        super::INBOUND_TCP_AUTHZ_DENY_TOTAL,
        Counter,
        "Inbound connections that policy denied."
    );
    METRICS_LABEL_SETS_OVERFLOW_TOTAL: LabelSets = (
        super::METRICS_LABEL_SETS_OVERFLOW_TOTAL,
        Counter,
        "Label sets counted into their family's overflow set instead of their own, by family and reason."
    );
    METRICS_LABEL_SETS_EVICTED_TOTAL: LabelSets = (
        super::METRICS_LABEL_SETS_EVICTED_TOTAL,
        Counter,
        "Label sets forgotten after idling, by family."
    );
    INBOUND_CONNECTIONS_REFUSED_TOTAL: OwnReason = (
        super::INBOUND_CONNECTIONS_REFUSED_TOTAL,
        Counter,
        "Inbound connections refused outright, by reason."
    );
    PROCESS_START_TIME_SECONDS: Own = (
        super::PROCESS_START_TIME_SECONDS,
        Gauge,
        "Start time of the process since the Unix epoch, in seconds."
    );
    IDENTITY_CERTS_ISSUED_TOTAL: Bare = (
        super::IDENTITY_CERTS_ISSUED_TOTAL,
        Counter,
        "Certificates the identity service issued."
    );
    IDENTITY_CERTIFY_REFUSED_TOTAL: Reason = (
        super::IDENTITY_CERTIFY_REFUSED_TOTAL,
        Counter,
        "Certify requests the identity service refused, by reason."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_described_once() {
        let mut names: Vec<_> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert!(ALL.iter().all(|m| m.help.ends_with('.')));
        assert_eq!(RESPONSE_LATENCY_MS.meta.kind, Kind::Histogram);
    }
}
