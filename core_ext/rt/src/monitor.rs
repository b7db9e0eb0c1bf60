//! Frequency monitor: operator band with hysteresis, and min / max / mean over a
//! sliding window of the last `window_samples` valid samples.
//!
//! Min and max use monotonic deques of sample sequence numbers over a fixed ring
//! (O(1) amortised per sample); the mean uses a running sum that is re-summed from
//! the ring once per window length, so rounding drift never accumulates (also O(1)
//! amortised). All buffers are allocated at construction; `update` never allocates.

use crate::error::ConfigError;

mod band;
mod deque;
pub use band::{Band, BandEdges};
use deque::SeqDeque;

/// A change of band: from, to, and the frame timestamp (UNIX s) of the sample that caused it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    pub from: Band,
    pub to: Band,
    pub time: f64,
}

/// Parameters of [`FrequencyMonitor`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonitorConfig {
    pub edges: BandEdges,
    /// Nominal frequency, Hz (default 50.0).
    pub nominal_hz: f64,
    /// How far past a band's edge the frequency must go to leave the band, Hz (default 0.01).
    pub hysteresis_hz: f64,
    /// Sliding window length in samples; also the fixed ring capacity (default 50).
    pub window_samples: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            edges: BandEdges::default(),
            nominal_hz: 50.0,
            hysteresis_hz: 0.01,
            window_samples: 50,
        }
    }
}

/// Upper bound on `window_samples`, so a typo cannot reserve gigabytes.
pub const MAX_WINDOW_SAMPLES: usize = 1 << 20;

impl MonitorConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = &self.edges;
        for (name, v) in [
            ("critical_low_hz", e.critical_low),
            ("low_hz", e.low),
            ("high_hz", e.high),
            ("critical_high_hz", e.critical_high),
            ("nominal_hz", self.nominal_hz),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(ConfigError::new(
                    name,
                    format!("must be a positive finite frequency, got {v}"),
                ));
            }
        }
        if !(e.critical_low < e.low && e.low <= e.high && e.high < e.critical_high) {
            return Err(ConfigError::new(
                "low_hz",
                format!(
                    "band edges must satisfy critical_low < low <= high < critical_high, got {} {} {} {}",
                    e.critical_low, e.low, e.high, e.critical_high
                ),
            ));
        }
        if !(self.hysteresis_hz.is_finite()
            && self.hysteresis_hz >= 0.0
            && self.hysteresis_hz < 1.0)
        {
            return Err(ConfigError::new(
                "hysteresis_hz",
                format!("must be in [0, 1) Hz, got {}", self.hysteresis_hz),
            ));
        }
        if self.window_samples == 0 || self.window_samples > MAX_WINDOW_SAMPLES {
            return Err(ConfigError::new(
                "window_samples",
                format!(
                    "must be in 1..={MAX_WINDOW_SAMPLES}, got {}",
                    self.window_samples
                ),
            ));
        }
        Ok(())
    }
}

/// Frequency band tracker with hysteresis and sliding-window statistics.
#[derive(Debug, Clone)]
pub struct FrequencyMonitor {
    cfg: MonitorConfig,
    ring: Vec<f64>,
    /// Sequence number of the next valid sample (sample `s` lives at `ring[s % cap]`).
    next_seq: u64,
    min_q: SeqDeque,
    max_q: SeqDeque,
    sum: f64,
    since_resum: usize,
    band: Option<Band>,
    last: Option<Transition>,
    last_time: f64,
    invalid: u64,
    transitions: u64,
}

impl FrequencyMonitor {
    pub fn new(cfg: MonitorConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let n = cfg.window_samples;
        Ok(Self {
            cfg,
            ring: vec![0.0; n],
            next_seq: 0,
            min_q: SeqDeque::new(n),
            max_q: SeqDeque::new(n),
            sum: 0.0,
            since_resum: 0,
            band: None,
            last: None,
            last_time: f64::NAN,
            invalid: 0,
            transitions: 0,
        })
    }

    pub fn config(&self) -> &MonitorConfig {
        &self.cfg
    }

    /// Feed one sample: frame timestamp `t` (UNIX s) and frequency `f` (Hz). Returns the
    /// band transition this sample caused, if any. A non-finite or non-positive `f`, or a
    /// non-finite `t`, is counted in [`invalid_count`](Self::invalid_count) and ignored.
    pub fn update(&mut self, t: f64, f: f64) -> Option<Transition> {
        if !(f.is_finite() && f > 0.0 && t.is_finite()) {
            self.invalid += 1;
            return None;
        }
        self.push_window(f);
        self.last_time = t;
        let edges = &self.cfg.edges;
        let raw = edges.classify(f);
        let Some(cur) = self.band else {
            self.band = Some(raw);
            return None;
        };
        if raw == cur {
            return None;
        }
        // Stay while any point of [f - h, f + h] is in the current band, i.e. leaving
        // a band needs f to pass its edge by at least the hysteresis.
        let h = self.cfg.hysteresis_hz;
        let lo = edges.classify(f - h);
        let hi = edges.classify(f + h);
        if lo <= cur && cur <= hi {
            return None;
        }
        let tr = Transition {
            from: cur,
            to: raw,
            time: t,
        };
        self.band = Some(raw);
        self.last = Some(tr);
        self.transitions += 1;
        Some(tr)
    }

    fn push_window(&mut self, f: f64) {
        let cap = self.ring.len();
        let seq = self.next_seq;
        let slot = (seq % cap as u64) as usize;
        let full = seq >= cap as u64;
        if full {
            self.sum -= self.ring[slot];
        }
        self.ring[slot] = f;
        self.sum += f;
        self.next_seq += 1;
        // Drop sequence numbers that fell out of the window.
        let oldest = self.next_seq.saturating_sub(cap as u64);
        while self.min_q.front().is_some_and(|s| s < oldest) {
            self.min_q.pop_front();
        }
        while self.max_q.front().is_some_and(|s| s < oldest) {
            self.max_q.pop_front();
        }
        while self.min_q.back().is_some_and(|s| self.value(s) >= f) {
            self.min_q.pop_back();
        }
        self.min_q.push_back(seq);
        while self.max_q.back().is_some_and(|s| self.value(s) <= f) {
            self.max_q.pop_back();
        }
        self.max_q.push_back(seq);
        self.since_resum += 1;
        if self.since_resum >= cap {
            let n = self.len();
            self.sum = if n == cap {
                self.ring.iter().sum()
            } else {
                self.ring[..n].iter().sum()
            };
            self.since_resum = 0;
        }
    }

    fn value(&self, seq: u64) -> f64 {
        self.ring[(seq % self.ring.len() as u64) as usize]
    }

    /// Number of samples in the window (up to `window_samples`).
    pub fn len(&self) -> usize {
        self.next_seq.min(self.ring.len() as u64) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }

    /// Current band (None before the first valid sample).
    pub fn band(&self) -> Option<Band> {
        self.band
    }

    pub fn last_transition(&self) -> Option<Transition> {
        self.last
    }

    /// Minimum over the window (None when empty).
    pub fn min(&self) -> Option<f64> {
        self.min_q.front().map(|s| self.value(s))
    }

    pub fn max(&self) -> Option<f64> {
        self.max_q.front().map(|s| self.value(s))
    }

    pub fn mean(&self) -> Option<f64> {
        let n = self.len();
        (n > 0).then(|| self.sum / n as f64)
    }

    /// Deviation of the latest sample from nominal, Hz.
    pub fn deviation(&self) -> Option<f64> {
        (!self.is_empty()).then(|| self.value(self.next_seq - 1) - self.cfg.nominal_hz)
    }

    /// Timestamp of the latest valid sample (NaN before the first).
    pub fn last_time(&self) -> f64 {
        self.last_time
    }

    pub fn invalid_count(&self) -> u64 {
        self.invalid
    }

    pub fn transition_count(&self) -> u64 {
        self.transitions
    }

    /// Forget the window, the band and the counters.
    pub fn reset(&mut self) {
        self.next_seq = 0;
        self.min_q.clear();
        self.max_q.clear();
        self.sum = 0.0;
        self.since_resum = 0;
        self.band = None;
        self.last = None;
        self.last_time = f64::NAN;
        self.invalid = 0;
        self.transitions = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mon(h: f64, w: usize) -> FrequencyMonitor {
        FrequencyMonitor::new(MonitorConfig {
            hysteresis_hz: h,
            window_samples: w,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn classify_iegc_edges() {
        let e = BandEdges::default();
        assert_eq!(e.classify(49.49), Band::CriticalLow);
        assert_eq!(e.classify(49.50), Band::Low);
        assert_eq!(e.classify(49.8999), Band::Low);
        assert_eq!(e.classify(49.90), Band::Normal);
        assert_eq!(e.classify(50.05), Band::Normal);
        assert_eq!(e.classify(50.0501), Band::High);
        assert_eq!(e.classify(50.50), Band::High);
        assert_eq!(e.classify(50.51), Band::CriticalHigh);
    }

    #[test]
    fn hysteresis_needs_edge_passed() {
        let mut m = mon(0.01, 10);
        assert_eq!(m.update(0.0, 50.0), None);
        assert_eq!(m.band(), Some(Band::Normal));
        assert_eq!(m.update(0.1, 49.895), None, "inside hysteresis");
        let tr = m.update(0.2, 49.885).unwrap();
        assert_eq!((tr.from, tr.to, tr.time), (Band::Normal, Band::Low, 0.2));
        assert_eq!(m.update(0.3, 49.905), None, "back inside hysteresis");
        let tr = m.update(0.4, 49.915).unwrap();
        assert_eq!((tr.from, tr.to), (Band::Low, Band::Normal));
        // a jump over two bands reports the landing band
        let tr = m.update(0.5, 49.2).unwrap();
        assert_eq!(tr.to, Band::CriticalLow);
        assert_eq!(m.transition_count(), 3);
    }

    #[test]
    fn zero_hysteresis_is_raw() {
        let mut m = mon(0.0, 4);
        m.update(0.0, 49.95);
        assert_eq!(m.update(1.0, 49.8999).unwrap().to, Band::Low);
        assert_eq!(m.update(2.0, 49.90).unwrap().to, Band::Normal);
    }

    #[test]
    fn invalid_ignored() {
        let mut m = mon(0.01, 4);
        m.update(0.0, 50.0);
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0, f64::NEG_INFINITY] {
            assert_eq!(m.update(1.0, bad), None);
        }
        assert_eq!(m.update(f64::NAN, 50.0), None);
        assert_eq!(m.invalid_count(), 6);
        assert_eq!(m.len(), 1);
        assert_eq!(m.band(), Some(Band::Normal));
    }

    #[test]
    fn window_stats_match_brute_force() {
        let w = 7;
        let mut m = mon(0.01, w);
        let mut seed = 12345u64;
        let mut hist = Vec::new();
        for i in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let f = 49.5 + (seed % 10_000) as f64 * 1e-4;
            m.update(i as f64 * 0.02, f);
            hist.push(f);
            let win = &hist[hist.len().saturating_sub(w)..];
            let mn = win.iter().cloned().fold(f64::INFINITY, f64::min);
            let mx = win.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let mean = win.iter().sum::<f64>() / win.len() as f64;
            assert_eq!(m.min(), Some(mn));
            assert_eq!(m.max(), Some(mx));
            assert!((m.mean().unwrap() - mean).abs() < 1e-9);
        }
    }

    #[test]
    fn bad_config_names_field() {
        let c = MonitorConfig {
            window_samples: 0,
            ..Default::default()
        };
        assert_eq!(
            FrequencyMonitor::new(c).unwrap_err().field,
            "window_samples"
        );
        let c = MonitorConfig {
            hysteresis_hz: f64::NAN,
            ..Default::default()
        };
        assert_eq!(FrequencyMonitor::new(c).unwrap_err().field, "hysteresis_hz");
        let mut c = MonitorConfig::default();
        c.edges.low = 50.1;
        assert_eq!(FrequencyMonitor::new(c).unwrap_err().field, "low_hz");
    }
}
