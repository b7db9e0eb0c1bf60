//! Python face of the control computations: `FrequencyMonitor`, `RocofEstimator`,
//! (this file), `DroopController` (`control/droop.rs`) and `SafetyEnvelope`
//! (`control/safety.rs`, `control/telemetry.rs`).
//!
//! Thin shims: each class wraps the `vpp-rt` type; parameters are keyword-only with the
//! documented defaults and invalid ones raise `vpp.errors.ConfigError` naming the field.
//! Per-sample calls take microseconds, so they keep the GIL.

use pyo3::prelude::*;
use vpp_rt::{
    Band, BandEdges, FrequencyMonitor, MonitorConfig, RocofConfig, RocofEstimator, RocofSource,
    Transition,
};

use crate::errors::{config_err, config_error};

pub(crate) mod droop;
pub(crate) mod safety;
pub(crate) mod telemetry;

/// Operator frequency band (IEGC defaults: 49.50 / 49.90 / 50.05 / 50.50 Hz).
#[pyclass(module = "vpp._core", name = "Band", eq, eq_int, frozen, hash)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PyBand {
    #[pyo3(name = "CRITICAL_LOW")]
    CriticalLow,
    #[pyo3(name = "LOW")]
    Low,
    #[pyo3(name = "NORMAL")]
    Normal,
    #[pyo3(name = "HIGH")]
    High,
    #[pyo3(name = "CRITICAL_HIGH")]
    CriticalHigh,
}

impl From<Band> for PyBand {
    fn from(b: Band) -> Self {
        match b {
            Band::CriticalLow => Self::CriticalLow,
            Band::Low => Self::Low,
            Band::Normal => Self::Normal,
            Band::High => Self::High,
            Band::CriticalHigh => Self::CriticalHigh,
        }
    }
}

impl From<PyBand> for Band {
    fn from(b: PyBand) -> Self {
        match b {
            PyBand::CriticalLow => Self::CriticalLow,
            PyBand::Low => Self::Low,
            PyBand::Normal => Self::Normal,
            PyBand::High => Self::High,
            PyBand::CriticalHigh => Self::CriticalHigh,
        }
    }
}

#[pymethods]
impl PyBand {
    /// Stable lower-case name: "critical_low", "low", "normal", "high", "critical_high".
    #[getter]
    fn label(&self) -> &'static str {
        Band::from(*self).name()
    }
}

/// A band change: `from_band` -> `to_band` at frame time `time` (UNIX s).
#[pyclass(module = "vpp._core", name = "Transition", frozen, get_all)]
#[derive(Clone, Copy)]
pub struct PyTransition {
    from_band: PyBand,
    to_band: PyBand,
    time: f64,
}

impl From<Transition> for PyTransition {
    fn from(t: Transition) -> Self {
        Self {
            from_band: t.from.into(),
            to_band: t.to.into(),
            time: t.time,
        }
    }
}

#[pymethods]
impl PyTransition {
    fn __repr__(&self) -> String {
        let (a, b) = (
            Band::from(self.from_band).name(),
            Band::from(self.to_band).name(),
        );
        format!("Transition({a} -> {b} at {})", self.time)
    }
}

/// Frequency band tracker with hysteresis and min / max / mean over the last
/// `window_samples` valid samples (O(1) amortised per sample).
#[pyclass(module = "vpp._core", name = "FrequencyMonitor")]
pub struct PyFrequencyMonitor {
    pub(crate) inner: FrequencyMonitor,
}

#[pymethods]
impl PyFrequencyMonitor {
    #[new]
    #[pyo3(signature = (*, nominal_hz=50.0, critical_low_hz=49.50, low_hz=49.90, high_hz=50.05,
                        critical_high_hz=50.50, hysteresis_hz=0.01, window_samples=50))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        nominal_hz: f64,
        critical_low_hz: f64,
        low_hz: f64,
        high_hz: f64,
        critical_high_hz: f64,
        hysteresis_hz: f64,
        window_samples: usize,
    ) -> PyResult<Self> {
        let cfg = MonitorConfig {
            edges: BandEdges {
                critical_low: critical_low_hz,
                low: low_hz,
                high: high_hz,
                critical_high: critical_high_hz,
            },
            nominal_hz,
            hysteresis_hz,
            window_samples,
        };
        FrequencyMonitor::new(cfg)
            .map(|inner| Self { inner })
            .map_err(|e| config_err(py, &e))
    }

    /// Feed one sample (frame time `t` in UNIX s, frequency `f` in Hz); returns the band
    /// transition it caused, if any. Non-finite input is counted and ignored.
    fn update(&mut self, t: f64, f: f64) -> Option<PyTransition> {
        self.inner.update(t, f).map(Into::into)
    }

    /// The band of `f` with no hysteresis.
    fn classify(&self, py: Python<'_>, f: f64) -> PyResult<PyBand> {
        if !f.is_finite() {
            return Err(config_error(py, "f", format!("must be finite, got {f}")));
        }
        Ok(self.inner.config().edges.classify(f).into())
    }

    #[getter]
    fn band(&self) -> Option<PyBand> {
        self.inner.band().map(Into::into)
    }
    #[getter]
    fn last_transition(&self) -> Option<PyTransition> {
        self.inner.last_transition().map(Into::into)
    }
    /// Minimum frequency over the window, Hz (None when empty).
    #[getter]
    fn min(&self) -> Option<f64> {
        self.inner.min()
    }
    #[getter]
    fn max(&self) -> Option<f64> {
        self.inner.max()
    }
    #[getter]
    fn mean(&self) -> Option<f64> {
        self.inner.mean()
    }
    /// Latest sample minus nominal, Hz.
    #[getter]
    fn deviation(&self) -> Option<f64> {
        self.inner.deviation()
    }
    #[getter]
    fn invalid_count(&self) -> u64 {
        self.inner.invalid_count()
    }
    #[getter]
    fn transition_count(&self) -> u64 {
        self.inner.transition_count()
    }
    fn __len__(&self) -> usize {
        self.inner.len()
    }
    /// Forget the window, the band and the counters.
    fn reset(&mut self) {
        self.inner.reset();
    }
}

/// Least-squares ROCOF (Hz/s) over `window_s` seconds of frame timestamps, or the PMU's
/// DFREQ passed through (`source="dfreq"`). The default 0.1 s window meets the P-class
/// ROCOF response time (120 ms) at 10, 25 and 50 frames/s.
#[pyclass(module = "vpp._core", name = "RocofEstimator")]
pub struct PyRocofEstimator {
    pub(crate) inner: RocofEstimator,
}

#[pymethods]
impl PyRocofEstimator {
    #[new]
    #[pyo3(signature = (*, window_s=0.1, capacity=64, source="frequency"))]
    fn new(py: Python<'_>, window_s: f64, capacity: usize, source: &str) -> PyResult<Self> {
        let source = match source {
            "frequency" => RocofSource::Frequency,
            "dfreq" => RocofSource::Dfreq,
            other => {
                return Err(config_error(
                    py,
                    "source",
                    format!("must be 'frequency' or 'dfreq', got {other:?}"),
                ))
            }
        };
        RocofEstimator::new(RocofConfig {
            window_s,
            capacity,
            source,
        })
        .map(|inner| Self { inner })
        .map_err(|e| config_err(py, &e))
    }

    /// Feed one frame; returns the ROCOF once the window is full and the frame was
    /// accepted, else None. Duplicate and out-of-order timestamps are ignored and counted.
    #[pyo3(signature = (t, freq, dfreq=f64::NAN))]
    fn update(&mut self, t: f64, freq: f64, dfreq: f64) -> Option<f64> {
        self.inner.update(t, freq, dfreq)
    }

    #[getter]
    fn value(&self) -> Option<f64> {
        self.inner.value()
    }
    #[getter]
    fn is_full(&self) -> bool {
        self.inner.is_full()
    }
    #[getter]
    fn source(&self) -> &'static str {
        self.inner.config().source.name()
    }
    #[getter]
    fn window_s(&self) -> f64 {
        self.inner.config().window_s
    }
    #[getter]
    fn invalid_count(&self) -> u64 {
        self.inner.invalid_count()
    }
    #[getter]
    fn duplicate_count(&self) -> u64 {
        self.inner.duplicate_count()
    }
    #[getter]
    fn out_of_order_count(&self) -> u64 {
        self.inner.out_of_order_count()
    }
    fn __len__(&self) -> usize {
        self.inner.len()
    }
    fn reset(&mut self) {
        self.inner.reset();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBand>()?;
    m.add_class::<PyTransition>()?;
    m.add_class::<PyFrequencyMonitor>()?;
    m.add_class::<PyRocofEstimator>()?;
    droop::register(m)?;
    safety::register(m)
}
