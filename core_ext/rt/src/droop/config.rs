//! Parameters of the droop controller, with defaults and validation.

use crate::error::ConfigError;

/// Parameters of [`DroopController`]. Units: kW, percent, Hz, kW/s, kW per Hz/s, percent SOC, degrees C.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DroopConfig {
    pub p_max_kw: f64,
    pub droop_percent: f64,
    pub nominal_hz: f64,
    pub deadband_low_hz: f64,
    pub deadband_high_hz: f64,
    pub max_charge_kw: f64,
    pub max_discharge_kw: f64,
    pub ramp_kw_per_s: f64,
    pub inertia_kw_per_hz_s: f64,
    pub soc_min_pct: f64,
    pub soc_low_knee_pct: f64,
    pub soc_high_knee_pct: f64,
    pub soc_max_pct: f64,
    pub temp_knee_c: f64,
    pub temp_max_c: f64,
}

impl DroopConfig {
    /// Defaults for a unit of `p_max_kw`: droop 5 %, deadband 49.90-50.05 Hz around 50.0,
    /// limits = p_max both ways, ramp p_max per second, no inertia, discharge derated
    /// below 20 % to zero at 10 % SOC, charge derated above 90 % to zero at 100 %,
    /// both derated above 45 C to zero at 55 C.
    pub fn new(p_max_kw: f64) -> Self {
        Self {
            p_max_kw,
            droop_percent: 5.0,
            nominal_hz: 50.0,
            deadband_low_hz: 49.90,
            deadband_high_hz: 50.05,
            max_charge_kw: p_max_kw,
            max_discharge_kw: p_max_kw,
            ramp_kw_per_s: p_max_kw,
            inertia_kw_per_hz_s: 0.0,
            soc_min_pct: 10.0,
            soc_low_knee_pct: 20.0,
            soc_high_knee_pct: 90.0,
            soc_max_pct: 100.0,
            temp_knee_c: 45.0,
            temp_max_c: 55.0,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
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
        let nonneg = |name: &'static str, v: f64| -> Result<(), ConfigError> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(ConfigError::new(
                    name,
                    format!("must be >= 0 and finite, got {v}"),
                ))
            }
        };
        pos("p_max_kw", self.p_max_kw)?;
        if !(self.droop_percent.is_finite()
            && self.droop_percent > 0.0
            && self.droop_percent <= 100.0)
        {
            return Err(ConfigError::new(
                "droop_percent",
                format!("must be in (0, 100], got {}", self.droop_percent),
            ));
        }
        pos("nominal_hz", self.nominal_hz)?;
        pos("deadband_low_hz", self.deadband_low_hz)?;
        pos("deadband_high_hz", self.deadband_high_hz)?;
        if self.deadband_low_hz > self.deadband_high_hz {
            return Err(ConfigError::new(
                "deadband_low_hz",
                format!(
                    "must be <= deadband_high_hz ({} > {})",
                    self.deadband_low_hz, self.deadband_high_hz
                ),
            ));
        }
        nonneg("max_charge_kw", self.max_charge_kw)?;
        nonneg("max_discharge_kw", self.max_discharge_kw)?;
        if self.ramp_kw_per_s.is_nan() || self.ramp_kw_per_s <= 0.0 {
            return Err(ConfigError::new(
                "ramp_kw_per_s",
                format!("must be > 0 (inf disables), got {}", self.ramp_kw_per_s),
            ));
        }
        nonneg("inertia_kw_per_hz_s", self.inertia_kw_per_hz_s)?;
        for (name, v) in [
            ("soc_min_pct", self.soc_min_pct),
            ("soc_low_knee_pct", self.soc_low_knee_pct),
            ("soc_high_knee_pct", self.soc_high_knee_pct),
            ("soc_max_pct", self.soc_max_pct),
        ] {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                return Err(ConfigError::new(
                    name,
                    format!("must be in [0, 100] %, got {v}"),
                ));
            }
        }
        if self.soc_min_pct >= self.soc_low_knee_pct {
            return Err(ConfigError::new(
                "soc_low_knee_pct",
                "must be above soc_min_pct",
            ));
        }
        if self.soc_high_knee_pct >= self.soc_max_pct {
            return Err(ConfigError::new(
                "soc_high_knee_pct",
                "must be below soc_max_pct",
            ));
        }
        if !(self.temp_knee_c.is_finite()
            && self.temp_max_c.is_finite()
            && self.temp_knee_c < self.temp_max_c)
        {
            return Err(ConfigError::new(
                "temp_knee_c",
                format!(
                    "must be finite and below temp_max_c ({} vs {})",
                    self.temp_knee_c, self.temp_max_c
                ),
            ));
        }
        Ok(())
    }
}
