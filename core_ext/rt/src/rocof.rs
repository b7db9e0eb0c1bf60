//! ROCOF estimator: least-squares slope of frequency against the PMU frame timestamp
//! (SOC + FRACSEC, never arrival time) over a sliding window in seconds.
//!
//! Complexity: each accepted sample recomputes the slope over the ring, O(n) with
//! n <= `capacity` (default 64; the default 0.1 s window holds 2 / 3 / 6 samples at
//! 10 / 25 / 50 frames/s). Two passes centred on the window means make the fit immune
//! to the cancellation that raw running sums of UNIX-second timestamps suffer.
//!
//! Frame handling: a missing frame just leaves a wider gap (actual timestamps are
//! used; at 10 frames/s the gap exceeds the default window, which then refills); a
//! duplicate timestamp is ignored and counted; an out-of-order frame (older than the
//! newest accepted) is ignored and counted, because inserting it would only shift a
//! short fit slightly while costing a ring shift on the hot path.
//!
//! Step behaviour: a frequency step of `df` inside the window shows as a ROCOF pulse
//! lasting one window, peaking near 1.5 x df / window for a uniform window, then
//! exactly zero once the step leaves the window. The time outside any error band is
//! therefore about the window span, whatever the step size: the default 0.1 s keeps it
//! within the IEC/IEEE 60255-118-1 P-class 120 ms at 10, 25 and 50 frames/s. Under
//! white noise the least-squares slope is the lowest-variance linear estimate that is
//! exact on a ramp (Gauss-Markov), so re-weighting the same samples cannot make it
//! quieter; only a longer window can (docs/control.md).

use crate::error::ConfigError;

/// Where the ROCOF comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RocofSource {
    /// Least-squares slope of FREQ over the window (default).
    Frequency,
    /// The PMU's own DFREQ field, passed through.
    Dfreq,
}

impl RocofSource {
    pub fn name(self) -> &'static str {
        match self {
            Self::Frequency => "frequency",
            Self::Dfreq => "dfreq",
        }
    }
}

/// Parameters of [`RocofEstimator`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RocofConfig {
    /// Fit window, seconds (default 0.1 s: the P-class ROCOF response time of 120 ms at
    /// 10, 25 and 50 frames/s; 2 samples at 10 frames/s, so a plain difference there).
    pub window_s: f64,
    /// Ring capacity in samples (default 64); bounds the window at high rates.
    pub capacity: usize,
    pub source: RocofSource,
}

impl Default for RocofConfig {
    fn default() -> Self {
        Self {
            window_s: 0.1,
            capacity: 64,
            source: RocofSource::Frequency,
        }
    }
}

/// Upper bound on the ring capacity: the fit is O(capacity) per sample.
pub const MAX_ROCOF_CAPACITY: usize = 4096;

/// Relative slack on the window edge so that frames exactly one window apart stay in.
const EDGE_EPS_S: f64 = 1e-6;

impl RocofConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.window_s.is_finite() && self.window_s > 0.0 && self.window_s <= 60.0) {
            return Err(ConfigError::new(
                "window_s",
                format!("must be in (0, 60] s, got {}", self.window_s),
            ));
        }
        if self.capacity < 2 || self.capacity > MAX_ROCOF_CAPACITY {
            return Err(ConfigError::new(
                "capacity",
                format!("must be in 2..={MAX_ROCOF_CAPACITY}, got {}", self.capacity),
            ));
        }
        Ok(())
    }
}

/// Sliding least-squares ROCOF estimator with a fixed ring.
#[derive(Debug, Clone)]
pub struct RocofEstimator {
    cfg: RocofConfig,
    t: Vec<f64>,
    f: Vec<f64>,
    head: usize,
    len: usize,
    newest: f64,
    /// A sample older than one window has been dropped: the window covers its span.
    full: bool,
    value: Option<f64>,
    invalid: u64,
    duplicates: u64,
    out_of_order: u64,
}

impl RocofEstimator {
    pub fn new(cfg: RocofConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            t: vec![0.0; cfg.capacity],
            f: vec![0.0; cfg.capacity],
            head: 0,
            len: 0,
            newest: f64::NEG_INFINITY,
            full: false,
            value: None,
            invalid: 0,
            duplicates: 0,
            out_of_order: 0,
        })
    }

    pub fn config(&self) -> &RocofConfig {
        &self.cfg
    }

    /// Feed one frame: timestamp `t` (UNIX s), frequency `freq` (Hz) and the PMU's
    /// `dfreq` (Hz/s; pass NaN when absent and the source is `Frequency`). Returns the
    /// ROCOF in Hz/s once the window is full and this frame was accepted, else None.
    pub fn update(&mut self, t: f64, freq: f64, dfreq: f64) -> Option<f64> {
        let sample = match self.cfg.source {
            RocofSource::Frequency => freq,
            RocofSource::Dfreq => dfreq,
        };
        let sane = match self.cfg.source {
            RocofSource::Frequency => sample.is_finite() && sample > 0.0,
            RocofSource::Dfreq => sample.is_finite() && sample.abs() < 1e6,
        };
        if !(t.is_finite() && sane) {
            self.invalid += 1;
            return None;
        }
        if t == self.newest {
            self.duplicates += 1;
            return None;
        }
        if t < self.newest {
            self.out_of_order += 1;
            return None;
        }
        self.newest = t;
        if self.cfg.source == RocofSource::Dfreq {
            self.value = Some(sample);
            return self.value;
        }
        self.push(t, sample);
        self.value = if self.full { self.fit() } else { None };
        self.value
    }

    fn push(&mut self, t: f64, f: f64) {
        let cap = self.t.len();
        if self.len == cap {
            // The ring bounds the window at high frame rates; the fit is still valid.
            self.head = (self.head + 1) % cap;
            self.len -= 1;
            self.full = true;
        }
        let i = (self.head + self.len) % cap;
        self.t[i] = t;
        self.f[i] = f;
        self.len += 1;
        let edge = t - self.cfg.window_s - EDGE_EPS_S;
        while self.len > 1 && self.t[self.head] < edge {
            self.head = (self.head + 1) % cap;
            self.len -= 1;
            self.full = true;
        }
        if self.len >= 2 && t - self.t[self.head] >= self.cfg.window_s - EDGE_EPS_S {
            self.full = true;
        }
        if self.len < 2 {
            // A gap longer than the window: start filling again.
            self.full = false;
        }
    }

    fn fit(&self) -> Option<f64> {
        let cap = self.t.len();
        let n = self.len as f64;
        let (mut mt, mut mf) = (0.0, 0.0);
        let t0 = self.t[self.head];
        for k in 0..self.len {
            let i = (self.head + k) % cap;
            mt += self.t[i] - t0;
            mf += self.f[i];
        }
        mt /= n;
        mf /= n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for k in 0..self.len {
            let i = (self.head + k) % cap;
            let dt = self.t[i] - t0 - mt;
            sxy += dt * (self.f[i] - mf);
            sxx += dt * dt;
        }
        let slope = sxy / sxx;
        (sxx > 0.0 && slope.is_finite()).then_some(slope)
    }

    /// Latest estimate (None until the window is full).
    pub fn value(&self) -> Option<f64> {
        self.value
    }

    pub fn is_full(&self) -> bool {
        self.full || (self.cfg.source == RocofSource::Dfreq && self.value.is_some())
    }

    /// Samples currently in the fit window.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn invalid_count(&self) -> u64 {
        self.invalid
    }

    pub fn duplicate_count(&self) -> u64 {
        self.duplicates
    }

    pub fn out_of_order_count(&self) -> u64 {
        self.out_of_order
    }

    pub fn reset(&mut self) {
        self.head = 0;
        self.len = 0;
        self.newest = f64::NEG_INFINITY;
        self.full = false;
        self.value = None;
        self.invalid = 0;
        self.duplicates = 0;
        self.out_of_order = 0;
    }
}

#[cfg(test)]
mod tests;
