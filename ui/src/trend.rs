//! Golden-metric time series of one Deployment: what the Deployment
//! page charts and the overview's sparklines draw.
//!
//! History comes from `/api/v1/stat/history` when the view opens; after
//! that each live `stat` event appends a point. Every live point is the
//! Deployment's golden metrics over the trailing minute at that moment,
//! the same figures `conduit stat` prints, so history and live points line
//! up (a fixed window's points each cover their own step instead). A window without requests has a request rate of zero but no success
//! rate or latency: those points are gaps, not zeros.

use conduit_api::json::{Golden, StatPoint};
use conduit_chart::series::{Point, Series};

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Trend {
    pub(crate) success: Series,
    pub(crate) rps: Series,
    pub(crate) p50: Series,
    pub(crate) p95: Series,
    pub(crate) p99: Series,
}

impl Trend {
    fn series_mut(&mut self) -> [&mut Series; 5] {
        [
            &mut self.success,
            &mut self.rps,
            &mut self.p50,
            &mut self.p95,
            &mut self.p99,
        ]
    }

    fn values(m: Option<&Golden>) -> [Option<f64>; 5] {
        match m {
            Some(m) => [
                Some(m.success_rate),
                Some(m.rps),
                Some(m.latency_ms_p50),
                Some(m.latency_ms_p95),
                Some(m.latency_ms_p99),
            ],
            None => [None, Some(0.0), None, None, None],
        }
    }

    /// A live point at `t` (Unix ms); see [`Series::push`] for `spacing_ms`.
    pub(crate) fn push(&mut self, t: i64, m: Option<&Golden>, spacing_ms: i64) {
        for (s, v) in self.series_mut().into_iter().zip(Self::values(m)) {
            s.push(Point::new(t, v), spacing_ms);
        }
    }

    pub(crate) fn set_history(&mut self, points: &[StatPoint]) {
        let mut columns: [Vec<Point>; 5] = Default::default();
        for p in points {
            for (col, v) in columns.iter_mut().zip(Self::values(p.metrics.as_ref())) {
                col.push(Point::new(p.time_unix_ms, v));
            }
        }
        for (s, col) in self.series_mut().into_iter().zip(columns) {
            s.set_history(col);
        }
    }

    /// Drops points older than `oldest_ms`.
    pub(crate) fn trim(&mut self, oldest_ms: i64) {
        for s in self.series_mut() {
            s.trim(oldest_ms);
        }
    }
}
