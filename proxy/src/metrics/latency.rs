//! Latency per label set: one HdrHistogram for the current telemetry
//! interval, folded into cumulative Prometheus buckets when the interval
//! rolls over.
//!
//! The store needs each interval's exact distribution (it merges them over
//! any window) while Prometheus needs cumulative `_bucket` counters; keeping
//! only the interval histogram plus 26 bucket counters serves both without
//! a second, ever-growing histogram per series. The buckets are derived from
//! the histogram, so both views agree on every recorded value.

use conduit_api::histogram::{
    self, LATENCY_BUCKETS as BUCKETS, LATENCY_VALUE_SCALE, MAX_LATENCY_US, SIGNIFICANT_DIGITS,
};
use conduit_api::proto::telemetry::v1::Exemplar;
use hdrhistogram::Histogram;

/// Exemplars waiting for an interval with latencies to go with. Each is a
/// request sent to the tap history, which the tap budgets already bound;
/// this only caps a series that stops seeing traffic.
const MAX_PENDING_EXEMPLARS: usize = 64;

pub(crate) struct LatencyHistogram {
    interval: Histogram<u64>,
    interval_sum_us: u64,
    exemplars: Vec<Exemplar>,
    /// Per-bucket (not yet cumulative) counts of every rolled-over interval.
    buckets: [u64; BUCKETS],
    sum_us: u64,
}

/// One interval's distribution, as the telemetry report carries it.
pub(crate) struct IntervalLatency {
    pub(crate) hdr: Vec<u8>,
    pub(crate) sum_ms: f64,
    pub(crate) exemplars: Vec<Exemplar>,
}

/// What `/metrics` shows: cumulative counts per `le` bound, `+Inf` last.
pub(crate) struct PromHistogram {
    pub(crate) cumulative: [u64; BUCKETS],
    pub(crate) sum_ms: f64,
}

impl PromHistogram {
    pub(crate) fn count(&self) -> u64 {
        self.cumulative[BUCKETS - 1]
    }
}

impl LatencyHistogram {
    pub(crate) fn new() -> Self {
        // Auto-resizing: the histogram grows to the largest latency actually
        // seen instead of allocating its full hour-long range up front.
        let interval = Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits are valid");
        Self {
            interval,
            interval_sum_us: 0,
            exemplars: Vec::new(),
            buckets: [0; BUCKETS],
            sum_us: 0,
        }
    }

    pub(crate) fn record_us(&mut self, micros: u64) {
        // `record` grows the auto-resizing histogram; the shared helper's
        // saturating record would clamp to its current size instead.
        if self
            .interval
            .record(micros.clamp(1, MAX_LATENCY_US))
            .is_err()
        {
            histogram::record_latency_us(&mut self.interval, micros);
        }
        self.interval_sum_us = self.interval_sum_us.saturating_add(micros);
    }

    /// A recorded request's latency, its id and when it ended.
    pub(crate) fn exemplar(&mut self, exemplar: Exemplar) {
        if self.exemplars.len() < MAX_PENDING_EXEMPLARS {
            self.exemplars.push(exemplar);
        }
    }

    /// The interval so far, in µs.
    pub(crate) fn interval(&self) -> &Histogram<u64> {
        &self.interval
    }

    /// Ends the interval: returns its distribution (when anything was
    /// recorded) and starts an empty one.
    pub(crate) fn rollover(&mut self) -> Option<IntervalLatency> {
        if self.interval.is_empty() {
            return None;
        }
        let hdr = match histogram::encode(&self.interval) {
            Ok(hdr) => hdr,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serialize a latency histogram; its interval is lost");
                Vec::new()
            }
        };
        histogram::add_to_buckets(&self.interval, LATENCY_VALUE_SCALE, &mut self.buckets);
        let sum_ms = self.interval_sum_us as f64 / 1000.0;
        self.sum_us = self.sum_us.saturating_add(self.interval_sum_us);
        self.interval.reset();
        self.interval_sum_us = 0;
        let exemplars = std::mem::take(&mut self.exemplars);
        (!hdr.is_empty()).then_some(IntervalLatency {
            hdr,
            sum_ms,
            exemplars,
        })
    }

    /// Everything recorded since the process started.
    pub(crate) fn prometheus(&self) -> PromHistogram {
        let mut buckets = self.buckets;
        histogram::add_to_buckets(&self.interval, LATENCY_VALUE_SCALE, &mut buckets);
        PromHistogram {
            cumulative: histogram::cumulative(&buckets),
            sum_ms: self.sum_us.saturating_add(self.interval_sum_us) as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_survive_rollover_and_interval_is_exact() {
        let mut h = LatencyHistogram::new();
        for us in [500, 1_000, 1_001, 7_000, 60_000_000] {
            h.record_us(us);
        }
        let interval = h.rollover().expect("values were recorded");
        let decoded = histogram::decode(&interval.hdr).unwrap();
        assert_eq!(decoded.len(), 5);
        assert!((interval.sum_ms - 60_009.501).abs() < 1e-6);
        assert!(h.rollover().is_none(), "the next interval starts empty");

        h.record_us(2_500);
        let p = h.prometheus();
        assert_eq!(p.count(), 6);
        // le=1: 500 µs and 1000 µs; le=2: +1001 µs; le=3: +2500 µs.
        assert_eq!(&p.cumulative[..3], &[2, 3, 4]);
        // 7 ms lands in le=10 (index 5); 60 s only in +Inf.
        assert_eq!(p.cumulative[5], 5);
        assert_eq!(p.cumulative[BUCKETS - 2], 5);
        assert!((p.sum_ms - 60_012.001).abs() < 1e-6);
    }
}
