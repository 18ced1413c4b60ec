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

/// How far apart (relative) success rate and RPS may be.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub success_rate: f64,
    pub rps: f64,
}

impl Tolerance {
    /// Both within `relative`.
    pub const fn both(relative: f64) -> Self {
        Self {
            success_rate: relative,
            rps: relative,
        }
    }
}

/// Over a window of 15 s or more.
pub const LONG_WINDOW: Tolerance = Tolerance::both(0.01);

/// Over a window of a few seconds, where the engines' extrapolation to its
/// edges weighs more.
pub const SHORT_WINDOW: Tolerance = Tolerance {
    success_rate: 0.02,
    rps: 0.05,
};

/// Success rate and RPS within `tolerance`, quantiles within a bucket.
pub fn agree(what: &str, ours: &Golden, theirs: &Golden, tolerance: Tolerance) {
    within(
        &format!("{what} success rate"),
        ours.success_rate,
        theirs.success_rate,
        tolerance.success_rate,
    );
    within(&format!("{what} RPS"), ours.rps, theirs.rps, tolerance.rps);
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
