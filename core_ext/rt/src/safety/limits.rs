//! Limits of the safety envelope, with presets for 16S LFP and 16S NMC packs.

use crate::error::ConfigError;

/// Every limit of [`super::SafetyEnvelope`]. Units: V, A, kW, kW/s, degrees C, C/s, mV,
/// percent, seconds. Current and power: positive = discharge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SafetyLimits {
    /// Cell over-voltage: warn blocks charging (Reduce), trip stops.
    pub cell_v_max_warn: f64,
    pub cell_v_max_trip: f64,
    /// Cell under-voltage: warn blocks discharging (Reduce), trip stops.
    pub cell_v_min_warn: f64,
    pub cell_v_min_trip: f64,
    /// Pack voltage window; outside it: Stop.
    pub pack_v_min: f64,
    pub pack_v_max: f64,
    /// Current beyond these blocks that direction (Reduce).
    pub max_charge_current_a: f64,
    pub max_discharge_current_a: f64,
    /// Rated power range before any check narrows it.
    pub max_charge_kw: f64,
    pub max_discharge_kw: f64,
    /// Ramp of the clamped output, kW/s (inf disables).
    pub ramp_kw_per_s: f64,
    /// Charging allowed only with all cells in [min, max] C (default 0-45).
    pub charge_temp_min_c: f64,
    pub charge_temp_max_c: f64,
    /// Discharging allowed only with all cells in [min, max] C (default -20-60).
    pub discharge_temp_min_c: f64,
    pub discharge_temp_max_c: f64,
    /// Hottest cell at or above this: emergency shutdown (default 70 C).
    pub critical_temp_c: f64,
    /// Rise of the hottest cell faster than this over the window: emergency (default 0.1 C/s over 10 s).
    pub max_temp_rise_c_per_s: f64,
    pub temp_rise_window_s: f64,
    /// Max - min cell voltage: warn logs, trip derates both directions by `imbalance_derate`.
    pub imbalance_warn_mv: f64,
    pub imbalance_trip_mv: f64,
    pub imbalance_derate: f64,
    /// At or below `soc_min_pct` discharging is blocked; at or above `soc_max_pct` charging is.
    pub soc_min_pct: f64,
    pub soc_max_pct: f64,
    /// Below `soh_min_pct` both directions are derated by `soh_derate`.
    pub soh_min_pct: f64,
    pub soh_derate: f64,
    /// BMS fault bits that stop (default: any) and that trigger an emergency (default: none).
    pub bms_stop_mask: u32,
    pub bms_emergency_mask: u32,
    /// Telemetry older (or newer) than this versus `now` is stale: Stop (default 2 s).
    pub stale_after_s: f64,
    /// The same for the BMS's own data, when the unit has a BMS (default 2 s): stale BMS
    /// data stops the unit even while the inverter answers.
    pub bms_stale_after_s: f64,
    /// Measured inverter power may exceed the range by this before it is logged.
    pub power_tolerance_kw: f64,
}

impl SafetyLimits {
    fn base(series: f64, v_max: f64, v_max_warn: f64, v_min: f64, v_min_warn: f64) -> Self {
        Self {
            cell_v_max_warn: v_max_warn,
            cell_v_max_trip: v_max,
            cell_v_min_warn: v_min_warn,
            cell_v_min_trip: v_min,
            pack_v_min: series * v_min,
            pack_v_max: series * v_max,
            max_charge_current_a: 100.0,
            max_discharge_current_a: 100.0,
            max_charge_kw: 5.0,
            max_discharge_kw: 5.0,
            ramp_kw_per_s: 5.0,
            charge_temp_min_c: 0.0,
            charge_temp_max_c: 45.0,
            discharge_temp_min_c: -20.0,
            discharge_temp_max_c: 60.0,
            critical_temp_c: 70.0,
            max_temp_rise_c_per_s: 0.1,
            temp_rise_window_s: 10.0,
            imbalance_warn_mv: 50.0,
            imbalance_trip_mv: 100.0,
            imbalance_derate: 0.5,
            soc_min_pct: 5.0,
            soc_max_pct: 95.0,
            soh_min_pct: 70.0,
            soh_derate: 0.5,
            bms_stop_mask: u32::MAX,
            bms_emergency_mask: 0,
            stale_after_s: 2.0,
            bms_stale_after_s: 2.0,
            power_tolerance_kw: 0.5,
        }
    }

    /// 16S LFP pack: cells 3.65 V max (warn 3.55), 2.5 V cut-off (warn 2.8); pack 40-58.4 V;
    /// 100 A and 5 kW each way.
    pub fn lfp_16s() -> Self {
        Self::base(16.0, 3.65, 3.55, 2.5, 2.8)
    }

    /// 16S NMC pack: cells 4.2 V max (warn 4.15), 2.75 V cut-off (warn 3.0); pack 44-67.2 V;
    /// 100 A and 5 kW each way.
    pub fn nmc_16s() -> Self {
        Self::base(16.0, 4.2, 4.15, 2.75, 3.0)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fin = |name: &'static str, v: f64| -> Result<(), ConfigError> {
            if v.is_finite() {
                Ok(())
            } else {
                Err(ConfigError::new(name, format!("must be finite, got {v}")))
            }
        };
        let pos = |name: &'static str, v: f64| -> Result<(), ConfigError> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::new(
                    name,
                    format!("must be positive and finite, got {v}"),
                ))
            }
        };
        let order = |name: &'static str, lo: f64, hi: f64, what: &str| -> Result<(), ConfigError> {
            if lo < hi {
                Ok(())
            } else {
                Err(ConfigError::new(name, format!("{what} ({lo} >= {hi})")))
            }
        };
        for (n, v) in [
            ("cell_v_min_trip", self.cell_v_min_trip),
            ("cell_v_min_warn", self.cell_v_min_warn),
            ("cell_v_max_warn", self.cell_v_max_warn),
            ("cell_v_max_trip", self.cell_v_max_trip),
            ("pack_v_min", self.pack_v_min),
            ("pack_v_max", self.pack_v_max),
            ("max_charge_current_a", self.max_charge_current_a),
            ("max_discharge_current_a", self.max_discharge_current_a),
            ("temp_rise_window_s", self.temp_rise_window_s),
            ("max_temp_rise_c_per_s", self.max_temp_rise_c_per_s),
            ("imbalance_warn_mv", self.imbalance_warn_mv),
            ("imbalance_trip_mv", self.imbalance_trip_mv),
            ("stale_after_s", self.stale_after_s),
            ("bms_stale_after_s", self.bms_stale_after_s),
        ] {
            pos(n, v)?;
        }
        for (n, v) in [
            ("charge_temp_min_c", self.charge_temp_min_c),
            ("charge_temp_max_c", self.charge_temp_max_c),
            ("discharge_temp_min_c", self.discharge_temp_min_c),
            ("discharge_temp_max_c", self.discharge_temp_max_c),
            ("critical_temp_c", self.critical_temp_c),
        ] {
            fin(n, v)?;
        }
        order(
            "cell_v_min_warn",
            self.cell_v_min_trip,
            self.cell_v_min_warn,
            "must be above cell_v_min_trip",
        )?;
        order(
            "cell_v_max_warn",
            self.cell_v_min_warn,
            self.cell_v_max_warn,
            "must be above cell_v_min_warn",
        )?;
        order(
            "cell_v_max_trip",
            self.cell_v_max_warn,
            self.cell_v_max_trip,
            "must be above cell_v_max_warn",
        )?;
        order(
            "pack_v_max",
            self.pack_v_min,
            self.pack_v_max,
            "must be above pack_v_min",
        )?;
        order(
            "charge_temp_max_c",
            self.charge_temp_min_c,
            self.charge_temp_max_c,
            "must be above charge_temp_min_c",
        )?;
        order(
            "discharge_temp_max_c",
            self.discharge_temp_min_c,
            self.discharge_temp_max_c,
            "must be above discharge_temp_min_c",
        )?;
        let hottest = self.charge_temp_max_c.max(self.discharge_temp_max_c);
        order(
            "critical_temp_c",
            hottest,
            self.critical_temp_c,
            "must be above both temperature windows",
        )?;
        order(
            "imbalance_trip_mv",
            self.imbalance_warn_mv,
            self.imbalance_trip_mv,
            "must be above imbalance_warn_mv",
        )?;
        for (n, v) in [
            ("max_charge_kw", self.max_charge_kw),
            ("max_discharge_kw", self.max_discharge_kw),
            ("power_tolerance_kw", self.power_tolerance_kw),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ConfigError::new(
                    n,
                    format!("must be >= 0 and finite, got {v}"),
                ));
            }
        }
        if self.ramp_kw_per_s.is_nan() || self.ramp_kw_per_s <= 0.0 {
            return Err(ConfigError::new(
                "ramp_kw_per_s",
                format!("must be > 0 (inf disables), got {}", self.ramp_kw_per_s),
            ));
        }
        for (n, v) in [
            ("imbalance_derate", self.imbalance_derate),
            ("soh_derate", self.soh_derate),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(ConfigError::new(n, format!("must be in [0, 1], got {v}")));
            }
        }
        for (n, v) in [
            ("soc_min_pct", self.soc_min_pct),
            ("soc_max_pct", self.soc_max_pct),
            ("soh_min_pct", self.soh_min_pct),
        ] {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                return Err(ConfigError::new(
                    n,
                    format!("must be in [0, 100] %, got {v}"),
                ));
            }
        }
        order(
            "soc_max_pct",
            self.soc_min_pct,
            self.soc_max_pct,
            "must be above soc_min_pct",
        )?;
        Ok(())
    }
}
