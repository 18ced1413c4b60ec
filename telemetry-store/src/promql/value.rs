//! What PromQL expressions evaluate to, over all steps of a query at once.
//!
//! An instant vector is kept per step (`Vec<Vec<Sample>>`), so every
//! operator and aggregation works one step at a time exactly as
//! Prometheus' `rangeEval` does; label sets are shared `Arc`s so a series'
//! labels are built once, not once per step.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use conduit_api::Labels;

use super::QueryError;
use crate::series::{LabelsExt, METRIC_NAME};

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

/// A range vector over all steps: the series' points and, per step, the
/// closed window `[mint, maxt]` a range function sees.
pub(crate) struct RangeVector {
    pub(crate) series: Vec<Series>,
    pub(crate) windows: Vec<(i64, i64)>,
    pub(crate) range_ms: i64,
}

impl RangeVector {
    /// Each series' points inside step `i`'s window.
    pub(crate) fn at_step(&self, i: usize) -> Vec<Series> {
        let (mint, maxt) = self.windows[i];
        self.series
            .iter()
            .filter_map(|s| {
                let points = window(&s.points, mint, maxt);
                (!points.is_empty()).then(|| Series {
                    metric: s.metric.clone(),
                    points: points.to_vec(),
                })
            })
            .collect()
    }
}

pub(crate) enum Value {
    /// One value per step.
    Scalar(Vec<f64>),
    /// One vector per step.
    Vector(Vec<Vec<Sample>>),
    /// A range vector: only function arguments, and instant queries, have
    /// one.
    Matrix(RangeVector),
    String(String),
}

/// The points with `mint <= t <= maxt` (Prometheus 2.x windows are closed).
pub(crate) fn window(points: &[(i64, f64)], mint: i64, maxt: i64) -> &[(i64, f64)] {
    let from = points.partition_point(|p| p.0 < mint);
    let to = points.partition_point(|p| p.0 <= maxt);
    &points[from..to.max(from)]
}

/// Caches "the same labels without `__name__`" per input label set, the
/// way Prometheus' `DropMetricName` cache does.
#[derive(Default)]
pub(crate) struct NameDropper {
    cache: HashMap<usize, Metric>,
}

impl NameDropper {
    pub(crate) fn drop(&mut self, m: &Metric) -> Metric {
        if m.get(METRIC_NAME).is_none() {
            return m.clone();
        }
        self.cache
            .entry(Arc::as_ptr(m) as usize)
            .or_insert_with(|| Arc::new(m.without_metric_name()))
            .clone()
    }
}

/// Prometheus refuses a result vector in which two samples have the same
/// labels (e.g. `rate()` over series that only differed by name).
pub(crate) fn check_unique(step: &[Sample]) -> Result<(), QueryError> {
    if step.len() < 2 {
        return Ok(());
    }
    let mut seen: HashSet<&Labels> = HashSet::with_capacity(step.len());
    for s in step {
        if !seen.insert(&s.metric) {
            return Err(QueryError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
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
