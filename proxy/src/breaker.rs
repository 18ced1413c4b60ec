//! Circuit breaking by consecutive-failure accrual.
//!
//! An endpoint that fails `threshold` times in a row is taken out of
//! balancing for a backoff period; then one request probes it. Success
//! closes the breaker; failure opens it again for twice as long, up to ten
//! times the first backoff. Without this, a dead endpoint that fails fast
//! looks like the fastest endpoint to a latency-aware balancer.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::lock;

#[derive(Copy, Clone, Debug)]
pub(crate) struct BreakerConfig {
    pub(crate) threshold: u32,
    pub(crate) backoff: Duration,
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        backoff: Duration,
    },
    /// One request is probing the endpoint.
    Probing {
        backoff: Duration,
    },
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Whether a request could be sent now (without claiming the probe).
    pub(crate) fn is_available(&self, now: Instant) -> bool {
        match *lock(&self.state) {
            State::Closed { .. } => true,
            State::Open { until, .. } => now >= until,
            State::Probing { .. } => false,
        }
    }

    /// Claims the right to send a request: always while closed, once (the
    /// probe) after the backoff has passed.
    pub(crate) fn try_acquire(&self, now: Instant) -> bool {
        let mut state = lock(&self.state);
        match *state {
            State::Closed { .. } => true,
            State::Open { until, backoff } if now >= until => {
                tracing::debug!("probing an endpoint after its backoff");
                *state = State::Probing { backoff };
                true
            }
            State::Open { .. } | State::Probing { .. } => false,
        }
    }

    pub(crate) fn success(&self) {
        *lock(&self.state) = State::Closed { failures: 0 };
    }

    pub(crate) fn failure(&self, now: Instant) {
        let mut state = lock(&self.state);
        let max = self.config.backoff * 10;
        *state = match *state {
            State::Closed { failures } if failures + 1 >= self.config.threshold => {
                tracing::info!(failures = failures + 1, backoff = ?self.config.backoff, "endpoint failing; taking it out of balancing");
                open(now, self.config.backoff)
            }
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            State::Probing { backoff } | State::Open { backoff, .. } => {
                open(now, (backoff * 2).min(max))
            }
        };
    }

    /// A request that claimed the endpoint but never got an answer either
    /// way (cancelled): let another request probe.
    pub(crate) fn release(&self) {
        let mut state = lock(&self.state);
        if let State::Probing { backoff } = *state {
            *state = State::Open {
                until: Instant::now(),
                backoff,
            };
        }
    }
}

fn open(now: Instant, backoff: Duration) -> State {
    State::Open {
        until: now + backoff,
        backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_probes_and_recovers() {
        let b = Breaker::new(BreakerConfig {
            threshold: 3,
            backoff: Duration::from_secs(1),
        });
        let now = Instant::now();
        for _ in 0..2 {
            assert!(b.try_acquire(now));
            b.failure(now);
        }
        assert!(b.try_acquire(now));
        b.failure(now);
        assert!(!b.is_available(now) && !b.try_acquire(now), "open after 3");

        let later = now + Duration::from_secs(1);
        assert!(b.try_acquire(later), "one probe");
        assert!(!b.try_acquire(later), "only one");
        b.failure(later);
        assert!(
            !b.try_acquire(later + Duration::from_millis(1500)),
            "backoff doubled"
        );
        let probe = later + Duration::from_secs(2);
        assert!(b.try_acquire(probe));
        b.success();
        assert!(b.try_acquire(probe) && b.try_acquire(probe), "closed again");
    }
}
