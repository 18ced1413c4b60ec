//! The store's `Golden` as PromQL over the series the proxies export:
//! success and failure counts are `increase(response_total[w])` by
//! `classification`, latency quantiles `histogram_quantile` over
//! `increase(response_latency_ms_bucket[w])`, open connections the latest
//! `tcp_open_connections`. Counts use the backend's extrapolation at the
//! window's edges and quantiles are interpolated within a bucket, so they
//! agree with the store's exact figures to about a sample interval and a
//! bucket.

use std::collections::BTreeMap;
use std::time::Duration;

use conduit_api::Classification;
use conduit_api::metrics::family;
use conduit_api::metrics::label;
use conduit_api::metrics::labels::{Label, Response};
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::store::v1 as store;
use tonic::Status;

use super::prometheus::Client;

/// The store's default window, when a request gives none.
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

/// The body of a double-quoted PromQL string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A series selector for `matchers`, of metric `name` when given.
pub(super) fn selector(matchers: &[store::Matcher], name: Option<&str>) -> String {
    let ops = |op| match store::matcher::Op::try_from(op) {
        Ok(store::matcher::Op::NotEqual) => "!=",
        Ok(store::matcher::Op::Regex) => "=~",
        Ok(store::matcher::Op::NotRegex) => "!~",
        _ => "=",
    };
    let terms: Vec<String> = matchers
        .iter()
        .map(|m| format!("{}{}{}", m.name, ops(m.op), quoted(&m.value)))
        .collect();
    format!("{}{{{}}}", name.unwrap_or(""), terms.join(","))
}

/// The queries answering one `Golden` request.
struct Queries {
    counts: String,
    quantiles: [String; 3],
    tcp: String,
}

fn queries(req: &store::GoldenRequest, window_ms: i64) -> Queries {
    let by = |extra: Option<&str>| {
        let mut labels: Vec<&str> = req.group_by.iter().map(String::as_str).collect();
        labels.extend(extra);
        labels.join(", ")
    };
    let of = |name: &str| selector(&req.matchers, Some(name));
    let range = format!("[{window_ms}ms]");
    let counts = format!(
        "sum by ({}) (increase({}{range}))",
        by(Some(Response::Classification.name())),
        of(family::RESPONSE_TOTAL.name())
    );
    let buckets = format!(
        "sum by ({}) (increase({}{range}))",
        by(Some(label::LE)),
        of(&format!("{}_bucket", family::RESPONSE_LATENCY_MS.name()))
    );
    let quantiles = QUANTILES.map(|q| format!("histogram_quantile({q}, {buckets})"));
    let tcp = format!(
        "sum by ({}) ({})",
        by(None),
        of(family::TCP_OPEN_CONNECTIONS.name())
    );
    Queries {
        counts,
        quantiles,
        tcp,
    }
}

/// A row's key: its group labels that are set, in name order, as the
/// store groups them.
type Group = Vec<(String, String)>;

fn group_of(series: &store::Series, group_by: &[String]) -> Group {
    let mut group: Group = group_by
        .iter()
        .filter_map(|name| {
            let l = series.labels.iter().find(|l| l.name == *name)?;
            (!l.value.is_empty()).then(|| (l.name.clone(), l.value.clone()))
        })
        .collect();
    group.sort();
    group
}

fn row<'a>(
    rows: &'a mut BTreeMap<Group, store::GoldenRow>,
    series: &store::Series,
    group_by: &[String],
) -> &'a mut store::GoldenRow {
    rows.entry(group_of(series, group_by)).or_default()
}

fn value(series: &store::Series) -> f64 {
    series
        .samples
        .last()
        .map(|s| s.value)
        .filter(|v| v.is_finite())
        .unwrap_or(0.0)
}

pub(super) async fn answer(
    client: &Client,
    req: store::GoldenRequest,
) -> Result<store::GoldenResponse, Status> {
    let end = if req.end_unix_ms > 0 {
        req.end_unix_ms
    } else {
        crate::store::now_unix_ms()
    };
    let window = req
        .window
        .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
        .unwrap_or(DEFAULT_WINDOW);
    let start = if req.start_unix_ms > 0 {
        req.start_unix_ms
    } else {
        end - window.as_millis() as i64
    };
    if start >= end {
        return Err(Status::invalid_argument(
            "the window must end after it starts",
        ));
    }
    let q = queries(&req, end - start);
    let [p50, p95, p99] = &q.quantiles;
    let (counts, p50, p95, p99, tcp) = tokio::try_join!(
        client.instant(&q.counts, end),
        client.instant(p50, end),
        client.instant(p95, end),
        client.instant(p99, end),
        client.instant(&q.tcp, end),
    )?;
    let mut rows: BTreeMap<Group, store::GoldenRow> = BTreeMap::new();
    let mut totals: BTreeMap<Group, (f64, f64)> = BTreeMap::new();
    for s in &counts {
        let class = family::RESPONSE_TOTAL.label(&s.labels, Response::Classification);
        let total = totals.entry(group_of(s, &req.group_by)).or_default();
        if class == Classification::Failure.as_str() {
            total.1 += value(s);
        } else {
            total.0 += value(s);
        }
        row(&mut rows, s, &req.group_by);
    }
    for s in &p50 {
        row(&mut rows, s, &req.group_by).latency_p50_ms = value(s);
    }
    for s in &p95 {
        row(&mut rows, s, &req.group_by).latency_p95_ms = value(s);
    }
    for s in &p99 {
        row(&mut rows, s, &req.group_by).latency_p99_ms = value(s);
    }
    for s in &tcp {
        row(&mut rows, s, &req.group_by).tcp_open_connections = value(s);
    }
    let secs = (end - start) as f64 / 1000.0;
    let rows = rows
        .into_iter()
        .map(|(group, mut r)| {
            let (success, failure) = totals.get(&group).copied().unwrap_or_default();
            r.group = group
                .into_iter()
                .map(|(name, value)| mesh::Label { name, value })
                .collect();
            r.success_count = success.round() as u64;
            r.failure_count = failure.round() as u64;
            r.requests_per_second = (success + failure) / secs;
            r
        })
        .collect();
    Ok(store::GoldenResponse {
        rows,
        start_unix_ms: start,
        end_unix_ms: end,
        // Bucket interpolation, not histogram windows: no such interval.
        latency_resolution_ms: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::metrics::labels::Http;

    #[test]
    fn golden_requests_become_promql_over_the_exported_series() {
        let f = family::RESPONSE_LATENCY_MS;
        let req = store::GoldenRequest {
            matchers: vec![
                f.eq(Http::Namespace, "de\"mo"),
                f.eq(Http::Direction, "inbound"),
            ],
            group_by: vec!["namespace".into(), "deployment".into()],
            ..Default::default()
        };
        let q = queries(&req, 60_000);
        let sel = r#"{namespace="de\"mo",direction="inbound"}"#;
        assert_eq!(
            q.counts,
            format!(
                "sum by (namespace, deployment, classification) (increase(response_total{sel}[60000ms]))"
            )
        );
        assert_eq!(
            q.quantiles[1],
            format!(
                "histogram_quantile(0.95, sum by (namespace, deployment, le) (increase(response_latency_ms_bucket{sel}[60000ms])))"
            )
        );
        assert_eq!(
            q.tcp,
            format!("sum by (namespace, deployment) (tcp_open_connections{sel})")
        );
        let everything = queries(&store::GoldenRequest::default(), 1000);
        assert!(
            everything
                .tcp
                .starts_with("sum by () (tcp_open_connections{})"),
            "{}",
            everything.tcp
        );
    }
}
