//! Histogram windows: one interval's HdrHistogram kept sparse (only the
//! buckets that counted something), so any range of windows merges back
//! into a histogram whose quantiles are exact to the proxies' precision.
//!
//! A dense 3-digit histogram up to an hour is ~180 KB; a window of a busy
//! service is a few hundred bytes of delta-varint (value, count) pairs.

use hdrhistogram::Histogram;

use crate::encoding::varint::{BadVarint, get_uvarint, put_uvarint};

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Window {
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    pub(crate) count: u64,
    /// Exact sum of the values in the metric's unit.
    pub(crate) sum: f64,
    /// Recorded value × scale = the metric's unit.
    pub(crate) scale: f64,
    /// Ascending (highest equivalent value, count) pairs, delta-varint.
    pub(crate) buckets: Box<[u8]>,
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt histogram window")]
pub(crate) struct CorruptWindow;

impl From<BadVarint> for CorruptWindow {
    fn from(_: BadVarint) -> Self {
        CorruptWindow
    }
}

impl Window {
    pub(crate) fn from_histogram(
        start_ms: i64,
        end_ms: i64,
        h: &Histogram<u64>,
        sum: f64,
        scale: f64,
    ) -> Self {
        let mut buckets = Vec::new();
        let mut prev = 0u64;
        for it in h.iter_recorded() {
            let value = it.value_iterated_to();
            put_uvarint(&mut buckets, value - prev);
            put_uvarint(&mut buckets, it.count_at_value());
            prev = value;
        }
        Self {
            start_ms,
            end_ms,
            count: h.len(),
            sum,
            scale,
            buckets: buckets.into_boxed_slice(),
        }
    }

    /// The (value, count) pairs in recorded units.
    pub(crate) fn pairs(&self) -> Result<Vec<(u64, u64)>, CorruptWindow> {
        let mut out = Vec::new();
        let mut buf: &[u8] = &self.buckets;
        let mut value = 0u64;
        while !buf.is_empty() {
            value = value
                .checked_add(get_uvarint(&mut buf)?)
                .ok_or(CorruptWindow)?;
            let count = get_uvarint(&mut buf)?;
            out.push((value, count));
        }
        Ok(out)
    }

    /// Adds this window's counts to `into`.
    pub(crate) fn merge_into(&self, into: &mut Histogram<u64>) -> Result<(), CorruptWindow> {
        for (value, count) in self.pairs()? {
            into.saturating_record_n(value.max(1), count);
        }
        Ok(())
    }

    /// Merges consecutive windows into one covering all of them.
    pub(crate) fn merge(windows: &[Window]) -> Result<Window, CorruptWindow> {
        let mut h = conduit_api::histogram::new_latency_histogram();
        for w in windows {
            w.merge_into(&mut h)?;
        }
        let first = windows.first().ok_or(CorruptWindow)?;
        let last = windows.last().ok_or(CorruptWindow)?;
        let sum = windows.iter().map(|w| w.sum).sum();
        Ok(Self::from_histogram(
            first.start_ms,
            last.end_ms,
            &h,
            sum,
            first.scale,
        ))
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::histogram::{new_latency_histogram, record_latency_us};

    #[test]
    fn merged_windows_answer_like_one_histogram() {
        let mut all = new_latency_histogram();
        let mut windows = Vec::new();
        for w in 0..10u64 {
            let mut h = new_latency_histogram();
            for i in 0..500u64 {
                let us = 100 + (i * 7919 + w * 104_729) % 250_000;
                record_latency_us(&mut h, us);
                record_latency_us(&mut all, us);
            }
            windows.push(Window::from_histogram(
                w as i64 * 1000,
                (w as i64 + 1) * 1000,
                &h,
                0.0,
                0.001,
            ));
        }
        let merged = Window::merge(&windows).unwrap();
        let mut h = new_latency_histogram();
        merged.merge_into(&mut h).unwrap();
        assert_eq!(h.len(), 5000);
        for q in [0.5, 0.95, 0.99, 0.999] {
            assert_eq!(h.value_at_quantile(q), all.value_at_quantile(q));
        }
        assert!(merged.heap_bytes() < 5000 * 3);
    }

    #[test]
    fn garbage_is_an_error() {
        let w = Window {
            start_ms: 0,
            end_ms: 1,
            count: 1,
            sum: 0.0,
            scale: 1.0,
            buckets: vec![0xff, 0xff].into_boxed_slice(),
        };
        assert!(w.pairs().is_err());
    }
}
