//! Token buckets: at most `rate` events per second, up to `burst` at once.
//!
//! The events broker's relay charges each publisher's messages to a bucket of its own;
//! the Python `RateLimiter` of the command servers follows the same rule.

/// One bucket: `rate` tokens per second refill it, up to `burst`; it starts full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ns` (any monotonic clock, in nanoseconds).
    pub fn new(rate: f64, burst: f64, now_ns: u64) -> Self {
        let burst = if burst.is_finite() && burst > 0.0 {
            burst
        } else {
            0.0
        };
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            0.0
        };
        Self {
            rate,
            burst,
            tokens: burst,
            last_ns: now_ns,
        }
    }

    /// Spend one token at `now_ns`; false when the bucket is empty. A clock that goes
    /// backwards refills nothing.
    pub fn take(&mut self, now_ns: u64) -> bool {
        if now_ns > self.last_ns {
            let dt = (now_ns - self.last_ns) as f64 * 1e-9;
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last_ns = now_ns;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_gives_its_burst_then_its_rate() {
        let mut b = TokenBucket::new(10.0, 5.0, 0);
        assert_eq!((0..20).filter(|_| b.take(0)).count(), 5);
        // One second later: ten more, not fifteen (the burst caps the refill).
        assert_eq!((0..20).filter(|_| b.take(S)).count(), 5);
        assert_eq!((0..20).filter(|_| b.take(S + S / 10)).count(), 1);
    }

    #[test]
    fn the_rate_holds_over_a_long_run() {
        let mut b = TokenBucket::new(1000.0, 10.0, 0);
        // A message every 100 us for 10 s: 100,000 offered, about 10,000 pass.
        let passed = (0..100_000u64).filter(|i| b.take(i * 100_000)).count();
        assert!((10_000..=10_011).contains(&passed), "{passed}");
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut b = TokenBucket::new(1.0, 1.0, 10 * S);
        assert!(b.take(10 * S));
        assert!(!b.take(5 * S));
        assert!(!b.take(10 * S));
        assert!(b.take(11 * S));
    }

    #[test]
    fn odd_rates_give_nothing() {
        for (rate, burst) in [(f64::NAN, 5.0), (-1.0, 5.0), (1.0, f64::NAN), (1.0, -3.0)] {
            let mut b = TokenBucket::new(rate, burst, 0);
            let n = (0..10).filter(|i| b.take(i * S)).count();
            assert!(n <= 5, "{rate} {burst}: {n}");
        }
    }
}
