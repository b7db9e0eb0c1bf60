//! Safety envelope: from battery telemetry, the allowed power range
//! `[-max_charge_kw, +max_discharge_kw]`, an action and the list of violations.
//!
//! The range always contains zero before the ramp limit is applied; every check can
//! only narrow it. A check blocks a direction (charge or discharge), derates both, or
//! stops (range `[0, 0]`). The action is the most severe of the violations. An
//! emergency shutdown latches: until `reset()` succeeds the range stays `[0, 0]`.
//! `reset()` succeeds only if the latest evaluation had fresh telemetry and no
//! emergency-level violation.
//!
//! `evaluate` and `clamp` never allocate: violations go to a fixed array.

use crate::error::ConfigError;

mod limits;
mod types;
pub use limits::SafetyLimits;
pub use types::{Action, SafetyStatus, Telemetry, Violation, ViolationCode, MAX_VIOLATIONS};

/// Temperature history for dT/dt: (time, hottest temperature), decimated so that the
/// fixed ring spans the configured window at any telemetry rate.
const TEMP_RING: usize = 16;

#[derive(Debug, Clone)]
pub struct SafetyEnvelope {
    lim: SafetyLimits,
    status: SafetyStatus,
    latched: bool,
    reset_ok: bool,
    hist: [(f64, f64); TEMP_RING],
    hist_head: usize,
    hist_len: usize,
    last_now: f64,
    last_out: f64,
    evaluations: u64,
    invalid: u64,
}

impl SafetyEnvelope {
    pub fn new(lim: SafetyLimits) -> Result<Self, ConfigError> {
        lim.validate()?;
        Ok(Self {
            lim,
            status: SafetyStatus::stopped(),
            latched: false,
            reset_ok: false,
            hist: [(0.0, 0.0); TEMP_RING],
            hist_head: 0,
            hist_len: 0,
            last_now: f64::NAN,
            last_out: f64::NAN,
            evaluations: 0,
            invalid: 0,
        })
    }

    pub fn limits(&self) -> &SafetyLimits {
        &self.lim
    }

    /// The latest status (range [0, 0] and Stop before the first evaluation).
    pub fn status(&self) -> &SafetyStatus {
        &self.status
    }

    pub fn is_latched(&self) -> bool {
        self.latched
    }

    /// Count of evaluations that found invalid (non-finite) telemetry or `now`.
    pub fn invalid_count(&self) -> u64 {
        self.invalid
    }

    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    fn temp_rate(&mut self, t: f64, temp: f64) -> Option<f64> {
        let (win, min_span) = (
            self.lim.temp_rise_window_s,
            self.lim.temp_rise_window_s / 2.0,
        );
        let newest = (self.hist_len > 0)
            .then(|| self.hist[(self.hist_head + self.hist_len - 1) % TEMP_RING]);
        match newest {
            Some((tn, _)) if t <= tn => {}
            Some((tn, _)) if t - tn < win / TEMP_RING as f64 => {}
            _ => {
                if self.hist_len == TEMP_RING {
                    self.hist_head = (self.hist_head + 1) % TEMP_RING;
                    self.hist_len -= 1;
                }
                self.hist[(self.hist_head + self.hist_len) % TEMP_RING] = (t, temp);
                self.hist_len += 1;
            }
        }
        while self.hist_len > 1 && self.hist[self.hist_head].0 < t - win {
            self.hist_head = (self.hist_head + 1) % TEMP_RING;
            self.hist_len -= 1;
        }
        let (t0, temp0) = self.hist[self.hist_head];
        (t - t0 >= min_span).then(|| (temp - temp0) / (t - t0))
    }

    /// Evaluate `tel` at time `now` (UNIX s) and return the new status.
    pub fn evaluate(&mut self, tel: &Telemetry, now: f64) -> &SafetyStatus {
        use Action as A;
        use ViolationCode as V;
        let l = self.lim;
        self.evaluations += 1;
        let mut s = SafetyStatus::stopped();
        s.action = A::None;
        let (mut chg, mut dis) = (l.max_charge_kw, l.max_discharge_kw);
        let mut stop = false;
        let mut emergency = false;
        let age = now - tel.timestamp;
        if !(age.is_finite() && age.abs() <= l.stale_after_s) {
            s.push(V::StaleTelemetry, age, l.stale_after_s, A::Stop);
            stop = true;
        } else {
            let fields = [
                tel.pack_voltage_v,
                tel.current_a,
                tel.cell_v_min,
                tel.cell_v_max,
                tel.temp_min_c,
                tel.temp_max_c,
                tel.soc_pct,
                tel.soh_pct,
            ];
            if fields.iter().any(|v| !v.is_finite()) {
                self.invalid += 1;
                s.push(V::InvalidTelemetry, f64::NAN, 0.0, A::Stop);
                stop = true;
            }
            // NaN comparisons are false, so a bad field simply skips its check below.
            let (vmax, vmin) = (tel.cell_v_max, tel.cell_v_min);
            if vmax >= l.cell_v_max_trip {
                s.push(V::CellOvervoltageTrip, vmax, l.cell_v_max_trip, A::Stop);
                stop = true;
            } else if vmax >= l.cell_v_max_warn {
                s.push(V::CellOvervoltageWarn, vmax, l.cell_v_max_warn, A::Reduce);
                chg = 0.0;
            }
            if vmin <= l.cell_v_min_trip {
                s.push(V::CellUndervoltageTrip, vmin, l.cell_v_min_trip, A::Stop);
                stop = true;
            } else if vmin <= l.cell_v_min_warn {
                s.push(V::CellUndervoltageWarn, vmin, l.cell_v_min_warn, A::Reduce);
                dis = 0.0;
            }
            if tel.pack_voltage_v > l.pack_v_max {
                s.push(
                    V::PackOvervoltage,
                    tel.pack_voltage_v,
                    l.pack_v_max,
                    A::Stop,
                );
                stop = true;
            }
            if tel.pack_voltage_v < l.pack_v_min {
                s.push(
                    V::PackUndervoltage,
                    tel.pack_voltage_v,
                    l.pack_v_min,
                    A::Stop,
                );
                stop = true;
            }
            if -tel.current_a > l.max_charge_current_a {
                s.push(
                    V::ChargeOvercurrent,
                    -tel.current_a,
                    l.max_charge_current_a,
                    A::Reduce,
                );
                chg = 0.0;
            }
            if tel.current_a > l.max_discharge_current_a {
                s.push(
                    V::DischargeOvercurrent,
                    tel.current_a,
                    l.max_discharge_current_a,
                    A::Reduce,
                );
                dis = 0.0;
            }
            if tel.temp_max_c >= l.critical_temp_c {
                s.push(
                    V::CriticalTemperature,
                    tel.temp_max_c,
                    l.critical_temp_c,
                    A::EmergencyShutdown,
                );
                emergency = true;
            }
            if tel.temp_min_c < l.charge_temp_min_c || tel.temp_max_c > l.charge_temp_max_c {
                let (v, lim) = if tel.temp_min_c < l.charge_temp_min_c {
                    (tel.temp_min_c, l.charge_temp_min_c)
                } else {
                    (tel.temp_max_c, l.charge_temp_max_c)
                };
                s.push(V::ChargeTemperature, v, lim, A::Reduce);
                chg = 0.0;
            }
            if tel.temp_min_c < l.discharge_temp_min_c || tel.temp_max_c > l.discharge_temp_max_c {
                let (v, lim) = if tel.temp_min_c < l.discharge_temp_min_c {
                    (tel.temp_min_c, l.discharge_temp_min_c)
                } else {
                    (tel.temp_max_c, l.discharge_temp_max_c)
                };
                s.push(V::DischargeTemperature, v, lim, A::Reduce);
                dis = 0.0;
            }
            if tel.temp_max_c.is_finite() {
                if let Some(rate) = self.temp_rate(tel.timestamp, tel.temp_max_c) {
                    if rate > l.max_temp_rise_c_per_s {
                        s.push(
                            V::TemperatureRiseRate,
                            rate,
                            l.max_temp_rise_c_per_s,
                            A::EmergencyShutdown,
                        );
                        emergency = true;
                    }
                }
            }
            let imb_mv = (vmax - vmin) * 1000.0;
            if imb_mv >= l.imbalance_trip_mv {
                s.push(V::CellImbalanceTrip, imb_mv, l.imbalance_trip_mv, A::Reduce);
                chg *= l.imbalance_derate;
                dis *= l.imbalance_derate;
            } else if imb_mv >= l.imbalance_warn_mv {
                s.push(V::CellImbalanceWarn, imb_mv, l.imbalance_warn_mv, A::Log);
            }
            if tel.soc_pct <= l.soc_min_pct {
                s.push(V::SocLow, tel.soc_pct, l.soc_min_pct, A::Reduce);
                dis = 0.0;
            }
            if tel.soc_pct >= l.soc_max_pct {
                s.push(V::SocHigh, tel.soc_pct, l.soc_max_pct, A::Reduce);
                chg = 0.0;
            }
            if tel.soh_pct < l.soh_min_pct {
                s.push(V::SohLow, tel.soh_pct, l.soh_min_pct, A::Reduce);
                chg *= l.soh_derate;
                dis *= l.soh_derate;
            }
            if tel.bms_faults & l.bms_emergency_mask != 0 {
                s.push(
                    V::BmsEmergency,
                    f64::from(tel.bms_faults),
                    f64::from(l.bms_emergency_mask),
                    A::EmergencyShutdown,
                );
                emergency = true;
            } else if tel.bms_faults & l.bms_stop_mask != 0 {
                s.push(
                    V::BmsFault,
                    f64::from(tel.bms_faults),
                    f64::from(l.bms_stop_mask),
                    A::Stop,
                );
                stop = true;
            }
            let tol = l.power_tolerance_kw;
            if tel.power_kw > dis + tol || tel.power_kw < -chg - tol {
                let lim = if tel.power_kw > 0.0 { dis } else { -chg };
                s.push(V::PowerOutsideEnvelope, tel.power_kw, lim, A::Log);
            }
        }
        self.reset_ok = !emergency && !s.has(V::StaleTelemetry);
        if emergency {
            self.latched = true;
        }
        if self.latched && !emergency {
            s.push(V::Latched, 0.0, 0.0, A::EmergencyShutdown);
        }
        if stop || self.latched {
            chg = 0.0;
            dis = 0.0;
        }
        // `0.0 - chg` rather than `-chg`: no negative zero in the reported range.
        let (mut lo, mut hi) = (0.0 - chg, dis);
        (s.max_charge_kw, s.max_discharge_kw) = (chg, dis);
        // Ramp limit around the last clamped output (or the measured power at start).
        if self.last_out.is_nan() {
            self.last_out = if tel.power_kw.is_finite() {
                tel.power_kw.clamp(lo, hi)
            } else {
                0.0
            };
        }
        let dt = now - self.last_now;
        if now.is_finite() && !(stop || self.latched) {
            let dt = if dt.is_finite() && dt > 0.0 { dt } else { 0.0 };
            let step = l.ramp_kw_per_s * dt;
            let (rlo, rhi) = (self.last_out - step, self.last_out + step);
            // Intersect; if disjoint, collapse to the end of [lo, hi] nearest the ramp window.
            let (nlo, nhi) = (lo.max(rlo), hi.min(rhi));
            if nlo <= nhi {
                (lo, hi) = (nlo, nhi);
            } else if rhi < lo {
                hi = lo;
            } else {
                lo = hi;
            }
            self.last_now = now;
        } else if !now.is_finite() {
            self.invalid += 1;
        } else {
            self.last_now = now;
        }
        s.min_kw = lo;
        s.max_kw = hi;
        s.latched = self.latched;
        self.status = s;
        &self.status
    }

    /// Clamp a requested power (kW, + = discharge) into the allowed range; NaN -> 0 first.
    pub fn clamp(&mut self, requested_kw: f64) -> f64 {
        let r = if requested_kw.is_nan() {
            0.0
        } else {
            requested_kw
        };
        let (lo, hi) = (self.status.min_kw, self.status.max_kw);
        let out = if lo <= hi { r.max(lo).min(hi) } else { 0.0 };
        self.last_out = out;
        out
    }

    /// Clear the emergency latch. Succeeds (true) only if the latest evaluation had fresh
    /// telemetry with no emergency-level violation; the next `evaluate` opens the range.
    pub fn reset(&mut self) -> bool {
        if self.latched && self.reset_ok {
            self.latched = false;
        }
        !self.latched
    }
}

#[cfg(test)]
mod tests;
