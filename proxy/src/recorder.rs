//! The flight recorder: failed and slow requests go to the store's tap
//! history whatever the sampling rate, within a rate budget.
//!
//! Sampling decides at a request's start, before anyone knows how it
//! ends; the requests worth looking at later are the ones that failed or
//! were slow, which is only known at its end. So every request carries a
//! cheap seed of its event, and the recorder judges it when the response
//! ends. "Slow" is a fixed threshold, or the p99 this proxy measured per
//! direction over its last window, refreshed as telemetry intervals end.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conduit_api::Direction;
use conduit_api::histogram::SIGNIFICANT_DIGITS;
use conduit_api::proto::tap::v1::Kept;
use conduit_api::rate_limit::RateLimit;
use hdrhistogram::Histogram;

use crate::metrics::{Registry, lock};

/// How long a p99 is measured before it becomes the slow threshold.
const WINDOW: Duration = Duration::from_secs(10);

/// A window with fewer responses leaves the threshold as it was: the p99
/// of a handful of requests would call every other one slow.
const MIN_RESPONSES: u64 = 100;

/// No threshold yet: nothing is slow.
const UNKNOWN: u64 = u64::MAX;

pub(crate) struct Recorder {
    max_rps: u32,
    /// `None`: the recorder is off (`--recorder-max-rps 0`).
    budget: Option<Mutex<RateLimit>>,
    /// `--recorder-slow-threshold`, in µs.
    fixed_us: Option<u64>,
    /// The measured p99 per direction, in µs.
    measured_us: [AtomicU64; 2],
    window: Mutex<P99Window>,
    registry: Arc<Registry>,
}

struct P99Window {
    latency_us: [Histogram<u64>; 2],
    started: Instant,
}

impl Recorder {
    pub(crate) fn new(max_rps: u32, slow: Option<Duration>, registry: Arc<Registry>) -> Self {
        let histogram =
            || Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits are valid");
        Self {
            max_rps,
            budget: (max_rps > 0).then(|| Mutex::new(RateLimit::new(max_rps))),
            fixed_us: slow.map(micros),
            measured_us: [AtomicU64::new(UNKNOWN), AtomicU64::new(UNKNOWN)],
            window: Mutex::new(P99Window {
                latency_us: [histogram(), histogram()],
                started: Instant::now(),
            }),
            registry,
        }
    }

    pub(crate) fn max_rps(&self) -> u32 {
        self.max_rps
    }

    pub(crate) fn enabled(&self) -> bool {
        self.budget.is_some()
    }

    /// Why a finished request is worth keeping, if it is.
    pub(crate) fn judge(
        &self,
        direction: Direction,
        failed: bool,
        latency: Duration,
    ) -> Option<Kept> {
        if failed {
            return Some(Kept::Failed);
        }
        (micros(latency) > self.slow_threshold_us(direction)).then_some(Kept::Slow)
    }

    /// Takes one event of the budget; one past it is counted and let go.
    pub(crate) fn admit(&self) -> bool {
        let Some(budget) = &self.budget else {
            return false;
        };
        let p = &self.registry.proxy;
        if lock(budget).allow() {
            p.tap_events_recorded.fetch_add(1, Relaxed);
            true
        } else {
            p.tap_recorder_overflow.fetch_add(1, Relaxed);
            false
        }
    }

    fn slow_threshold_us(&self, direction: Direction) -> u64 {
        self.fixed_us
            .unwrap_or_else(|| self.measured_us[index(direction)].load(Relaxed))
    }

    /// Adds an ended interval's latencies of one direction to the window.
    pub(crate) fn observe(&self, direction: Direction, interval_us: &Histogram<u64>) {
        if self.fixed_us.is_some() || !self.enabled() {
            return;
        }
        let mut w = lock(&self.window);
        // Both are auto-resizing; adding cannot fail for want of range.
        let _ = w.latency_us[index(direction)].add(interval_us);
    }

    /// Once a window is over, its p99 per direction becomes the threshold.
    pub(crate) fn refresh(&self) {
        let mut w = lock(&self.window);
        if w.started.elapsed() < WINDOW {
            return;
        }
        w.started = Instant::now();
        for (h, measured) in w.latency_us.iter_mut().zip(&self.measured_us) {
            if h.len() >= MIN_RESPONSES {
                measured.store(h.value_at_quantile(0.99), Relaxed);
            }
            h.reset();
        }
    }
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    }
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(max_rps: u32, slow: Option<Duration>) -> Recorder {
        Recorder::new(
            max_rps,
            slow,
            Arc::new(Registry::new("demo", "web", "web-1", "")),
        )
    }

    #[test]
    fn failures_always_and_slow_past_the_fixed_threshold() {
        let r = recorder(10, Some(Duration::from_millis(100)));
        let ms = Duration::from_millis;
        assert_eq!(r.judge(Direction::Inbound, true, ms(1)), Some(Kept::Failed));
        assert_eq!(
            r.judge(Direction::Inbound, false, ms(101)),
            Some(Kept::Slow)
        );
        assert_eq!(r.judge(Direction::Outbound, false, ms(100)), None);
    }

    #[test]
    fn the_measured_p99_becomes_the_threshold_of_its_direction() {
        let r = recorder(10, None);
        let ms = Duration::from_millis;
        assert_eq!(
            r.judge(Direction::Inbound, false, ms(60_000)),
            None,
            "no threshold yet"
        );
        let mut h = Histogram::<u64>::new(SIGNIFICANT_DIGITS).unwrap();
        for i in 1..=1000 {
            h.record(i * 1000).unwrap();
        }
        r.observe(Direction::Inbound, &h);
        r.refresh();
        assert_eq!(
            r.judge(Direction::Inbound, false, ms(995)),
            None,
            "the window is not over"
        );
        lock(&r.window).started -= WINDOW;
        r.refresh();
        assert_eq!(r.judge(Direction::Inbound, false, ms(980)), None);
        assert_eq!(
            r.judge(Direction::Inbound, false, ms(995)),
            Some(Kept::Slow)
        );
        assert_eq!(
            r.judge(Direction::Outbound, false, ms(995)),
            None,
            "outbound saw nothing"
        );
    }

    #[test]
    fn the_budget_holds_and_counts_its_overflow() {
        let r = recorder(5, None);
        let admitted = (0..50).filter(|_| r.admit()).count();
        assert!((5..=6).contains(&admitted), "{admitted}");
        let p = &r.registry.proxy;
        assert_eq!(p.tap_events_recorded.load(Relaxed), admitted as u64);
        assert_eq!(p.tap_recorder_overflow.load(Relaxed), 50 - admitted as u64);
        assert!(!recorder(0, None).admit(), "0 turns the recorder off");
    }
}
