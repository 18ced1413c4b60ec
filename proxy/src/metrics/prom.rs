//! Prometheus text exposition (format 0.0.4) of the registry, with
//! Linkerd's metric names so existing dashboards and queries work.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use conduit_api::metrics::family::{self, Meta};
use conduit_api::metrics::{self as names, LATENCY_BUCKETS_MS, label};

use super::{
    HttpStats, Registry, SeriesLabels, TcpStats, eviction_labels, handshake_labels,
    overflow_labels, refused_labels,
};

pub(super) fn render(reg: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    let http = reg.http_series();
    http_family(&mut out, &http, Series::Endpoint);
    let routes = reg.route_series();
    http_family(&mut out, &routes, Series::Route);
    tcp_family(&mut out, reg);
    proxy_family(&mut out, reg);
    label_set_family(&mut out, reg);
    identity_family(&mut out, reg);
    authz_family(&mut out, reg);
    out
}

/// Policy decisions, one family per protocol and outcome.
fn authz_family(out: &mut String, reg: &Registry) {
    let counts = reg.authz_counts();
    let local = reg.local_labels();
    let mut last = "";
    for (key, n) in &counts {
        let meta = key.family();
        if meta.name != last {
            header(out, meta);
            last = meta.name;
        }
        sample(out, meta.name, local, &key.labels(), *n);
    }
}

/// What the label set budget refused and what idled out.
fn label_set_family(out: &mut String, reg: &Registry) {
    let local = reg.local_labels();
    let overflow = family::METRICS_LABEL_SETS_OVERFLOW_TOTAL.meta;
    header(out, overflow);
    let overflow = overflow.name;
    for ((family, reason), n) in reg.overflow_counts() {
        sample(out, overflow, local, &overflow_labels(family, reason), n);
    }
    let evicted = family::METRICS_LABEL_SETS_EVICTED_TOTAL.meta;
    header(out, evicted);
    let evicted = evicted.name;
    for (family, n) in reg.eviction_counts() {
        sample(out, evicted, local, &eviction_labels(family), n);
    }
}

/// The certificate's expiry, its renewals, and failed mTLS handshakes;
/// nothing while identity is off.
fn identity_family(out: &mut String, reg: &Registry) {
    let Some(creds) = reg.credentials() else {
        return;
    };
    let local = reg.local_labels();
    if let Some(expiry) = creds.expiry_unix() {
        header(out, family::IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS.meta);
        sample_f64(
            out,
            names::IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS,
            local,
            expiry as f64,
        );
    }
    for (meta, value) in [
        (family::IDENTITY_CERT_REFRESH_TOTAL.meta, &creds.refreshes),
        (
            family::IDENTITY_CERT_REFRESH_FAILURES_TOTAL.meta,
            &creds.refresh_failures,
        ),
    ] {
        header(out, meta);
        sample(out, meta.name, local, &[], value.load(Relaxed));
    }
    header(out, family::TLS_HANDSHAKE_FAILURES_TOTAL.meta);
    for ((direction, reason), n) in reg.handshake_failures() {
        let extra = handshake_labels(direction, reason);
        sample(out, names::TLS_HANDSHAKE_FAILURES_TOTAL, local, &extra, n);
    }
}

#[derive(Copy, Clone, PartialEq)]
enum Series {
    Endpoint,
    Route,
}

fn http_family(out: &mut String, series: &[std::sync::Arc<HttpStats>], kind: Series) {
    if series.is_empty() {
        return;
    }
    let (requests, responses, latency) = match kind {
        Series::Endpoint => (
            family::REQUEST_TOTAL.meta,
            family::RESPONSE_TOTAL.meta,
            family::RESPONSE_LATENCY_MS.meta,
        ),
        Series::Route => (
            family::ROUTE_REQUEST_TOTAL.meta,
            family::ROUTE_RESPONSE_TOTAL.meta,
            family::ROUTE_RESPONSE_LATENCY_MS.meta,
        ),
    };

    header(out, requests);
    let requests = requests.name;
    for s in series {
        sample(out, requests, s.labels(), &[], s.requests());
    }

    header(out, responses);
    let responses = responses.name;
    for s in series {
        for (key, n) in s.responses() {
            let labels = key.labels();
            let extra: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (*n, v.as_str())).collect();
            sample(out, responses, s.labels(), &extra, n);
        }
    }

    header(out, latency);
    let latency = latency.name;
    let bucket = format!("{latency}_bucket");
    let sum = format!("{latency}_sum");
    let count = format!("{latency}_count");
    for s in series {
        let h = s.prometheus_latency();
        for (le, n) in LATENCY_BUCKETS_MS.iter().zip(h.cumulative) {
            let le = le.to_string();
            sample(out, &bucket, s.labels(), &[(label::LE, &le)], n);
        }
        sample(out, &bucket, s.labels(), &[(label::LE, "+Inf")], h.count());
        sample_f64(out, &sum, s.labels(), h.sum_ms);
        sample(out, &count, s.labels(), &[], h.count());
    }

    if kind == Series::Route {
        header(out, family::ROUTE_RETRY_TOTAL.meta);
        for s in series {
            sample(out, names::ROUTE_RETRY_TOTAL, s.labels(), &[], s.retries());
        }
        header(out, family::ROUTE_RETRY_BUDGET_EXHAUSTED_TOTAL.meta);
        for s in series {
            let n = s.retries_skipped();
            sample(
                out,
                names::ROUTE_RETRY_BUDGET_EXHAUSTED_TOTAL,
                s.labels(),
                &[],
                n,
            );
        }
    }
}

/// A TCP family, and how to read its value from a series.
type TcpFamily = (Meta, fn(&TcpStats) -> u64);

fn tcp_family(out: &mut String, reg: &Registry) {
    let series = reg.tcp_series();
    if series.is_empty() {
        return;
    }
    let families: [TcpFamily; 5] = [
        (family::TCP_OPEN_TOTAL.meta, |s| s.open_total.load(Relaxed)),
        (family::TCP_CLOSE_TOTAL.meta, |s| {
            s.close_total.load(Relaxed)
        }),
        (family::TCP_READ_BYTES_TOTAL.meta, |s| {
            s.read_bytes.load(Relaxed)
        }),
        (family::TCP_WRITE_BYTES_TOTAL.meta, |s| {
            s.write_bytes.load(Relaxed)
        }),
        (family::TCP_OPEN_CONNECTIONS.meta, |s| s.open_connections()),
    ];
    for (meta, value) in families {
        header(out, meta);
        for s in &series {
            if let Some(labels) = s.labels() {
                sample(out, meta.name, labels, &[], value(s));
            }
        }
    }
}

fn proxy_family(out: &mut String, reg: &Registry) {
    let local = reg.local_labels();
    let p = &reg.proxy;
    let counters = [
        (
            family::TELEMETRY_REPORTS_SENT_TOTAL,
            &p.telemetry_reports_sent,
        ),
        (
            family::TELEMETRY_REPORTS_DROPPED_TOTAL,
            &p.telemetry_reports_dropped,
        ),
        (family::TAP_EVENTS_SAMPLED_TOTAL, &p.tap_events_sampled),
        (family::TAP_EVENTS_DROPPED_TOTAL, &p.tap_events_dropped),
        (family::TAP_EVENTS_RECORDED_TOTAL, &p.tap_events_recorded),
        (
            family::TAP_RECORDER_OVERFLOW_TOTAL,
            &p.tap_recorder_overflow,
        ),
        (
            family::DESTINATION_PROFILES_REJECTED_TOTAL,
            &p.profiles_rejected,
        ),
    ];
    for (f, value) in counters {
        header(out, f.meta);
        sample(out, f.name(), local, &[], value.load(Relaxed));
    }
    let refused = family::INBOUND_CONNECTIONS_REFUSED_TOTAL.meta;
    header(out, refused);
    let n = p.inbound_proxy_port_refused.load(Relaxed);
    sample(out, refused.name, local, &refused_labels(), n);
    let learned = family::LEARNED_ROUTES_OVERFLOW_TOTAL.meta;
    header(out, learned);
    for (labels, n) in p.learned_overflow() {
        sample(out, learned.name, local, &labels, n);
    }
    let start_time = family::PROCESS_START_TIME_SECONDS.meta;
    header(out, start_time);
    let start = reg.process_start_unix_ms() as f64 / 1000.0;
    sample_f64(out, start_time.name, local, start);
}

fn header(out: &mut String, meta: Meta) {
    let _ = writeln!(out, "{meta}");
}

fn sample(out: &mut String, name: &str, labels: &SeriesLabels, extra: &[(&str, &str)], v: u64) {
    series_name(out, name, labels, extra);
    let _ = writeln!(out, " {v}");
}

fn sample_f64(out: &mut String, name: &str, labels: &SeriesLabels, v: f64) {
    series_name(out, name, labels, &[]);
    let _ = writeln!(out, " {v}");
}

fn series_name(out: &mut String, name: &str, labels: &SeriesLabels, extra: &[(&str, &str)]) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels.prom());
    let mut first = labels.prom().is_empty();
    for (n, v) in extra.iter().filter(|(_, v)| !v.is_empty()) {
        if !first {
            out.push(',');
        }
        first = false;
        push_label(out, n, v);
    }
    out.push('}');
}

/// `name="value"` with the value escaped as the exposition format requires.
pub(super) fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use conduit_api::Classification;

    use super::super::{Registry, ResponseKey};

    #[test]
    fn renders_linkerd_names_with_escaped_labels() {
        let reg = Registry::new("demo", "web", "web-0", "");
        let s = reg.http(
            conduit_api::Direction::Inbound,
            &conduit_api::metrics::labels::Endpoint::authority("a\"b:80"),
        );
        s.request();
        s.latency(Duration::from_micros(1_500));
        s.response(ResponseKey {
            status: 200,
            grpc_status: None,
            class: Classification::Success,
            error_reason: None,
        });
        let text = reg.render_prometheus();
        let base = r#"namespace="demo",deployment="web",pod="web-0",direction="inbound",authority="a\"b:80""#;
        assert!(
            text.contains(&format!("request_total{{{base}}} 1\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "response_total{{{base},status_code=\"200\",classification=\"success\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "response_latency_ms_bucket{{{base},le=\"1\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "response_latency_ms_bucket{{{base},le=\"2\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "response_latency_ms_bucket{{{base},le=\"+Inf\"}} 1\n"
        )));
        assert!(text.contains(&format!("response_latency_ms_sum{{{base}}} 1.5\n")));
        assert!(text.contains(&format!("response_latency_ms_count{{{base}}} 1\n")));
        assert!(text.contains("# TYPE response_latency_ms histogram\n"));
    }
}
