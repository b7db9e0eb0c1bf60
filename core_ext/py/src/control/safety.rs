//! Python face of the safety envelope: `Telemetry`, `Action`, `ViolationCode`,
//! `Violation`, `SafetyStatus`, `SafetyReset`, `SafetyEnvelope`.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use vpp_rt::{
    Action, SafetyEnvelope, SafetyLimits, SafetyReset, SafetyStatus, Telemetry, Violation,
    ViolationCode,
};

use super::telemetry::PyTelemetry;

use crate::errors::{config_err, config_error};

/// Severity of the envelope's verdict, in increasing order.
#[pyclass(module = "vpp._core", name = "Action", eq, eq_int, ord, frozen, hash)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PyAction {
    #[pyo3(name = "NONE")]
    None,
    #[pyo3(name = "LOG")]
    Log,
    #[pyo3(name = "REDUCE")]
    Reduce,
    #[pyo3(name = "STOP")]
    Stop,
    #[pyo3(name = "EMERGENCY_SHUTDOWN")]
    EmergencyShutdown,
}

impl From<Action> for PyAction {
    fn from(a: Action) -> Self {
        match a {
            Action::None => Self::None,
            Action::Log => Self::Log,
            Action::Reduce => Self::Reduce,
            Action::Stop => Self::Stop,
            Action::EmergencyShutdown => Self::EmergencyShutdown,
        }
    }
}

#[pymethods]
impl PyAction {
    /// Stable lower-case name ("none", "log", "reduce", "stop", "emergency_shutdown").
    #[getter]
    fn label(&self) -> &'static str {
        match self {
            Self::None => Action::None.name(),
            Self::Log => Action::Log.name(),
            Self::Reduce => Action::Reduce.name(),
            Self::Stop => Action::Stop.name(),
            Self::EmergencyShutdown => Action::EmergencyShutdown.name(),
        }
    }
}

macro_rules! codes {
    ($($v:ident => $py:literal),* $(,)?) => {
        /// Which safety check was violated.
        #[pyclass(module = "vpp._core", name = "ViolationCode", eq, eq_int, frozen, hash, from_py_object)]
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub enum PyViolationCode { $(#[pyo3(name = $py)] $v),* }

        impl From<ViolationCode> for PyViolationCode {
            fn from(c: ViolationCode) -> Self {
                match c { $(ViolationCode::$v => Self::$v),* }
            }
        }

        impl From<PyViolationCode> for ViolationCode {
            fn from(c: PyViolationCode) -> Self {
                match c { $(PyViolationCode::$v => Self::$v),* }
            }
        }
    };
}

codes! {
    StaleTelemetry => "STALE_TELEMETRY",
    StaleBms => "STALE_BMS",
    InvalidTelemetry => "INVALID_TELEMETRY",
    CellOvervoltageWarn => "CELL_OVERVOLTAGE_WARN",
    CellOvervoltageTrip => "CELL_OVERVOLTAGE_TRIP",
    CellUndervoltageWarn => "CELL_UNDERVOLTAGE_WARN",
    CellUndervoltageTrip => "CELL_UNDERVOLTAGE_TRIP",
    PackOvervoltage => "PACK_OVERVOLTAGE",
    PackUndervoltage => "PACK_UNDERVOLTAGE",
    ChargeOvercurrent => "CHARGE_OVERCURRENT",
    DischargeOvercurrent => "DISCHARGE_OVERCURRENT",
    ChargeTemperature => "CHARGE_TEMPERATURE",
    DischargeTemperature => "DISCHARGE_TEMPERATURE",
    CriticalTemperature => "CRITICAL_TEMPERATURE",
    TemperatureRiseRate => "TEMPERATURE_RISE_RATE",
    CellImbalanceWarn => "CELL_IMBALANCE_WARN",
    CellImbalanceTrip => "CELL_IMBALANCE_TRIP",
    SocLow => "SOC_LOW",
    SocHigh => "SOC_HIGH",
    SohLow => "SOH_LOW",
    BmsFault => "BMS_FAULT",
    BmsEmergency => "BMS_EMERGENCY",
    PowerOutsideEnvelope => "POWER_OUTSIDE_ENVELOPE",
    Latched => "LATCHED",
}

#[pymethods]
impl PyViolationCode {
    /// Stable lower-case name, e.g. "cell_overvoltage_trip".
    #[getter]
    fn label(&self) -> &'static str {
        ViolationCode::from(*self).name()
    }
}

/// One violated check: measured `value` against `limit`, and the action it calls for.
#[pyclass(module = "vpp._core", name = "Violation", frozen, get_all)]
#[derive(Clone, Copy)]
pub struct PyViolation {
    code: PyViolationCode,
    value: f64,
    limit: f64,
    action: PyAction,
}

impl From<&Violation> for PyViolation {
    fn from(v: &Violation) -> Self {
        Self {
            code: v.code.into(),
            value: v.value,
            limit: v.limit,
            action: v.action.into(),
        }
    }
}

#[pymethods]
impl PyViolation {
    fn __repr__(&self) -> String {
        let code = ViolationCode::from(self.code).name();
        format!(
            "Violation({code}, value={}, limit={}, action={})",
            self.value,
            self.limit,
            self.action.label()
        )
    }
}

/// Verdict of one evaluation: action, allowed range [min_kw, max_kw], latch, violations.
#[pyclass(module = "vpp._core", name = "SafetyStatus", frozen)]
pub struct PySafetyStatus {
    pub(crate) inner: SafetyStatus,
}

#[pymethods]
impl PySafetyStatus {
    #[getter]
    fn action(&self) -> PyAction {
        self.inner.action.into()
    }
    /// Lowest allowed power, kW (minus the allowed charge).
    #[getter]
    fn min_kw(&self) -> f64 {
        self.inner.min_kw
    }
    /// Highest allowed power, kW (the allowed discharge).
    #[getter]
    fn max_kw(&self) -> f64 {
        self.inner.max_kw
    }
    /// Allowed charge power before the ramp limit, kW (>= 0).
    #[getter]
    fn max_charge_kw(&self) -> f64 {
        self.inner.max_charge_kw
    }
    /// Allowed discharge power before the ramp limit, kW (>= 0).
    #[getter]
    fn max_discharge_kw(&self) -> f64 {
        self.inner.max_discharge_kw
    }
    #[getter]
    fn latched(&self) -> bool {
        self.inner.latched
    }
    #[getter]
    fn violations(&self) -> Vec<PyViolation> {
        self.inner.violations().iter().map(Into::into).collect()
    }
    /// Whether `code` is among the violations.
    fn has(&self, code: PyViolationCode) -> bool {
        self.inner.has(code.into())
    }
    fn __repr__(&self) -> String {
        let s = &self.inner;
        format!(
            "SafetyStatus({}, [{}, {}] kW, {} violations)",
            s.action.name(),
            s.min_kw,
            s.max_kw,
            s.violations().len()
        )
    }
}

/// What a reset of the emergency latch did. True when nothing is latched afterwards.
#[pyclass(module = "vpp._core", name = "SafetyReset", frozen)]
pub struct PySafetyReset {
    r: SafetyReset,
}

impl From<SafetyReset> for PySafetyReset {
    fn from(r: SafetyReset) -> Self {
        Self { r }
    }
}

#[pymethods]
impl PySafetyReset {
    /// A latch was cleared by this reset.
    #[getter]
    fn cleared(&self) -> bool {
        self.r == SafetyReset::Cleared
    }
    /// Something was latched before the reset.
    #[getter]
    fn was_latched(&self) -> bool {
        self.r != SafetyReset::NotLatched
    }
    /// What keeps the latch (stale or invalid telemetry, or the cause still present).
    #[getter]
    fn kept_by(&self) -> Option<PyViolationCode> {
        match self.r {
            SafetyReset::Kept(code) => Some(code.into()),
            _ => None,
        }
    }
    fn __bool__(&self) -> bool {
        !matches!(self.r, SafetyReset::Kept(_))
    }
    fn __repr__(&self) -> String {
        match self.r {
            SafetyReset::NotLatched => "SafetyReset(not latched)".into(),
            SafetyReset::Cleared => "SafetyReset(cleared)".into(),
            SafetyReset::Kept(c) => format!("SafetyReset(kept by {})", c.name()),
        }
    }
}

/// Float limits by name, in the order of the configuration reference.
macro_rules! float_limits {
    ($mac:ident) => {
        $mac!(
            cell_v_max_warn,
            cell_v_max_trip,
            cell_v_min_warn,
            cell_v_min_trip,
            pack_v_min,
            pack_v_max,
            max_charge_current_a,
            max_discharge_current_a,
            max_charge_kw,
            max_discharge_kw,
            ramp_kw_per_s,
            charge_temp_min_c,
            charge_temp_max_c,
            discharge_temp_min_c,
            discharge_temp_max_c,
            critical_temp_c,
            max_temp_rise_c_per_s,
            temp_rise_window_s,
            imbalance_warn_mv,
            imbalance_trip_mv,
            imbalance_derate,
            soc_min_pct,
            soc_max_pct,
            soh_min_pct,
            soh_derate,
            stale_after_s,
            bms_stale_after_s,
            power_tolerance_kw
        )
    };
}

fn set_limit(l: &mut SafetyLimits, name: &str, v: &Bound<'_, PyAny>) -> PyResult<bool> {
    macro_rules! set {
        ($($f:ident),*) => {
            match name {
                $(stringify!($f) => { l.$f = v.extract::<f64>()?; return Ok(true); })*
                "bms_stop_mask" => { l.bms_stop_mask = v.extract::<u32>()?; return Ok(true); }
                "bms_emergency_mask" => { l.bms_emergency_mask = v.extract::<u32>()?; return Ok(true); }
                _ => return Ok(false),
            }
        };
    }
    float_limits!(set)
}

fn limits_dict<'py>(py: Python<'py>, l: &SafetyLimits) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    macro_rules! get {
        ($($f:ident),*) => { $(d.set_item(stringify!($f), l.$f)?;)* };
    }
    float_limits!(get);
    d.set_item("bms_stop_mask", l.bms_stop_mask)?;
    d.set_item("bms_emergency_mask", l.bms_emergency_mask)?;
    Ok(d)
}

/// Safety envelope: allowed power range and action from telemetry. `preset` is
/// "lfp_16s" or "nmc_16s"; any limit (see `limits`) can be overridden by keyword.
#[pyclass(module = "vpp._core", name = "SafetyEnvelope")]
pub struct PySafetyEnvelope {
    pub(crate) inner: SafetyEnvelope,
}

#[pymethods]
impl PySafetyEnvelope {
    #[new]
    #[pyo3(signature = (preset="lfp_16s", **limits))]
    fn new(py: Python<'_>, preset: &str, limits: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut l = match preset {
            "lfp_16s" => SafetyLimits::lfp_16s(),
            "nmc_16s" => SafetyLimits::nmc_16s(),
            other => {
                return Err(config_error(
                    py,
                    "preset",
                    format!("must be 'lfp_16s' or 'nmc_16s', got {other:?}"),
                ))
            }
        };
        if let Some(kw) = limits {
            for (k, v) in kw.iter() {
                let name: String = k.extract()?;
                let known = set_limit(&mut l, &name, &v).map_err(|e| {
                    let field: &'static str = limit_name(&name).unwrap_or("limits");
                    config_error(py, field, format!("{name}: {e}"))
                })?;
                if !known {
                    return Err(config_error(
                        py,
                        "limits",
                        format!("unknown safety limit {name:?}"),
                    ));
                }
            }
        }
        SafetyEnvelope::new(l)
            .map(|inner| Self { inner })
            .map_err(|e| config_err(py, &e))
    }

    /// Evaluate telemetry at wall time `now` (UNIX s, for its age) and monotonic time
    /// `mono` (s, for the ramp; default `now`) and return the new status.
    #[pyo3(signature = (telemetry, now, mono=None))]
    fn evaluate(&mut self, telemetry: &PyTelemetry, now: f64, mono: Option<f64>) -> PySafetyStatus {
        let tel = Telemetry::from(telemetry);
        PySafetyStatus {
            inner: *self.inner.evaluate_at(&tel, now, mono.unwrap_or(now)),
        }
    }

    /// The inverter runs at `power_kw` at monotonic time `mono`: the ramp goes on from there.
    fn anchor(&mut self, power_kw: f64, mono: f64) {
        self.inner.anchor(power_kw, mono);
    }

    /// Clamp a requested power (kW, + = discharge) into the allowed range (NaN -> 0).
    fn clamp(&mut self, requested_kw: f64) -> f64 {
        self.inner.clamp(requested_kw)
    }

    /// Clear the emergency latch if the latest evaluation allows it (fresh telemetry from
    /// every source, every field finite, the emergency's cause gone).
    fn reset(&mut self) -> PySafetyReset {
        self.inner.reset().into()
    }

    #[getter]
    fn status(&self) -> PySafetyStatus {
        PySafetyStatus {
            inner: *self.inner.status(),
        }
    }
    #[getter]
    fn latched(&self) -> bool {
        self.inner.is_latched()
    }
    #[getter]
    fn invalid_count(&self) -> u64 {
        self.inner.invalid_count()
    }
    /// Every limit by name (a copy).
    #[getter]
    fn limits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        limits_dict(py, self.inner.limits())
    }
}

/// The static name of a limit, so ConfigError.field can carry it.
fn limit_name(name: &str) -> Option<&'static str> {
    macro_rules! find {
        ($($f:ident),*) => {
            [$(stringify!($f)),*, "bms_stop_mask", "bms_emergency_mask"].into_iter().find(|n| *n == name)
        };
    }
    float_limits!(find)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAction>()?;
    m.add_class::<PyViolationCode>()?;
    m.add_class::<PyViolation>()?;
    m.add_class::<PySafetyStatus>()?;
    m.add_class::<PySafetyReset>()?;
    m.add_class::<PyTelemetry>()?;
    m.add_class::<PySafetyEnvelope>()
}
