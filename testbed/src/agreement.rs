//! How close an external engine's figures must come to the store's own:
//! success rate and RPS within a relative tolerance, latency quantiles
//! within one histogram bucket (the engine only has the buckets, the store
//! the proxies' HdrHistograms).

use conduit_api::json::{Golden, Stat};
use conduit_api::metrics::LATENCY_BUCKETS_MS;

/// Which latency bucket `ms` falls in.
pub fn bucket(ms: f64) -> usize {
    LATENCY_BUCKETS_MS
        .iter()
        .position(|&le| ms <= le)
        .unwrap_or(LATENCY_BUCKETS_MS.len())
}

/// `theirs` is within `tolerance` (relative) of `ours`.
pub fn within(what: &str, ours: f64, theirs: f64, tolerance: f64) {
    let off = (ours - theirs).abs() / ours.abs().max(f64::MIN_POSITIVE);
    assert!(
        off <= tolerance,
        "{what}: embedded {ours} vs external {theirs} ({:.2} % apart)",
        off * 100.0
    );
}

/// Success rate and RPS within `tolerance`, quantiles within a bucket.
pub fn agree(what: &str, ours: &Golden, theirs: &Golden, tolerance: f64) {
    within(
        &format!("{what} success rate"),
        ours.success_rate,
        theirs.success_rate,
        tolerance,
    );
    within(&format!("{what} RPS"), ours.rps, theirs.rps, tolerance);
    for (q, a, b) in [
        ("p50", ours.latency_ms_p50, theirs.latency_ms_p50),
        ("p95", ours.latency_ms_p95, theirs.latency_ms_p95),
        ("p99", ours.latency_ms_p99, theirs.latency_ms_p99),
    ] {
        assert!(
            bucket(a).abs_diff(bucket(b)) <= 1,
            "{what} {q}: embedded {a} ms vs external {b} ms, more than a bucket apart"
        );
    }
}

/// The figures of Deployment `name` in a `stat` answer.
pub fn row<'a>(stat: &'a Stat, name: &str) -> &'a Golden {
    stat.rows
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| r.metrics.as_ref())
        .unwrap_or_else(|| panic!("no {name} figures: {stat:#?}"))
}
