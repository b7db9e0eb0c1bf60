//! Value types of the safety envelope: action, violation codes, telemetry, status.

/// What the controller must do, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Action {
    #[default]
    None,
    Log,
    Reduce,
    Stop,
    EmergencyShutdown,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Log => "log",
            Self::Reduce => "reduce",
            Self::Stop => "stop",
            Self::EmergencyShutdown => "emergency_shutdown",
        }
    }
}

/// Which check was violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViolationCode {
    StaleTelemetry,
    StaleBms,
    InvalidTelemetry,
    CellOvervoltageWarn,
    CellOvervoltageTrip,
    CellUndervoltageWarn,
    CellUndervoltageTrip,
    PackOvervoltage,
    PackUndervoltage,
    ChargeOvercurrent,
    DischargeOvercurrent,
    ChargeTemperature,
    DischargeTemperature,
    CriticalTemperature,
    TemperatureRiseRate,
    CellImbalanceWarn,
    CellImbalanceTrip,
    SocLow,
    SocHigh,
    SohLow,
    BmsFault,
    BmsEmergency,
    PowerOutsideEnvelope,
    Latched,
}

/// Number of distinct codes: the violation array never needs more slots.
pub const MAX_VIOLATIONS: usize = 24;

impl ViolationCode {
    pub fn name(self) -> &'static str {
        match self {
            Self::StaleTelemetry => "stale_telemetry",
            Self::StaleBms => "stale_bms",
            Self::InvalidTelemetry => "invalid_telemetry",
            Self::CellOvervoltageWarn => "cell_overvoltage_warn",
            Self::CellOvervoltageTrip => "cell_overvoltage_trip",
            Self::CellUndervoltageWarn => "cell_undervoltage_warn",
            Self::CellUndervoltageTrip => "cell_undervoltage_trip",
            Self::PackOvervoltage => "pack_overvoltage",
            Self::PackUndervoltage => "pack_undervoltage",
            Self::ChargeOvercurrent => "charge_overcurrent",
            Self::DischargeOvercurrent => "discharge_overcurrent",
            Self::ChargeTemperature => "charge_temperature",
            Self::DischargeTemperature => "discharge_temperature",
            Self::CriticalTemperature => "critical_temperature",
            Self::TemperatureRiseRate => "temperature_rise_rate",
            Self::CellImbalanceWarn => "cell_imbalance_warn",
            Self::CellImbalanceTrip => "cell_imbalance_trip",
            Self::SocLow => "soc_low",
            Self::SocHigh => "soc_high",
            Self::SohLow => "soh_low",
            Self::BmsFault => "bms_fault",
            Self::BmsEmergency => "bms_emergency",
            Self::PowerOutsideEnvelope => "power_outside_envelope",
            Self::Latched => "latched",
        }
    }
}

/// One violated check: the measured value and the limit it crossed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Violation {
    pub code: ViolationCode,
    pub value: f64,
    pub limit: f64,
    pub action: Action,
}

/// Battery and inverter telemetry. Current and power: positive = discharge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Telemetry {
    /// When it was measured, UNIX s.
    pub timestamp: f64,
    pub pack_voltage_v: f64,
    pub current_a: f64,
    pub cell_v_min: f64,
    pub cell_v_max: f64,
    pub temp_min_c: f64,
    pub temp_max_c: f64,
    pub soc_pct: f64,
    pub soh_pct: f64,
    pub bms_faults: u32,
    pub power_kw: f64,
    /// When the BMS data in it was measured (UNIX s), for a unit with a BMS; None for a
    /// unit without one. NaN means the BMS has never been heard: stale.
    pub bms_timestamp: Option<f64>,
}

impl Telemetry {
    /// No telemetry yet: every field NaN, so the envelope treats it as stale and stops.
    pub const fn missing() -> Self {
        Self {
            timestamp: f64::NAN,
            pack_voltage_v: f64::NAN,
            current_a: f64::NAN,
            cell_v_min: f64::NAN,
            cell_v_max: f64::NAN,
            temp_min_c: f64::NAN,
            temp_max_c: f64::NAN,
            soc_pct: f64::NAN,
            soh_pct: f64::NAN,
            bms_faults: 0,
            power_kw: f64::NAN,
            bms_timestamp: None,
        }
    }

    /// Set `cell_v_min` / `cell_v_max` from an array of cell voltages (non-finite -> NaN).
    pub fn set_cells(&mut self, cells: &[f64]) {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut bad = cells.is_empty();
        for &v in cells {
            bad |= !v.is_finite();
            lo = lo.min(v);
            hi = hi.max(v);
        }
        (self.cell_v_min, self.cell_v_max) = if bad { (f64::NAN, f64::NAN) } else { (lo, hi) };
    }
}

/// Result of one evaluation. `Copy`, fixed size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SafetyStatus {
    pub action: Action,
    /// Lowest allowed power, kW, after the ramp limit (= -max_charge_kw when not ramping).
    pub min_kw: f64,
    /// Highest allowed power, kW, after the ramp limit (= max_discharge_kw when not ramping).
    pub max_kw: f64,
    /// Allowed charge power before the ramp limit, kW (>= 0).
    pub max_charge_kw: f64,
    /// Allowed discharge power before the ramp limit, kW (>= 0).
    pub max_discharge_kw: f64,
    pub latched: bool,
    violations: [Violation; MAX_VIOLATIONS],
    len: usize,
}

impl SafetyStatus {
    pub(super) fn stopped() -> Self {
        let v = Violation {
            code: ViolationCode::Latched,
            value: 0.0,
            limit: 0.0,
            action: Action::None,
        };
        Self {
            action: Action::Stop,
            min_kw: 0.0,
            max_kw: 0.0,
            max_charge_kw: 0.0,
            max_discharge_kw: 0.0,
            latched: false,
            violations: [v; MAX_VIOLATIONS],
            len: 0,
        }
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations[..self.len]
    }

    pub fn has(&self, code: ViolationCode) -> bool {
        self.violations().iter().any(|v| v.code == code)
    }

    pub(super) fn push(&mut self, code: ViolationCode, value: f64, limit: f64, action: Action) {
        if self.len < MAX_VIOLATIONS {
            self.violations[self.len] = Violation {
                code,
                value,
                limit,
                action,
            };
            self.len += 1;
        }
        self.action = self.action.max(action);
    }
}
