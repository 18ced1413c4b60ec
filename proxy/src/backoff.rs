//! Exponential backoff with jitter, for everything that reconnects
//! (telemetry, destination) or waits before probing (circuit breaking), so
//! a fleet of proxies does not retry in lockstep.

use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The next wait: the current step plus up to half of it at random;
    /// the step doubles up to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base + base.mul_f64(fastrand::f64() * 0.5)
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        for (d, base) in delays.iter().zip([100, 200, 400, 400, 400]) {
            let base = Duration::from_millis(base);
            assert!(*d >= base && *d <= base.mul_f64(1.5), "{d:?} vs {base:?}");
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(151));
    }
}
