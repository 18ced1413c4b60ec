//! Where axis ticks go.
//!
//! Value axes step by 1, 2 or 5 times a power of ten and start and end on
//! a tick, so the labels read `0 50 100 150` rather than `0 47.3 94.6`.
//! Time axes step by clock-friendly durations (15 s, 1 min, 5 min, ...)
//! aligned to the viewer's local clock, so ticks land on `12:05:00`, not
//! on whenever the page was opened.

/// An axis: its (nice) extent and the tick values inside it.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub min: f64,
    pub max: f64,
    pub step: f64,
    pub ticks: Vec<f64>,
}

/// 1, 2 or 5 times a power of ten, so that about `count` steps cover
/// `span`: the candidate closest (on a log scale) to `span / count`.
/// Degenerate input (no span, no count) gets a step of 1.
pub fn nice_step(span: f64, count: usize) -> f64 {
    if !span.is_finite() || span <= 0.0 || count == 0 {
        return 1.0;
    }
    let raw = span / count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let error = raw / magnitude;
    // The geometric midpoints between 1, 2, 5 and 10.
    let factor = if error >= 50f64.sqrt() {
        10.0
    } else if error >= 10f64.sqrt() {
        5.0
    } else if error >= 2f64.sqrt() {
        2.0
    } else {
        1.0
    };
    factor * magnitude
}

/// An axis covering `[min, max]` with about `count` intervals, widened to
/// start and end on a tick. Without data (non-finite bounds) the axis is
/// `[0, 1]`; a single value gets room above it.
pub fn value_axis(min: f64, max: f64, count: usize) -> Axis {
    let (lo, mut hi) = if min.is_finite() && max.is_finite() {
        (min.min(max), min.max(max))
    } else {
        (0.0, 1.0)
    };
    if hi <= lo {
        hi = lo + if lo == 0.0 { 1.0 } else { lo.abs() };
    }
    let step = nice_step(hi - lo, count.max(1));
    let first = (lo / step + 1e-9).floor();
    let last = (hi / step - 1e-9).ceil();
    let ticks = (first as i64..=last as i64)
        .map(|i| round_to_step(i as f64 * step, step))
        .collect();
    Axis {
        min: round_to_step(first * step, step),
        max: round_to_step(last * step, step),
        step,
        ticks,
    }
}

/// Removes the float noise of `i * step` (`0.30000000000000004`).
fn round_to_step(v: f64, step: f64) -> f64 {
    let decimals = decimals_for(step) as i32;
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// How many decimals a tick label needs so that neighbouring ticks `step`
/// apart read differently.
pub fn decimals_for(step: f64) -> usize {
    if !step.is_finite() || step <= 0.0 || step >= 1.0 {
        return 0;
    }
    (-step.log10() - 1e-9).ceil().max(0.0) as usize
}

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// Tick spacings a clock reader expects.
const TIME_STEPS_MS: &[i64] = &[
    SECOND,
    2 * SECOND,
    5 * SECOND,
    10 * SECOND,
    15 * SECOND,
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    24 * HOUR,
];

/// Ticks of a time axis from `start_ms` to `end_ms` (Unix ms): at most
/// `count` of them, spaced by the smallest clock-friendly step that makes
/// fewer than `count` intervals, on multiples of the step in local time (`utc_offset_ms` is local
/// minus UTC). Returns the step and the tick times.
pub fn time_ticks(start_ms: i64, end_ms: i64, count: usize, utc_offset_ms: i64) -> (i64, Vec<i64>) {
    if end_ms <= start_ms || count == 0 {
        return (SECOND, Vec::new());
    }
    let span = end_ms - start_ms;
    let step = TIME_STEPS_MS
        .iter()
        .copied()
        .find(|s| span / s < count as i64)
        .unwrap_or(24 * HOUR * (span / (24 * HOUR * count as i64) + 1));
    let local_start = start_ms + utc_offset_ms;
    let first = local_start.div_euclid(step) * step
        + if local_start.rem_euclid(step) == 0 {
            0
        } else {
            step
        };
    let ticks = (0..)
        .map(|i| first + i * step - utc_offset_ms)
        .take_while(|t| *t <= end_ms)
        .collect();
    (step, ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_two_or_five() {
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(100.0, 4), 20.0);
        assert_eq!(nice_step(100.0, 2), 50.0);
        assert_eq!(nice_step(100.0, 10), 10.0);
        assert_eq!(nice_step(1.0, 4), 0.2);
        assert_eq!(nice_step(0.07, 4), 0.02);
        assert_eq!(nice_step(7_300.0, 4), 2_000.0);
        assert_eq!(nice_step(0.0, 4), 1.0);
        assert_eq!(nice_step(f64::NAN, 4), 1.0);
        assert_eq!(nice_step(10.0, 0), 1.0);
    }

    #[test]
    fn value_axes_start_and_end_on_ticks() {
        let a = value_axis(0.0, 87.0, 4);
        assert_eq!((a.min, a.max, a.step), (0.0, 100.0, 20.0));
        assert_eq!(a.ticks, vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);

        let a = value_axis(0.0, 0.3, 3);
        assert_eq!(a.ticks, vec![0.0, 0.1, 0.2, 0.3]);
    }

    #[test]
    fn value_axes_have_no_float_noise() {
        let a = value_axis(0.9, 1.0, 5);
        assert_eq!(a.ticks, vec![0.9, 0.92, 0.94, 0.96, 0.98, 1.0]);
    }

    #[test]
    fn a_value_exactly_on_a_tick_is_not_padded() {
        let a = value_axis(0.0, 100.0, 5);
        assert_eq!(a.max, 100.0);
    }

    #[test]
    fn empty_and_flat_data_get_a_usable_axis() {
        let a = value_axis(f64::INFINITY, f64::NEG_INFINITY, 4);
        assert_eq!((a.min, a.max), (0.0, 1.0));
        let a = value_axis(0.0, 0.0, 4);
        assert_eq!((a.min, a.max), (0.0, 1.0));
        let a = value_axis(42.0, 42.0, 4);
        assert!(a.min <= 42.0 && a.max > 42.0, "{a:?}");
    }

    #[test]
    fn decimals_follow_the_step() {
        assert_eq!(decimals_for(20.0), 0);
        assert_eq!(decimals_for(1.0), 0);
        assert_eq!(decimals_for(0.5), 1);
        assert_eq!(decimals_for(0.1), 1);
        assert_eq!(decimals_for(0.02), 2);
        assert_eq!(decimals_for(0.0), 0);
    }

    #[test]
    fn time_ticks_align_to_the_clock() {
        // 12:00:07 to 12:05:07 UTC, at most 6 ticks: one a minute, on the
        // minute.
        let start = 12 * HOUR + 7 * SECOND;
        let (step, ticks) = time_ticks(start, start + 5 * MINUTE, 6, 0);
        assert_eq!(step, MINUTE);
        assert_eq!(
            ticks,
            (1..=5).map(|m| 12 * HOUR + m * MINUTE).collect::<Vec<_>>()
        );
    }

    #[test]
    fn time_ticks_use_local_time() {
        // In UTC+05:30 an hourly tick sits at xx:30 UTC.
        let offset = 5 * HOUR + 30 * MINUTE;
        let (step, ticks) = time_ticks(0, 6 * HOUR, 7, offset);
        assert_eq!(step, HOUR);
        assert_eq!(ticks[0], 30 * MINUTE);
        assert!(ticks.iter().all(|t| (t + offset) % HOUR == 0));
    }

    #[test]
    fn time_ticks_pick_wider_steps_for_longer_spans() {
        let (step, ticks) = time_ticks(0, HOUR, 6, 0);
        assert_eq!(step, 15 * MINUTE);
        assert_eq!(ticks.len(), 5);
        let (step, _) = time_ticks(0, 60 * SECOND, 6, 0);
        assert_eq!(step, 15 * SECOND);
        let (step, ticks) = time_ticks(0, 30 * 24 * HOUR, 5, 0);
        assert!(
            step >= 6 * 24 * HOUR && ticks.len() <= 6,
            "{step} {ticks:?}"
        );
    }

    #[test]
    fn an_empty_time_span_has_no_ticks() {
        assert_eq!(time_ticks(10, 10, 5, 0).1, Vec::<i64>::new());
        assert_eq!(time_ticks(10, 5, 5, 0).1, Vec::<i64>::new());
        assert_eq!(time_ticks(0, 10, 0, 0).1, Vec::<i64>::new());
    }
}
