//! Retries: what may be sent again, and how much extra load that may add.
//!
//! A retry budget, like Linkerd's, bounds retries to a ratio of the
//! requests seen over a sliding window plus a small floor per second, so a
//! failing upstream sees at most that much extra load instead of a retry
//! storm. Only requests whose body is small enough to keep in memory (and
//! whose length is known up front, so buffering never stalls a stream) are
//! retried; each retry carries `conduit-retry-attempt`.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::metrics::lock;
use crate::profile::BudgetSpec;

/// The attempt number (2 for the first retry) of a retried request.
pub const RETRY_ATTEMPT_HEADER: &str = "conduit-retry-attempt";

/// The window is kept as this many slots of `ttl / SLOTS` each.
const SLOTS: usize = 10;

#[derive(Default, Clone, Copy)]
struct Slot {
    requests: u64,
    retries: u64,
}

struct Window {
    slots: [Slot; SLOTS],
    /// Index of the current slot and when it started.
    current: usize,
    started: Instant,
}

pub(crate) struct Budget {
    spec: BudgetSpec,
    slot_len: Duration,
    window: Mutex<Window>,
}

impl Budget {
    pub(crate) fn new(spec: BudgetSpec) -> Self {
        Self {
            spec,
            slot_len: spec.ttl / SLOTS as u32,
            window: Mutex::new(Window {
                slots: [Slot::default(); SLOTS],
                current: 0,
                started: Instant::now(),
            }),
        }
    }

    pub(crate) fn spec(&self) -> BudgetSpec {
        self.spec
    }

    fn advance(&self, w: &mut Window, now: Instant) {
        let elapsed = now.saturating_duration_since(w.started);
        let steps = elapsed.as_nanos() / self.slot_len.as_nanos().max(1);
        if steps == 0 {
            return;
        }
        if steps >= SLOTS as u128 {
            w.slots = [Slot::default(); SLOTS];
            w.started = now;
            return;
        }
        for _ in 0..steps {
            w.current = (w.current + 1) % SLOTS;
            w.slots[w.current] = Slot::default();
        }
        w.started += self.slot_len * steps as u32;
    }

    /// Counts a request that could be retried.
    pub(crate) fn deposit(&self) {
        let mut w = lock(&self.window);
        self.advance(&mut w, Instant::now());
        let current = w.current;
        w.slots[current].requests += 1;
    }

    /// Takes one retry from the budget, if it has one.
    pub(crate) fn withdraw(&self) -> bool {
        let mut w = lock(&self.window);
        self.advance(&mut w, Instant::now());
        let (requests, retries) = w
            .slots
            .iter()
            .fold((0, 0), |(q, r), s| (q + s.requests, r + s.retries));
        let floor = f64::from(self.spec.min_per_second) * self.spec.ttl.as_secs_f64();
        let allowed = floor + f64::from(self.spec.ratio) * requests as f64;
        if (retries + 1) as f64 > allowed {
            return false;
        }
        let current = w.current;
        w.slots[current].retries += 1;
        true
    }
}

/// Whether a request body can be kept for replay: it is empty, or its
/// exact length is known and within `limit`.
pub(crate) fn is_replayable(body: &Incoming, limit: u64) -> bool {
    body.is_end_stream() || body.size_hint().exact().is_some_and(|n| n <= limit)
}

/// Reads the whole body (and its trailers) into memory.
pub(crate) async fn buffer(
    body: Incoming,
    limit: usize,
) -> Result<(Bytes, Option<HeaderMap>), String> {
    let collected = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| format!("cannot read request body: {e}"))?;
    let trailers = collected.trailers().cloned();
    Ok((collected.to_bytes(), trailers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f32, min_per_second: u32) -> Budget {
        Budget::new(BudgetSpec {
            ratio,
            min_per_second,
            ttl: Duration::from_secs(10),
        })
    }

    #[test]
    fn ratio_of_requests_plus_floor() {
        let b = budget(0.2, 1);
        for _ in 0..100 {
            b.deposit();
        }
        // 0.2 * 100 + 1/s * 10 s = 30.
        let granted = (0..100).filter(|_| b.withdraw()).count();
        assert_eq!(granted, 30);
    }

    #[test]
    fn old_requests_leave_the_window() {
        let b = Budget::new(BudgetSpec {
            ratio: 0.5,
            min_per_second: 0,
            ttl: Duration::from_millis(100),
        });
        for _ in 0..100 {
            b.deposit();
        }
        std::thread::sleep(Duration::from_millis(120));
        assert!(!b.withdraw(), "deposits older than the ttl no longer count");
        b.deposit();
        b.deposit();
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }
}
