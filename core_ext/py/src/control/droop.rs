//! Python face of the droop controller: `DroopController` and its `DroopOutput`.

use pyo3::prelude::*;
use vpp_rt::{DroopConfig, DroopController, DroopOutput};

use crate::errors::config_err;

/// One droop decision, kW (positive = discharge).
#[pyclass(module = "vpp._core", name = "DroopOutput", frozen, get_all)]
#[derive(Clone, Copy)]
pub struct PyDroopOutput {
    droop_kw: f64,
    inertia_kw: f64,
    derate: f64,
    target_kw: f64,
    output_kw: f64,
    valid: bool,
}

impl From<DroopOutput> for PyDroopOutput {
    fn from(o: DroopOutput) -> Self {
        Self {
            droop_kw: o.droop_kw,
            inertia_kw: o.inertia_kw,
            derate: o.derate,
            target_kw: o.target_kw,
            output_kw: o.output_kw,
            valid: o.valid,
        }
    }
}

#[pymethods]
impl PyDroopOutput {
    fn __repr__(&self) -> String {
        format!(
            "DroopOutput(target_kw={}, output_kw={}, valid={})",
            self.target_kw, self.output_kw, self.valid
        )
    }
}

/// Droop frequency response with deadband, inertia term, SOC / temperature derating,
/// limits and a timestamp-based ramp. `None` limits default to `p_max_kw`; `None` ramp
/// defaults to `p_max_kw` per second. `knee_hz > 0` replaces the straight droop by two
/// segments through the service's points (deviations from nominal): 0 at the deadband
/// edge, `knee_percent` of `p_max_kw` at `knee_hz`, 100 % at `full_hz`.
#[pyclass(module = "vpp._core", name = "DroopController")]
pub struct PyDroopController {
    pub(crate) inner: DroopController,
}

#[pymethods]
impl PyDroopController {
    #[new]
    #[pyo3(signature = (*, p_max_kw, droop_percent=5.0, nominal_hz=50.0, deadband_low_hz=49.90,
                        deadband_high_hz=50.05, knee_hz=0.0, knee_percent=0.0, full_hz=0.0,
                        max_charge_kw=None, max_discharge_kw=None,
                        ramp_kw_per_s=None, inertia_kw_per_hz_s=0.0, soc_min_pct=10.0,
                        soc_low_knee_pct=20.0, soc_high_knee_pct=90.0, soc_max_pct=100.0,
                        temp_knee_c=45.0, temp_max_c=55.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        p_max_kw: f64,
        droop_percent: f64,
        nominal_hz: f64,
        deadband_low_hz: f64,
        deadband_high_hz: f64,
        knee_hz: f64,
        knee_percent: f64,
        full_hz: f64,
        max_charge_kw: Option<f64>,
        max_discharge_kw: Option<f64>,
        ramp_kw_per_s: Option<f64>,
        inertia_kw_per_hz_s: f64,
        soc_min_pct: f64,
        soc_low_knee_pct: f64,
        soc_high_knee_pct: f64,
        soc_max_pct: f64,
        temp_knee_c: f64,
        temp_max_c: f64,
    ) -> PyResult<Self> {
        let cfg = DroopConfig {
            p_max_kw,
            droop_percent,
            nominal_hz,
            deadband_low_hz,
            deadband_high_hz,
            knee_hz,
            knee_percent,
            full_hz,
            max_charge_kw: max_charge_kw.unwrap_or(p_max_kw),
            max_discharge_kw: max_discharge_kw.unwrap_or(p_max_kw),
            ramp_kw_per_s: ramp_kw_per_s.unwrap_or(p_max_kw),
            inertia_kw_per_hz_s,
            soc_min_pct,
            soc_low_knee_pct,
            soc_high_knee_pct,
            soc_max_pct,
            temp_knee_c,
            temp_max_c,
        };
        DroopController::new(cfg)
            .map(|inner| Self { inner })
            .map_err(|e| config_err(py, &e))
    }

    /// One frame: time `t` (UNIX s), frequency `f` (Hz), state of charge and hottest cell
    /// temperature, optional ROCOF (Hz/s) for the inertia term.
    #[pyo3(signature = (t, f, *, soc_pct, temp_c, rocof=None))]
    fn update(
        &mut self,
        t: f64,
        f: f64,
        soc_pct: f64,
        temp_c: f64,
        rocof: Option<f64>,
    ) -> PyDroopOutput {
        self.inner
            .update(t, f, rocof.unwrap_or(f64::NAN), soc_pct, temp_c)
            .into()
    }

    /// Droop term alone at frequency `f`, kW (zero inside the deadband).
    fn droop_kw(&self, f: f64) -> f64 {
        self.inner.droop_kw(f)
    }

    /// Derating factor in [0, 1] for a discharge (True) or charge (False) target.
    fn derate(&self, discharge: bool, soc_pct: f64, temp_c: f64) -> f64 {
        self.inner.derate(discharge, soc_pct, temp_c)
    }

    #[getter]
    fn output_kw(&self) -> f64 {
        self.inner.output_kw()
    }
    #[getter]
    fn invalid_count(&self) -> u64 {
        self.inner.invalid_count()
    }
    /// Restart the ramp from `output_kw` at the next frame.
    #[pyo3(signature = (output_kw=0.0))]
    fn reset(&mut self, output_kw: f64) {
        self.inner.reset(output_kw);
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDroopOutput>()?;
    m.add_class::<PyDroopController>()
}
