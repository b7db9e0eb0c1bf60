//! Parameters of the droop controller, with defaults and validation.

use crate::error::ConfigError;

/// Parameters of [`DroopController`]. Units: kW, percent, Hz, kW/s, kW per Hz/s, percent SOC, degrees C.
///
/// The frequency characteristic is a straight droop from the deadband edge
/// (`droop_percent`), or, with `knee_hz > 0`, two segments given by the service's own
/// points, the same on both sides of nominal (deviations measured from `nominal_hz`):
/// 0 at the deadband edge, `knee_percent` of `p_max_kw` at `knee_hz`, 100 % at
/// `full_hz`, linear between, and on along the outer segment's line beyond `full_hz`
/// (the power limits hold it). With a knee `droop_percent` is not used. GB Dynamic
/// Containment: deadband 49.985-50.015, `knee_hz` 0.2, `knee_percent` 5, `full_hz` 0.5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DroopConfig {
    pub p_max_kw: f64,
    pub droop_percent: f64,
    pub nominal_hz: f64,
    pub deadband_low_hz: f64,
    pub deadband_high_hz: f64,
    /// Deviation from nominal at the knee, Hz (0 = no knee: the straight droop).
    pub knee_hz: f64,
    /// Response at the knee, % of `p_max_kw`, in (0, 100) (0 without a knee).
    pub knee_percent: f64,
    /// Deviation from nominal at full response (100 % of `p_max_kw`), Hz, beyond
    /// `knee_hz` (0 without a knee).
    pub full_hz: f64,
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
    /// no knee,
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
            knee_hz: 0.0,
            knee_percent: 0.0,
            full_hz: 0.0,
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
        self.validate_knee()?;
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

    /// `knee_percent` as a fraction of `p_max_kw`.
    pub(crate) fn knee_pct_fraction(&self) -> f64 {
        self.knee_percent / 100.0
    }

    /// The knee: none (all three zero), or points beyond the deadband edges on both
    /// sides, a response in (0, 100) % at the knee and full response further out, so
    /// that the response is continuous, strictly monotonic beyond the deadband and its
    /// slopes are finite.
    fn validate_knee(&self) -> Result<(), ConfigError> {
        let (knee, pct, full) = (self.knee_hz, self.knee_percent, self.full_hz);
        if !(knee.is_finite() && knee >= 0.0) {
            return Err(ConfigError::new(
                "knee_hz",
                format!("must be >= 0 and finite (0 = no knee), got {knee}"),
            ));
        }
        if knee == 0.0 {
            // A knee_percent or full_hz without knee_hz would be silently ignored.
            for (name, v) in [("knee_percent", pct), ("full_hz", full)] {
                if v != 0.0 {
                    return Err(ConfigError::new(
                        name,
                        format!("must be 0 without a knee (knee_hz 0), got {v}"),
                    ));
                }
            }
            return Ok(());
        }
        let below = self.nominal_hz - self.deadband_low_hz;
        let above = self.deadband_high_hz - self.nominal_hz;
        if !(knee > below && knee > above) {
            return Err(ConfigError::new(
                "knee_hz",
                format!(
                    "must be beyond both deadband edges ({below} and {above} Hz from \
                     nominal), got {knee}"
                ),
            ));
        }
        if !(pct.is_finite() && pct > 0.0 && pct < 100.0) {
            return Err(ConfigError::new(
                "knee_percent",
                format!("must be in (0, 100) with a knee, got {pct}"),
            ));
        }
        if !(full.is_finite() && full > knee) {
            return Err(ConfigError::new(
                "full_hz",
                format!("must be finite and beyond knee_hz ({knee}), got {full}"),
            ));
        }
        // Points too close together give slopes that overflow.
        let slopes = [
            pct / (knee - below),
            pct / (knee - above),
            (100.0 - pct) / (full - knee),
        ];
        if !slopes.iter().all(|s| s.is_finite()) {
            return Err(ConfigError::new(
                "knee_hz",
                "the knee is too close to a deadband edge or to full_hz",
            ));
        }
        Ok(())
    }
}
