//! What PromQL expressions evaluate to, over all steps of a query at once.
//!
//! An instant vector is kept per step (`Vec<Vec<Sample>>`), so every
//! operator and aggregation works one step at a time exactly as
//! Prometheus' `rangeEval` does; label sets are shared `Arc`s so a series'
//! labels are built once, not once per step.

use std::sync::Arc;

use conduit_api::Labels;

pub(crate) type Metric = Arc<Labels>;

#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) metric: Metric,
    /// The sample's own timestamp where it matters (`timestamp()` of a
    /// selector), otherwise the step's.
    pub(crate) t: i64,
    pub(crate) v: f64,
}

/// A series with its points, as range vectors and query results hold it.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub(crate) metric: Metric,
    pub(crate) points: Vec<(i64, f64)>,
}

pub(crate) enum Value {
    /// One value per step.
    Scalar(Vec<f64>),
    /// One vector per step.
    Vector(Vec<Vec<Sample>>),
    /// A range vector at a single evaluation time (instant queries only).
    Matrix(Vec<Series>),
    String(String),
}

/// A query's answer, shaped like the Prometheus API's `data`.
#[derive(Debug)]
pub(crate) enum QueryValue {
    Scalar(i64, f64),
    String(i64, String),
    Vector(Vec<(Metric, i64, f64)>),
    Matrix(Vec<Series>),
}

/// Formats a value the way Prometheus' API does (Go's
/// `strconv.FormatFloat(v, 'f', -1, 64)`): shortest round-trip digits,
/// never an exponent, `NaN`, `+Inf`, `-Inf`.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// Prometheus' stale marker: a NaN with a specific payload, written when a
/// series disappears; selectors treat it as "no value".
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub(crate) fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(1e-7), "0.0000001");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    }
}
