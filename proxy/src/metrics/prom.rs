//! Prometheus text exposition (format 0.0.4) of the registry, with
//! Linkerd's metric names so existing dashboards and queries work.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use conduit_api::metrics::{self as names, LATENCY_BUCKETS_MS, label};

use super::{HttpStats, Registry, SeriesLabels, TcpStats};

pub(super) fn render(reg: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    let http = reg.http_series();
    http_family(&mut out, &http, Family::Endpoint);
    let routes = reg.route_series();
    http_family(&mut out, &routes, Family::Route);
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
        let metric = key.metric();
        if metric != last {
            header(out, metric, "counter", "Inbound policy decisions.");
            last = metric;
        }
        sample(out, metric, local, &key.labels(), *n);
    }
}

/// What the label set budget refused and what idled out.
fn label_set_family(out: &mut String, reg: &Registry) {
    let local = reg.local_labels();
    let overflow = names::METRICS_LABEL_SETS_OVERFLOW_TOTAL;
    header(
        out,
        overflow,
        "counter",
        "Label sets counted into their family's overflow set instead of their own, by family and reason.",
    );
    for ((family, reason), n) in reg.overflow_counts() {
        let extra = [(label::FAMILY, family), (label::REASON, reason)];
        sample(out, overflow, local, &extra, n);
    }
    let evicted = names::METRICS_LABEL_SETS_EVICTED_TOTAL;
    header(
        out,
        evicted,
        "counter",
        "Label sets forgotten after idling, by family.",
    );
    for (family, n) in reg.eviction_counts() {
        sample(out, evicted, local, &[(label::FAMILY, family)], n);
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
        header(
            out,
            names::IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS,
            "gauge",
            "When the proxy's current certificate expires, in seconds since the Unix epoch.",
        );
        sample_f64(
            out,
            names::IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS,
            local,
            expiry as f64,
        );
    }
    for (name, help, value) in [
        (
            names::IDENTITY_CERT_REFRESH_TOTAL,
            "Certificates obtained from the identity service.",
            &creds.refreshes,
        ),
        (
            names::IDENTITY_CERT_REFRESH_FAILURES_TOTAL,
            "Failed attempts to obtain a certificate (the current one stays in use).",
            &creds.refresh_failures,
        ),
    ] {
        header(out, name, "counter", help);
        sample(out, name, local, &[], value.load(Relaxed));
    }
    header(
        out,
        names::TLS_HANDSHAKE_FAILURES_TOTAL,
        "counter",
        "mTLS handshakes with peer proxies that failed, by direction and reason.",
    );
    for ((direction, reason), n) in reg.handshake_failures() {
        let extra = [
            (label::DIRECTION, direction.as_str()),
            (label::REASON, reason),
        ];
        sample(out, names::TLS_HANDSHAKE_FAILURES_TOTAL, local, &extra, n);
    }
}

#[derive(Copy, Clone, PartialEq)]
enum Family {
    Endpoint,
    Route,
}

fn http_family(out: &mut String, series: &[std::sync::Arc<HttpStats>], family: Family) {
    if series.is_empty() {
        return;
    }
    let (requests, responses, latency) = match family {
        Family::Endpoint => (
            names::REQUEST_TOTAL,
            names::RESPONSE_TOTAL,
            names::RESPONSE_LATENCY_MS,
        ),
        Family::Route => (
            names::ROUTE_REQUEST_TOTAL,
            names::ROUTE_RESPONSE_TOTAL,
            names::ROUTE_RESPONSE_LATENCY_MS,
        ),
    };

    header(out, requests, "counter", "Total count of HTTP requests.");
    for s in series {
        sample(out, requests, s.labels(), &[], s.requests());
    }

    header(out, responses, "counter", "Total count of HTTP responses.");
    for s in series {
        for (key, n) in s.responses() {
            let status = key.status.to_string();
            let grpc = key.grpc_status.map(|g| g.to_string()).unwrap_or_default();
            let extra = [
                (label::STATUS_CODE, status.as_str()),
                (label::GRPC_STATUS, grpc.as_str()),
                (label::CLASSIFICATION, key.class.as_str()),
            ];
            sample(out, responses, s.labels(), &extra, n);
        }
    }

    header(
        out,
        latency,
        "histogram",
        "Time between a request's headers arriving and its response's headers, in milliseconds.",
    );
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

    if family == Family::Route {
        header(
            out,
            names::ROUTE_RETRY_TOTAL,
            "counter",
            "Requests sent again after a retryable failure.",
        );
        for s in series {
            sample(out, names::ROUTE_RETRY_TOTAL, s.labels(), &[], s.retries());
        }
        header(
            out,
            names::ROUTE_RETRY_BUDGET_EXHAUSTED_TOTAL,
            "counter",
            "Retryable failures not retried because the retry budget was spent.",
        );
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

/// Name, type, help, and how to read the value.
type TcpFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TcpStats) -> u64,
);

fn tcp_family(out: &mut String, reg: &Registry) {
    let series = reg.tcp_series();
    if series.is_empty() {
        return;
    }
    let families: [TcpFamily; 5] = [
        (
            names::TCP_OPEN_TOTAL,
            "counter",
            "Total count of opened connections.",
            |s| s.open_total.load(Relaxed),
        ),
        (
            names::TCP_CLOSE_TOTAL,
            "counter",
            "Total count of closed connections.",
            |s| s.close_total.load(Relaxed),
        ),
        (
            names::TCP_READ_BYTES_TOTAL,
            "counter",
            "Total count of bytes read from peers.",
            |s| s.read_bytes.load(Relaxed),
        ),
        (
            names::TCP_WRITE_BYTES_TOTAL,
            "counter",
            "Total count of bytes written to peers.",
            |s| s.write_bytes.load(Relaxed),
        ),
        (
            names::TCP_OPEN_CONNECTIONS,
            "gauge",
            "Number of currently open connections.",
            |s| s.open_connections(),
        ),
    ];
    for (name, kind, help, value) in families {
        header(out, name, kind, help);
        for s in &series {
            if let Some(labels) = s.labels() {
                sample(out, name, labels, &[], value(s));
            }
        }
    }
}

fn proxy_family(out: &mut String, reg: &Registry) {
    let local = reg.local_labels();
    let p = &reg.proxy;
    let counters = [
        (
            names::TELEMETRY_REPORTS_SENT_TOTAL,
            "Telemetry reports handed to the store's stream.",
            &p.telemetry_reports_sent,
        ),
        (
            names::TELEMETRY_REPORTS_DROPPED_TOTAL,
            "Telemetry reports dropped because the store was slow or unreachable.",
            &p.telemetry_reports_dropped,
        ),
        (
            names::TAP_EVENTS_SAMPLED_TOTAL,
            "Tap events sampled into the telemetry stream.",
            &p.tap_events_sampled,
        ),
        (
            names::TAP_EVENTS_DROPPED_TOTAL,
            "Tap events dropped by rate limits or full buffers.",
            &p.tap_events_dropped,
        ),
        (
            names::DESTINATION_PROFILES_REJECTED_TOTAL,
            "Destination profiles refused as invalid; the previous profile stayed in force.",
            &p.profiles_rejected,
        ),
    ];
    for (name, help, value) in counters {
        header(out, name, "counter", help);
        sample(out, name, local, &[], value.load(Relaxed));
    }
    let refused = names::INBOUND_CONNECTIONS_REFUSED_TOTAL;
    header(
        out,
        refused,
        "counter",
        "Inbound connections refused outright, by reason.",
    );
    let reason = [(label::REASON, names::REFUSED_REASON_PROXY_PORT)];
    let n = p.inbound_proxy_port_refused.load(Relaxed);
    sample(out, refused, local, &reason, n);
    header(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    let start = reg.process_start_unix_ms() as f64 / 1000.0;
    sample_f64(out, "process_start_time_seconds", local, start);
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
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
        let reg = Registry::new("demo", "web", "web-0");
        let s = reg.http(&[("direction", "inbound"), ("authority", "a\"b:80")]);
        s.request();
        s.latency(Duration::from_micros(1_500));
        s.response(ResponseKey {
            status: 200,
            grpc_status: None,
            class: Classification::Success,
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
