//! Lateness statistics of the ticker: counters and a log-linear histogram in fixed-size
//! arrays, so recording a tick never allocates.

use super::Tick;

/// Sub-buckets per power of two of the histogram: 2^5 = 32, so a percentile is exact to
/// within 1/32 (about 3 %) of its value.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for every `u64` nanosecond value, so nothing is ever clamped.
const BUCKETS: usize = ((64 - SUB_BITS as usize) * SUB as usize) + SUB as usize;

fn bucket_of(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    (u64::from(shift) * SUB + (v >> shift)) as usize
}

/// Largest value that falls into `bucket`.
fn bucket_upper(bucket: usize) -> u64 {
    let b = bucket as u64;
    if b < 2 * SUB {
        return b;
    }
    let shift = b / SUB - 1;
    let sub = b - shift * SUB;
    // u128: the top bucket's edge is 2^64 - 1.
    (((u128::from(sub) + 1) << shift) - 1) as u64
}

/// Running lateness statistics, fixed size, updated without allocation.
#[derive(Clone)]
pub struct TickStats {
    /// Ticks recorded.
    pub count: u64,
    /// Ticks whose deadline had passed before `wait()` was called.
    pub overruns: u64,
    /// Deadlines skipped after overruns (no tick was returned for them).
    pub skipped: u64,
    /// Largest lateness seen, nanoseconds.
    pub max_ns: u64,
    /// Sum of lateness, nanoseconds (for the mean).
    pub sum_ns: u128,
    hist: [u64; BUCKETS],
}

impl Default for TickStats {
    fn default() -> Self {
        Self {
            count: 0,
            overruns: 0,
            skipped: 0,
            max_ns: 0,
            sum_ns: 0,
            hist: [0; BUCKETS],
        }
    }
}

impl std::fmt::Debug for TickStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickStats")
            .field("count", &self.count)
            .field("overruns", &self.overruns)
            .field("skipped", &self.skipped)
            .field("max_ns", &self.max_ns)
            .field("p50_ns", &self.percentile_ns(0.5))
            .field("p99_ns", &self.percentile_ns(0.99))
            .finish()
    }
}

impl TickStats {
    /// Add one tick.
    pub fn record(&mut self, tick: &Tick) {
        self.count += 1;
        self.overruns += u64::from(tick.overrun);
        self.skipped += tick.skipped;
        self.max_ns = self.max_ns.max(tick.lateness_ns);
        self.sum_ns += u128::from(tick.lateness_ns);
        self.hist[bucket_of(tick.lateness_ns)] += 1;
    }

    /// Lateness at quantile `q` (0..=1), nanoseconds: the upper edge of the histogram
    /// bucket holding the `ceil(q * count)`-th smallest value, capped at the maximum seen
    /// (so it may overstate by up to ~3 %, never understate). 0 when nothing was recorded.
    pub fn percentile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (bucket, &n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_upper(bucket).min(self.max_ns);
            }
        }
        self.max_ns
    }

    /// Mean lateness, nanoseconds (0 when nothing was recorded).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// Forget everything recorded.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_percentiles_close() {
        let mut prev = 0;
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            127,
            128,
            1_000,
            123_456,
            10_000_000_000,
            u64::MAX,
        ] {
            let b = bucket_of(v);
            assert!(b >= prev && b < BUCKETS);
            assert!(bucket_upper(b) >= v, "{v}");
            if b > 0 {
                assert!(bucket_upper(b - 1) < v, "{v}");
            }
            prev = b;
        }
        let mut s = TickStats::default();
        for i in 1..=1000u64 {
            s.record(&Tick {
                index: i,
                deadline_ns: 0,
                lateness_ns: i * 1000,
                overrun: false,
                skipped: 0,
            });
        }
        let p50 = s.percentile_ns(0.5);
        assert!((500_000..=500_000 + 500_000 / 32).contains(&p50), "{p50}");
        assert_eq!(s.percentile_ns(1.0), 1_000_000);
        assert_eq!(s.max_ns, 1_000_000);
        s.reset();
        assert_eq!((s.count, s.percentile_ns(0.99)), (0, 0));
    }
}
