//! Python face of the per-frame pipeline (`vpp_rt::pipeline`).

use std::sync::Arc;

use vpp_rt::rtloop::{PiGuard, PiMutex};

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use vpp_rt::c37118::{StreamDecoder, StreamItem};
use vpp_rt::{
    AdmitConfig, Clock, Decision, DroopConfig, DroopController, FrameErrorKind, FrequencyMonitor,
    Invalid, Measurement, MonitorConfig, Outcome, Pipeline, PipelineConfig, Refusal, RocofConfig,
    RocofEstimator, SafetyEnvelope, SafetyLimits,
};

use crate::control::droop::PyDroopController;
use crate::control::safety::{
    PyAction, PySafetyEnvelope, PySafetyReset, PySafetyStatus, PyViolation,
};
use crate::control::telemetry::PyTelemetry;
use crate::control::{PyBand, PyFrequencyMonitor, PyRocofEstimator, PyTransition};
use crate::errors::{config_err, frame_err};

/// What the pipeline decided for one data frame (all powers in kW, positive = discharge).
#[pyclass(module = "vpp._core", name = "Decision", frozen)]
pub struct PyDecision {
    pub(crate) d: Decision,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

#[pymethods]
impl PyDecision {
    /// Frame time, UNIX seconds (SOC + FRACSEC / TIME_BASE).
    #[getter]
    fn time(&self) -> f64 {
        self.d.time
    }
    #[getter]
    fn idcode(&self) -> u16 {
        self.d.idcode
    }
    /// Measured frequency, Hz.
    #[getter]
    fn freq(&self) -> f64 {
        self.d.freq
    }
    /// False when the PMU flagged the data bad or the value was implausible.
    #[getter]
    fn freq_valid(&self) -> bool {
        self.d.freq_valid
    }
    /// ROCOF, Hz/s (None until the estimator has two samples).
    #[getter]
    fn rocof(&self) -> Option<f64> {
        finite(self.d.rocof)
    }
    #[getter]
    fn band(&self) -> Option<PyBand> {
        self.d.band.map(PyBand::from)
    }
    /// The band change that happened on this frame, if any.
    #[getter]
    fn transition(&self) -> Option<PyTransition> {
        self.d.transition.map(PyTransition::from)
    }
    /// Frequency response (droop + inertia, derated and ramped).
    #[getter]
    fn response_kw(&self) -> f64 {
        self.d.response_kw
    }
    #[getter]
    fn base_kw(&self) -> f64 {
        self.d.base_kw
    }
    /// base + response, before the safety envelope.
    #[getter]
    fn requested_kw(&self) -> f64 {
        self.d.requested_kw
    }
    /// The command for the battery: always inside [min_kw, max_kw].
    #[getter]
    fn setpoint_kw(&self) -> f64 {
        self.d.setpoint_kw
    }
    #[getter]
    fn min_kw(&self) -> f64 {
        self.d.safety.min_kw
    }
    #[getter]
    fn max_kw(&self) -> f64 {
        self.d.safety.max_kw
    }
    #[getter]
    fn action(&self) -> PyAction {
        self.d.safety.action.into()
    }
    #[getter]
    fn violations(&self) -> Vec<PyViolation> {
        self.d
            .safety
            .violations()
            .iter()
            .map(PyViolation::from)
            .collect()
    }
    /// The whole safety verdict.
    #[getter]
    fn safety(&self) -> PySafetyStatus {
        PySafetyStatus {
            inner: self.d.safety,
        }
    }
    /// Number of decisions the pipeline has made (1 for the first).
    #[getter]
    fn sequence(&self) -> u64 {
        self.d.sequence
    }

    /// A plain dict (JSON-friendly: names for band and action, violations as dicts).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("time", self.d.time)?;
        d.set_item("idcode", self.d.idcode)?;
        d.set_item("freq", self.d.freq)?;
        d.set_item("freq_valid", self.d.freq_valid)?;
        d.set_item("rocof", finite(self.d.rocof))?;
        d.set_item("band", self.d.band.map(|b| b.name()))?;
        d.set_item("response_kw", self.d.response_kw)?;
        d.set_item("base_kw", self.d.base_kw)?;
        d.set_item("requested_kw", self.d.requested_kw)?;
        d.set_item("setpoint_kw", self.d.setpoint_kw)?;
        d.set_item("min_kw", self.d.safety.min_kw)?;
        d.set_item("max_kw", self.d.safety.max_kw)?;
        d.set_item("action", self.d.safety.action.name())?;
        let v: Vec<Bound<'py, PyDict>> = self
            .d
            .safety
            .violations()
            .iter()
            .map(|v| {
                let e = PyDict::new(py);
                e.set_item("code", v.code.name())?;
                e.set_item("value", v.value)?;
                e.set_item("limit", v.limit)?;
                e.set_item("action", v.action.name())?;
                Ok(e)
            })
            .collect::<PyResult<_>>()?;
        d.set_item("violations", v)?;
        d.set_item("sequence", self.d.sequence)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Decision(t={:.3}, f={:.4} Hz, band={}, rocof={:.3} Hz/s, response={:.3} kW, \
             setpoint={:.3} kW in [{:.3}, {:.3}], action={})",
            self.d.time,
            self.d.freq,
            self.d.band.map_or("none", |b| b.name()),
            self.d.rocof,
            self.d.response_kw,
            self.d.setpoint_kw,
            self.d.safety.min_kw,
            self.d.safety.max_kw,
            self.d.safety.action.name(),
        )
    }
}

/// The controller's clocks: each given value, or the system's clock now.
fn clock(wall: Option<f64>, mono: Option<f64>) -> Clock {
    match (wall, mono) {
        (Some(wall), Some(mono)) => Clock { wall, mono },
        (wall, mono) => {
            let now = Clock::now();
            Clock {
                wall: wall.unwrap_or(now.wall),
                mono: mono.unwrap_or(now.mono),
            }
        }
    }
}

/// One call per PMU frame: decode -> admission -> band -> ROCOF -> droop -> + base ->
/// safety clamp.
///
/// Components given as objects are copied (configuration and state) into the pipeline;
/// the defaults are the IEGC bands, a 0.1 s ROCOF window, 5 % droop with the
/// 49.90-50.05 Hz deadband on `p_max_kw`, and the 16S LFP safety limits at `p_max_kw`.
/// Every measurement, from `process`, `step` or `process_buffer`, passes the same
/// admission rule (IDCODE, time order and jumps, STAT, plausibility; docs/pipeline.md).
/// The clocks (`wall` UNIX s, `mono` monotonic s) default to the system's; `replay=True`
/// takes the frame's own time for both. `process` releases the GIL and allocates
/// nothing per frame in steady state.
#[pyclass(module = "vpp._core", name = "Pipeline")]
pub struct PyPipeline {
    /// Shared with the real-time loop when one steps it (`RtLoop`): every method takes
    /// the lock only around its Rust call.
    pub(crate) inner: Arc<PiMutex<Pipeline>>,
}

impl PyPipeline {
    fn decision_of(&self, outcome: Outcome) -> Option<PyDecision> {
        (outcome == Outcome::Decision).then(|| PyDecision {
            d: *self.lock().decision(),
        })
    }

    /// The pipeline (held only for the Rust call; see `PiMutex`).
    fn lock(&self) -> PiGuard<'_, Pipeline> {
        self.inner.lock()
    }
}

#[pymethods]
impl PyPipeline {
    #[new]
    #[pyo3(signature = (*, p_max_kw=5.0, monitor=None, rocof=None, droop=None, safety=None,
                        idcode=None, pmu_index=0, max_deviation_hz=5.0, base_kw=0.0,
                        accept_sync_lost=false, max_lead_s=0.5, resync_after_s=2.0,
                        max_time_offset_s=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        p_max_kw: f64,
        monitor: Option<PyRef<'_, PyFrequencyMonitor>>,
        rocof: Option<PyRef<'_, PyRocofEstimator>>,
        droop: Option<PyRef<'_, PyDroopController>>,
        safety: Option<PyRef<'_, PySafetyEnvelope>>,
        idcode: Option<u16>,
        pmu_index: usize,
        max_deviation_hz: f64,
        base_kw: f64,
        accept_sync_lost: bool,
        max_lead_s: f64,
        resync_after_s: f64,
        max_time_offset_s: Option<f64>,
    ) -> PyResult<Self> {
        let e = |e: vpp_rt::ConfigError| config_err(py, &e);
        let monitor = match monitor {
            Some(m) => m.inner.clone(),
            None => FrequencyMonitor::new(MonitorConfig::default()).map_err(e)?,
        };
        let rocof = match rocof {
            Some(r) => r.inner.clone(),
            None => RocofEstimator::new(RocofConfig::default()).map_err(e)?,
        };
        let droop = match droop {
            Some(d) => d.inner.clone(),
            None => DroopController::new(DroopConfig::new(p_max_kw)).map_err(e)?,
        };
        let safety = match safety {
            Some(s) => s.inner.clone(),
            None => {
                let mut l = SafetyLimits::lfp_16s();
                l.max_charge_kw = p_max_kw;
                l.max_discharge_kw = p_max_kw;
                SafetyEnvelope::new(l).map_err(e)?
            }
        };
        let cfg = PipelineConfig {
            pmu_index,
            admit: AdmitConfig {
                idcode,
                max_deviation_hz,
                accept_sync_lost,
                max_lead_s,
                resync_after_s,
                max_offset_s: max_time_offset_s.unwrap_or(f64::INFINITY),
            },
        };
        let mut inner = Pipeline::new(cfg, monitor, rocof, droop, safety).map_err(e)?;
        inner.set_base_kw(base_kw).map_err(e)?;
        Ok(Self {
            inner: Arc::new(PiMutex::new(inner)),
        })
    }

    /// Feed one whole C37.118 frame. Returns the decision for an admitted data frame;
    /// None for a configuration, header or command frame (configurations are
    /// remembered) and for a refused data frame (counted in `stats`). Raises a
    /// `FrameError` subclass for a bad frame; the pipeline is unchanged by it.
    #[pyo3(signature = (frame, *, wall=None, mono=None, replay=false))]
    fn process(
        &mut self,
        py: Python<'_>,
        frame: &[u8],
        wall: Option<f64>,
        mono: Option<f64>,
        replay: bool,
    ) -> PyResult<Option<PyDecision>> {
        let inner = &self.inner;
        let lock = || inner.lock();
        let r = if replay {
            py.detach(|| lock().process_replay(frame))
        } else {
            let c = clock(wall, mono);
            py.detach(|| lock().process(frame, c))
        };
        match r {
            Ok(outcome) => Ok(self.decision_of(outcome)),
            Err(err) => Err(frame_err(py, &err)),
        }
    }

    /// One measurement from a decoded frame or another source: time `t` (UNIX s),
    /// `freq` (Hz), the PMU's `dfreq` (Hz/s), its `stat` word and `idcode`. The same
    /// admission rule as `process`; None when refused (counted in `stats`).
    #[pyo3(signature = (t, freq, dfreq=f64::NAN, stat=0, idcode=0, *, wall=None, mono=None))]
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        t: f64,
        freq: f64,
        dfreq: f64,
        stat: u16,
        idcode: u16,
        wall: Option<f64>,
        mono: Option<f64>,
    ) -> Option<PyDecision> {
        let m = Measurement {
            t,
            idcode,
            freq,
            dfreq,
            stat,
        };
        self.lock()
            .step(m, clock(wall, mono))
            .ok()
            .map(|d| PyDecision { d: *d })
    }

    /// A decision without a measurement (no frame, or none admitted): the response ramps
    /// toward zero, base power and the safety envelope go on.
    #[pyo3(signature = (*, wall=None, mono=None))]
    fn idle(&mut self, wall: Option<f64>, mono: Option<f64>) -> PyDecision {
        PyDecision {
            d: *self.lock().idle(clock(wall, mono)),
        }
    }

    /// The inverter runs at `power_kw` now: the ramp goes on from there (a controller
    /// that starts, or takes a unit back after it was offline or disabled).
    #[pyo3(signature = (power_kw, *, mono=None))]
    fn anchor(&mut self, power_kw: f64, mono: Option<f64>) {
        self.lock().anchor(power_kw, clock(None, mono));
    }

    /// New droop settings, taken from `droop`'s configuration, in place: the response
    /// and the envelope's ramp carry over.
    fn set_droop(&mut self, py: Python<'_>, droop: PyRef<'_, PyDroopController>) -> PyResult<()> {
        self.lock()
            .set_droop(*droop.inner.config())
            .map_err(|e| config_err(py, &e))
    }

    /// Feed a buffer of concatenated frames (configurations and data) with the GIL
    /// released, replaying them on their own time; returns NumPy arrays with one entry
    /// per decision: time, freq, rocof, response_kw, setpoint_kw, min_kw, max_kw, band
    /// (code, -1 none) and action (code), plus `errors`, the number of frames that
    /// failed, and `refused`, the number refused by the admission rule. After garbage the
    /// stream resynchronises on the next valid frame, as `StreamDecoder` does.
    fn process_buffer<'py>(
        &mut self,
        py: Python<'py>,
        buffer: &[u8],
    ) -> PyResult<Bound<'py, PyDict>> {
        let inner = &self.inner;
        let cols = py.detach(|| run_buffer(&mut inner.lock(), buffer));
        let d = PyDict::new(py);
        d.set_item("time", cols.time.into_pyarray(py))?;
        d.set_item("freq", cols.freq.into_pyarray(py))?;
        d.set_item("rocof", cols.rocof.into_pyarray(py))?;
        d.set_item("response_kw", cols.response.into_pyarray(py))?;
        d.set_item("setpoint_kw", cols.setpoint.into_pyarray(py))?;
        d.set_item("min_kw", cols.min_kw.into_pyarray(py))?;
        d.set_item("max_kw", cols.max_kw.into_pyarray(py))?;
        let band: Bound<'py, PyArray1<i8>> = cols.band.into_pyarray(py);
        d.set_item("band", band)?;
        d.set_item("action", cols.action.into_pyarray(py))?;
        d.set_item("errors", cols.errors)?;
        d.set_item("refused", cols.refused)?;
        Ok(d)
    }

    /// Latest battery telemetry (safety envelope and droop derating). Until it is set,
    /// and whenever it is older than the stale limit, the battery is stopped.
    fn set_telemetry(&mut self, telemetry: &PyTelemetry) {
        self.lock().set_telemetry(telemetry.into());
    }

    #[getter]
    fn telemetry(&self) -> PyTelemetry {
        (*self.lock().telemetry()).into()
    }

    /// Base schedule, kW (positive = discharge).
    #[getter]
    fn base_kw(&self) -> f64 {
        self.lock().base_kw()
    }

    #[setter]
    fn set_base_kw(&mut self, py: Python<'_>, kw: f64) -> PyResult<()> {
        self.lock().set_base_kw(kw).map_err(|e| config_err(py, &e))
    }

    /// The latest decision (None before the first data frame).
    #[getter]
    fn decision(&self) -> Option<PyDecision> {
        let d = *self.lock().decision();
        (d.sequence > 0).then_some(PyDecision { d })
    }

    /// Clear a latched emergency shutdown if the safety envelope allows it.
    fn reset_safety(&mut self) -> PySafetyReset {
        self.lock().reset_safety().into()
    }

    /// Whether the emergency latch is set now.
    #[getter]
    fn latched(&self) -> bool {
        self.lock().safety().is_latched()
    }

    /// The setpoint in force (the ramp runs from it; NaN before the first).
    #[getter]
    fn setpoint_in_force(&self) -> f64 {
        self.lock().safety().setpoint_in_force()
    }

    /// The droop's configuration: a copy with the present settings.
    #[getter]
    fn droop(&self) -> PyDroopController {
        PyDroopController {
            inner: self.lock().droop().clone(),
        }
    }

    /// IDCODEs of the configurations received so far.
    fn idcodes(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self.lock().configs().idcodes().collect();
        v.sort_unstable();
        v
    }

    /// Counters: frames, steps, decisions, configs, ignored, idle, resyncs,
    /// invalid_measurements, `invalid` (by reason), `refused` (by kind), `errors` (frame
    /// errors by kind), error_total, refused_total.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = *self.lock().stats();
        let d = PyDict::new(py);
        d.set_item("frames", s.frames)?;
        d.set_item("steps", s.steps)?;
        d.set_item("decisions", s.decisions)?;
        d.set_item("configs", s.configs)?;
        d.set_item("ignored", s.ignored)?;
        d.set_item("idle", s.idle)?;
        d.set_item("resyncs", s.resyncs)?;
        d.set_item("invalid_measurements", s.invalid_measurements)?;
        let invalid = PyDict::new(py);
        for (k, n) in Invalid::ALL.iter().zip(s.invalid) {
            invalid.set_item(k.name(), n)?;
        }
        d.set_item("invalid", invalid)?;
        let refused = PyDict::new(py);
        for (k, n) in Refusal::ALL.iter().zip(s.refused) {
            refused.set_item(k.name(), n)?;
        }
        d.set_item("refused", refused)?;
        d.set_item("refused_total", s.refused_total())?;
        let errors = PyDict::new(py);
        for (k, n) in FrameErrorKind::ALL.iter().zip(s.errors) {
            errors.set_item(k.name(), n)?;
        }
        d.set_item("errors", errors)?;
        d.set_item("error_total", s.error_total())?;
        Ok(d)
    }
}

#[derive(Default)]
struct Columns {
    time: Vec<f64>,
    freq: Vec<f64>,
    rocof: Vec<f64>,
    response: Vec<f64>,
    setpoint: Vec<f64>,
    min_kw: Vec<f64>,
    max_kw: Vec<f64>,
    band: Vec<i8>,
    action: Vec<u8>,
    errors: u64,
    refused: u64,
}

fn run_buffer(p: &mut Pipeline, buf: &[u8]) -> Columns {
    let mut c = Columns::default();
    // The codec's stream decoder splits the buffer and resynchronises after garbage
    // (one error per run of garbage), exactly as for a TCP stream.
    let mut stream = StreamDecoder::new();
    let mut on_item = |item: StreamItem<'_>| match item {
        StreamItem::Error(_) => c.errors += 1,
        StreamItem::Frame { bytes, .. } => match p.process_replay(bytes) {
            Ok(Outcome::Decision) => {
                let d = p.decision();
                c.time.push(d.time);
                c.freq.push(d.freq);
                c.rocof.push(d.rocof);
                c.response.push(d.response_kw);
                c.setpoint.push(d.setpoint_kw);
                c.min_kw.push(d.safety.min_kw);
                c.max_kw.push(d.safety.max_kw);
                c.band.push(d.band.map_or(-1, |b| b as i8));
                c.action.push(d.safety.action as u8);
            }
            Ok(Outcome::Refused(_)) => c.refused += 1,
            Ok(_) => {}
            Err(_) => c.errors += 1,
        },
    };
    stream.feed(buf, &mut on_item);
    // The end of the buffer: the bytes behind a false start are rescanned, not dropped.
    stream.finish(&mut on_item);
    c
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDecision>()?;
    m.add_class::<PyPipeline>()?;
    Ok(())
}
