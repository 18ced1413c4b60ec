//! Downsampling: the rollup of a raw block at a coarser resolution (one
//! minute by default), kept long after the raw data is gone so week-long
//! dashboards read a few points per series and minute, not every sample.
//!
//! A rollup keeps, per series, the first sample, the last sample of each
//! resolution step and the two samples around every value drop. That subset gives
//! `rate()`/`increase()` exactly the raw increase: between kept samples
//! nothing resets, and each reset is the same drop between the same two
//! samples. Gauges keep their value at every step end. Histogram windows
//! are merged per step, so quantiles over any whole-minute range stay
//! exact to the HdrHistogram's precision.

use crate::model::{Sample, Window};

/// The rollup of `samples` (sorted by time) at `resolution_ms`.
pub(crate) fn samples(samples: &[Sample], resolution_ms: i64) -> Vec<Sample> {
    let mut out = Vec::with_capacity(samples.len() / 4 + 1);
    for (i, &(t, v)) in samples.iter().enumerate() {
        let Some(&(next_t, next_v)) = samples.get(i + 1) else {
            out.push((t, v));
            break;
        };
        let step_ends = next_t.div_euclid(resolution_ms) != t.div_euclid(resolution_ms);
        let after_drop = i > 0 && v < samples[i - 1].1;
        if i == 0 || step_ends || next_v < v || after_drop {
            out.push((t, v));
        }
    }
    out
}

/// Histogram windows merged per resolution step: the windows ending in
/// `(k × step, (k + 1) × step]` become one, so a query over whole steps
/// merges exactly the same intervals as over the raw windows.
pub(crate) fn windows(windows: &[Window], resolution_ms: i64) -> Vec<Window> {
    let step_of = |w: &Window| (w.end_ms - 1).div_euclid(resolution_ms);
    let mut out = Vec::new();
    let mut i = 0;
    while i < windows.len() {
        let step = step_of(&windows[i]);
        let mut j = i;
        while j < windows.len() && step_of(&windows[j]) == step {
            j += 1;
        }
        match Window::merge(&windows[i..j]) {
            Ok(w) => out.push(w),
            Err(e) => {
                tracing::warn!(error = %e, "dropping a corrupt histogram window from a rollup")
            }
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus' counter increase over a sample sequence.
    fn increase(s: &[Sample]) -> f64 {
        let mut total = 0.0;
        for w in s.windows(2) {
            total += if w[1].1 < w[0].1 {
                w[1].1
            } else {
                w[1].1 - w[0].1
            };
        }
        total
    }

    #[test]
    fn rollups_keep_step_ends_and_resets() {
        // A counter every 10 s for 10 minutes, resetting twice.
        let mut raw = Vec::new();
        let mut v = 0.0;
        for i in 0..60i64 {
            v = if i == 23 || i == 41 {
                3.0
            } else {
                v + (i % 7) as f64
            };
            raw.push((i * 10_000, v));
        }
        let rolled = samples(&raw, 60_000);
        assert!(
            rolled.len() <= 1 + 10 + 2 * 2,
            "{} samples kept",
            rolled.len()
        );
        assert_eq!(increase(&rolled), increase(&raw));
        assert_eq!(rolled.last(), raw.last());
        // Every step end is there.
        for step in 0..10 {
            let last_in_step = raw
                .iter()
                .rev()
                .find(|s| s.0.div_euclid(60_000) == step)
                .unwrap();
            assert!(rolled.contains(last_in_step));
        }
    }
}
