//! The token bucket that bounds tap streams, in the proxy (per live
//! subscriber, and for the events sampled into telemetry) and in the
//! controller (per `conduit tap --max-rps`): one definition so both ends
//! count a "request per second" the same way.

use std::time::Instant;

/// At most `per_second` events a second, with bursts of one second's worth.
#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A full bucket; a rate of 0 is taken as 1 so a stream never stalls
    /// for good.
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            tokens: per_second,
            last: Instant::now(),
        }
    }

    /// Takes a token if there is one: `true` means the event may pass.
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second);
        self.last = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimit;

    #[test]
    fn bursts_of_one_second_then_the_rate() {
        let mut limit = RateLimit::new(10);
        let allowed = (0..100).filter(|_| limit.allow()).count();
        assert!((10..=11).contains(&allowed), "{allowed}");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let refilled = (0..100).filter(|_| limit.allow()).count();
        assert!((1..=4).contains(&refilled), "{refilled}");
    }

    #[test]
    fn zero_is_one_per_second() {
        let mut limit = RateLimit::new(0);
        assert!(limit.allow());
        assert!(!limit.allow());
    }
}
