//! Droop controller: proportional frequency response beyond a deadband, an optional
//! inertia term, SOC / temperature derating, power limits and a timestamp-based ramp.
//!
//! Per sample, in this order (positive = discharge):
//! 1. droop: `P_f = -(p_max / R) * (f - edge) / f_nom` with `edge` the deadband edge
//!    that was crossed (`R = droop_percent / 100`), zero inside the deadband, so the
//!    output is continuous at both edges; or, with a knee (`knee_hz > 0`), two segments
//!    through the service's points (deviation from nominal, response in % of p_max):
//!    (edge, 0), (`knee_hz`, `knee_percent`), (`full_hz`, 100), the outer one continued
//!    beyond `full_hz` (see [`DroopConfig`]);
//! 2. inertia: `P_i = -inertia_kw_per_hz_s * rocof` (zero when no valid ROCOF);
//! 3. derating: a positive (discharge) target times `soc_discharge_factor * temp_factor`,
//!    a negative (charge) one times `soc_charge_factor * temp_factor`;
//! 4. limits: clamp to `[-max_charge_kw, +max_discharge_kw]` -> `target_kw`;
//! 5. ramp: `output_kw` moves toward `target_kw` by at most `ramp_kw_per_s * dt`, with
//!    `dt` from frame timestamps, so the trajectory is the same at any frame rate.
//!
//! Fail safe: an invalid frequency gives a zero target (no response without a
//! measurement); an invalid timestamp, or one not after the previous, holds the output;
//! an invalid SOC or temperature derates to zero. All are counted.

use crate::error::ConfigError;

mod config;
pub use config::DroopConfig;

/// One decision of the controller (all kW, positive = discharge).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DroopOutput {
    /// Pure droop term before inertia, derating and limits.
    pub droop_kw: f64,
    /// Inertia term `-H_k * rocof`.
    pub inertia_kw: f64,
    /// Derating factor applied (1 = none, 0 = blocked in this direction).
    pub derate: f64,
    /// Unramped target after derating and limits.
    pub target_kw: f64,
    /// Ramped output: what to send.
    pub output_kw: f64,
    /// False when the frequency was invalid (target forced to zero).
    pub valid: bool,
}

/// Linear factor: 1 at or beyond `one`, 0 at or beyond `zero`, linear between.
fn ramp_factor(x: f64, one: f64, zero: f64) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    ((x - zero) / (one - zero)).clamp(0.0, 1.0)
}

#[derive(Debug, Clone)]
pub struct DroopController {
    cfg: DroopConfig,
    output: f64,
    last_t: f64,
    invalid: u64,
}

impl DroopController {
    pub fn new(cfg: DroopConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            output: 0.0,
            last_t: f64::NAN,
            invalid: 0,
        })
    }

    pub fn config(&self) -> &DroopConfig {
        &self.cfg
    }

    /// Droop term alone for frequency `f` (Hz): zero inside the deadband. NaN for NaN input.
    pub fn droop_kw(&self, f: f64) -> f64 {
        let c = &self.cfg;
        if c.knee_hz > 0.0 {
            return self.knee_kw(f);
        }
        let gain = c.p_max_kw / (c.droop_percent / 100.0);
        if f < c.deadband_low_hz {
            -gain * (f - c.deadband_low_hz) / c.nominal_hz
        } else if f > c.deadband_high_hz {
            -gain * (f - c.deadband_high_hz) / c.nominal_hz
        } else if f.is_nan() {
            f64::NAN
        } else {
            0.0
        }
    }

    /// The two-segment characteristic (`knee_hz > 0`): the fraction of `p_max_kw` at a
    /// deviation `x` beyond the edge `edge` (both from nominal, Hz), then signed:
    /// under-frequency discharges, over-frequency charges.
    fn knee_kw(&self, f: f64) -> f64 {
        let c = &self.cfg;
        let knee = c.knee_pct_fraction();
        // Each segment as knee + share x (a ratio in [0, 1] at its ends): rounding then
        // keeps the inner segment at or below the knee and the outer at or above it, so
        // the response is monotonic to the last bit across the knee.
        let fraction = |x: f64, edge: f64| -> f64 {
            if x <= c.knee_hz {
                knee * ((x - edge) / (c.knee_hz - edge))
            } else {
                knee + (1.0 - knee) * (x - c.knee_hz) / (c.full_hz - c.knee_hz)
            }
        };
        if f < c.deadband_low_hz {
            c.p_max_kw * fraction(c.nominal_hz - f, c.nominal_hz - c.deadband_low_hz)
        } else if f > c.deadband_high_hz {
            -c.p_max_kw * fraction(f - c.nominal_hz, c.deadband_high_hz - c.nominal_hz)
        } else if f.is_nan() {
            f64::NAN
        } else {
            0.0
        }
    }

    /// Derating factor for a target of sign `discharge` at `soc_pct` and `temp_c`.
    pub fn derate(&self, discharge: bool, soc_pct: f64, temp_c: f64) -> f64 {
        let c = &self.cfg;
        let soc = if discharge {
            ramp_factor(soc_pct, c.soc_low_knee_pct, c.soc_min_pct)
        } else {
            ramp_factor(soc_pct, c.soc_high_knee_pct, c.soc_max_pct)
        };
        soc * ramp_factor(temp_c, c.temp_knee_c, c.temp_max_c)
    }

    /// One frame: timestamp `t` (UNIX s), frequency `f` (Hz), `rocof` (Hz/s, NaN if none),
    /// `soc_pct`, `temp_c` (hottest cell). Never allocates, never panics.
    pub fn update(&mut self, t: f64, f: f64, rocof: f64, soc_pct: f64, temp_c: f64) -> DroopOutput {
        let c = self.cfg;
        let valid = f.is_finite() && f > 0.0;
        let (droop, inertia) = if valid {
            let inertia = if rocof.is_finite() {
                -c.inertia_kw_per_hz_s * rocof
            } else {
                0.0
            };
            (self.droop_kw(f), if inertia == 0.0 { 0.0 } else { inertia })
        } else {
            self.invalid += 1;
            (0.0, 0.0)
        };
        let raw = droop + inertia;
        let derate = self.derate(raw > 0.0, soc_pct, temp_c);
        let mut target = (raw * derate).clamp(-c.max_charge_kw, c.max_discharge_kw);
        if !target.is_finite() {
            target = 0.0;
        }
        if t.is_finite() && (self.last_t.is_nan() || t > self.last_t) {
            if !self.last_t.is_nan() {
                let step = c.ramp_kw_per_s * (t - self.last_t);
                self.output = target.clamp(self.output - step, self.output + step);
            }
            self.last_t = t;
        } else {
            self.invalid += 1;
        }
        self.output = self.output.clamp(-c.max_charge_kw, c.max_discharge_kw);
        DroopOutput {
            droop_kw: droop,
            inertia_kw: inertia,
            derate,
            target_kw: target,
            output_kw: self.output,
            valid,
        }
    }

    pub fn output_kw(&self) -> f64 {
        self.output
    }

    pub fn invalid_count(&self) -> u64 {
        self.invalid
    }

    /// Take a new configuration (a new participation share, droop or deadband) without
    /// losing the state: the output carries over, bounded by the new limits, and ramps on
    /// from there toward the new target. The previous configuration stays if `cfg` is
    /// invalid.
    pub fn reconfigure(&mut self, cfg: DroopConfig) -> Result<(), ConfigError> {
        cfg.validate()?;
        self.cfg = cfg;
        self.output = self.output.clamp(-cfg.max_charge_kw, cfg.max_discharge_kw);
        Ok(())
    }

    /// No measurement for `dt_s` seconds: the output ramps toward zero as it would for an
    /// invalid frame, and the next frame starts a new ramp interval (the time without
    /// frames is not credited to it).
    pub fn decay(&mut self, dt_s: f64) {
        let c = &self.cfg;
        if dt_s.is_finite() && dt_s > 0.0 {
            let step = c.ramp_kw_per_s * dt_s;
            self.output = 0.0_f64.clamp(self.output - step, self.output + step);
        }
        self.restart_clock();
    }

    /// Forget the frame clock (the PMU's time base changed): the next frame starts a new
    /// ramp interval from the present output.
    pub fn restart_clock(&mut self) {
        self.last_t = f64::NAN;
    }

    /// Restart the ramp from `output_kw` (e.g. the measured inverter power) at the next frame.
    pub fn reset(&mut self, output_kw: f64) {
        let c = &self.cfg;
        self.output = if output_kw.is_finite() {
            output_kw.clamp(-c.max_charge_kw, c.max_discharge_kw)
        } else {
            0.0
        };
        self.last_t = f64::NAN;
    }
}

#[cfg(test)]
mod tests_knee;

#[cfg(test)]
mod tests {
    use super::*;

    fn ctl() -> DroopController {
        let mut c = DroopConfig::new(100.0);
        c.ramp_kw_per_s = f64::INFINITY;
        DroopController::new(c).unwrap()
    }

    #[test]
    fn continuous_at_edges_and_slope() {
        let d = ctl();
        assert_eq!(d.droop_kw(49.90), 0.0);
        assert_eq!(d.droop_kw(50.05), 0.0);
        assert_eq!(d.droop_kw(50.0), 0.0);
        assert!(d.droop_kw(49.9 - 1e-9).abs() < 1e-5);
        assert!(d.droop_kw(50.05 + 1e-9).abs() < 1e-5);
        // slope: p_max / (R f_nom) = 100 / 2.5 = 40 kW/Hz
        assert!((d.droop_kw(49.80) - 4.0).abs() < 1e-9);
        assert!((d.droop_kw(50.15) + 4.0).abs() < 1e-9);
        // full power 2.5 Hz beyond the edge
        assert!((d.droop_kw(47.40) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn limits_and_inertia() {
        let mut c = DroopConfig::new(100.0);
        c.ramp_kw_per_s = f64::INFINITY;
        c.max_charge_kw = 30.0;
        c.max_discharge_kw = 60.0;
        c.inertia_kw_per_hz_s = 10.0;
        let mut d = DroopController::new(c).unwrap();
        assert_eq!(d.update(0.0, 45.0, f64::NAN, 50.0, 25.0).target_kw, 60.0);
        assert_eq!(d.update(1.0, 55.0, f64::NAN, 50.0, 25.0).target_kw, -30.0);
        let o = d.update(2.0, 50.0, -0.5, 50.0, 25.0);
        assert_eq!((o.inertia_kw, o.target_kw), (5.0, 5.0));
    }

    #[test]
    fn ramp_same_at_any_rate() {
        for fps in [10.0, 25.0, 50.0] {
            let mut c = DroopConfig::new(100.0);
            c.ramp_kw_per_s = 20.0;
            let mut d = DroopController::new(c).unwrap();
            let mut at_1s = 0.0;
            for k in 0..=(3.0 * fps) as usize {
                let t = k as f64 / fps;
                let o = d.update(t, 48.0, f64::NAN, 50.0, 25.0);
                if k == fps as usize {
                    at_1s = o.output_kw;
                }
            }
            assert!((at_1s - 20.0).abs() < 1e-9, "fps {fps}: {at_1s}");
            assert!((d.output_kw() - 60.0).abs() < 1e-9);
        }
    }

    #[test]
    fn derating() {
        let d = ctl();
        assert_eq!(d.derate(true, 50.0, 25.0), 1.0);
        assert!((d.derate(true, 15.0, 25.0) - 0.5).abs() < 1e-12);
        assert_eq!(d.derate(true, 10.0, 25.0), 0.0);
        assert_eq!(d.derate(false, 10.0, 25.0), 1.0);
        assert!((d.derate(false, 95.0, 25.0) - 0.5).abs() < 1e-12);
        assert!((d.derate(false, 50.0, 50.0) - 0.5).abs() < 1e-12);
        assert_eq!(d.derate(true, f64::NAN, 25.0), 0.0);
        assert_eq!(d.derate(true, 50.0, f64::INFINITY), 0.0);
    }

    #[test]
    fn invalid_inputs_fail_safe() {
        let mut d = DroopController::new(DroopConfig::new(100.0)).unwrap();
        for t in 0..20 {
            d.update(t as f64 * 0.1, 49.0, f64::NAN, 50.0, 25.0);
        }
        let held = d.output_kw();
        assert!(held > 0.0);
        let o = d.update(f64::NAN, 49.0, f64::NAN, 50.0, 25.0);
        assert_eq!(o.output_kw, held);
        let o = d.update(2.1, f64::NAN, f64::INFINITY, f64::NAN, f64::NAN);
        assert!(!o.valid);
        assert_eq!(o.target_kw, 0.0);
        assert!(o.output_kw < held);
        assert_eq!(d.invalid_count(), 2);
    }

    #[test]
    fn special_values_never_escape_limits() {
        let sp = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -1e308,
            1e308,
            49.0,
            51.0,
            1e-300,
        ];
        let mut c = DroopConfig::new(100.0);
        c.inertia_kw_per_hz_s = 50.0;
        let mut d = DroopController::new(c).unwrap();
        for (i, &t) in sp.iter().enumerate() {
            for &f in &sp {
                for &r in &sp {
                    let o = d.update(t + i as f64, f, r, sp[i % sp.len()], sp[(i + 3) % sp.len()]);
                    assert!(o.output_kw.is_finite() && o.target_kw.is_finite());
                    assert!(o.output_kw.abs() <= 100.0 && o.target_kw.abs() <= 100.0);
                }
            }
        }
    }

    #[test]
    fn bad_config() {
        let mut c = DroopConfig::new(100.0);
        c.droop_percent = 0.0;
        assert_eq!(DroopController::new(c).unwrap_err().field, "droop_percent");
        let mut c = DroopConfig::new(100.0);
        c.deadband_low_hz = 50.1;
        assert_eq!(
            DroopController::new(c).unwrap_err().field,
            "deadband_low_hz"
        );
        assert_eq!(
            DroopController::new(DroopConfig::new(f64::NAN))
                .unwrap_err()
                .field,
            "p_max_kw"
        );
    }
}
