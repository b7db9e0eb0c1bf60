//! Safety envelope: from battery telemetry, the allowed power range
//! `[-max_charge_kw, +max_discharge_kw]`, an action and the list of violations.
//!
//! The range always contains zero before the ramp limit is applied; every check can
//! only narrow it. A check blocks a direction (charge or discharge), derates both, or
//! stops (range `[0, 0]`). The action is the most severe of the violations. An
//! emergency shutdown latches: until `reset()` succeeds the range stays `[0, 0]`.
//! `reset()` succeeds only if the latest evaluation had fresh telemetry from every
//! source, every field finite, and no emergency-level violation.
//!
//! Freshness: `now` (UNIX s, the controller's wall clock) against the telemetry's
//! `timestamp` (inverter) and, for a unit with a BMS, `bms_timestamp`, each with its own
//! limit. Stale data of either source stops the unit; the other checks are skipped then,
//! since they would judge old values.
//!
//! Ramp: the output moves from the setpoint in force by at most `ramp_kw_per_s` times
//! the time elapsed on `mono`, a monotonic clock in seconds that never goes back as far
//! as the envelope is concerned (an earlier `mono` counts as no time at all). The
//! setpoint in force is the last clamped output, or the inverter's measured power at the
//! start and after `anchor` (a controller resuming control of a unit). The one exception
//! is protection: a narrowing of the range (a stop, a derating, a blocked direction)
//! applies at once, and since zero is always allowed, it can only move the output
//! toward zero.
//!
//! `evaluate` and `clamp` never allocate: violations go to a fixed array.

use crate::clock::advance;
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
    hist: [(f64, f64); TEMP_RING],
    hist_head: usize,
    hist_len: usize,
    last_mono: f64,
    last_out: f64,
    /// What would keep the latch at a reset now (None: nothing).
    reset_block: Option<ViolationCode>,
    evaluations: u64,
    invalid: u64,
}

/// What `SafetyEnvelope::reset` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafetyReset {
    /// Nothing was latched.
    NotLatched,
    /// The latch was cleared: the next evaluation opens the range.
    Cleared,
    /// The latch stays, because of this violation in the latest evaluation (stale or
    /// invalid telemetry, or the emergency's cause still present).
    Kept(ViolationCode),
}

impl SafetyEnvelope {
    pub fn new(lim: SafetyLimits) -> Result<Self, ConfigError> {
        lim.validate()?;
        Ok(Self {
            lim,
            status: SafetyStatus::stopped(),
            latched: false,
            hist: [(0.0, 0.0); TEMP_RING],
            hist_head: 0,
            hist_len: 0,
            last_mono: f64::NAN,
            last_out: f64::NAN,
            reset_block: Some(ViolationCode::StaleTelemetry),
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

    /// Evaluate `tel` at time `now` (UNIX s), with `now` as the ramp's clock too: for
    /// replays and tests, where the telemetry's time is the only time there is.
    pub fn evaluate(&mut self, tel: &Telemetry, now: f64) -> &SafetyStatus {
        self.evaluate_at(tel, now, now)
    }

    /// Evaluate `tel` at wall time `now` (UNIX s, for the telemetry's age) and monotonic
    /// time `mono` (s, for the ramp), and return the new status.
    pub fn evaluate_at(&mut self, tel: &Telemetry, now: f64, mono: f64) -> &SafetyStatus {
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
        let fresh = |age: f64, limit: f64| age.is_finite() && age.abs() <= limit;
        if !fresh(age, l.stale_after_s) {
            s.push(V::StaleTelemetry, age, l.stale_after_s, A::Stop);
            stop = true;
        }
        if let Some(bms_t) = tel.bms_timestamp {
            let bms_age = now - bms_t;
            if !fresh(bms_age, l.bms_stale_after_s) {
                s.push(V::StaleBms, bms_age, l.bms_stale_after_s, A::Stop);
                stop = true;
            }
        }
        if !stop {
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
        self.reset_block = if stop && (s.has(V::StaleTelemetry) || s.has(V::StaleBms)) {
            s.violations()
                .iter()
                .find(|v| matches!(v.code, V::StaleTelemetry | V::StaleBms))
                .map(|v| v.code)
        } else if s.has(V::InvalidTelemetry) {
            Some(V::InvalidTelemetry)
        } else {
            s.violations()
                .iter()
                .find(|v| v.action == A::EmergencyShutdown)
                .map(|v| v.code)
        };
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
        // The ramp's clock: time never runs backwards here, and a bad reading is no time.
        let dt = if !mono.is_finite() {
            self.invalid += 1;
            0.0
        } else if self.last_mono.is_nan() || mono <= self.last_mono {
            0.0
        } else {
            mono - self.last_mono
        };
        advance(&mut self.last_mono, mono);
        if !(stop || self.latched) {
            if self.last_out.is_nan() {
                // No setpoint in force yet: start from what the inverter does now.
                self.last_out = if tel.power_kw.is_finite() {
                    tel.power_kw.clamp(lo, hi)
                } else {
                    0.0
                };
            }
            let step = if l.ramp_kw_per_s.is_infinite() {
                f64::INFINITY
            } else {
                l.ramp_kw_per_s * dt
            };
            let (rlo, rhi) = (self.last_out - step, self.last_out + step);
            // Intersect; if disjoint, protection wins: the end of [lo, hi] nearest the
            // ramp window, which lies between it and zero.
            let (nlo, nhi) = (lo.max(rlo), hi.min(rhi));
            if nlo <= nhi {
                (lo, hi) = (nlo, nhi);
            } else if rhi < lo {
                hi = lo;
            } else {
                lo = hi;
            }
        }
        s.min_kw = lo;
        s.max_kw = hi;
        s.latched = self.latched;
        self.status = s;
        &self.status
    }

    /// Clamp a requested power (kW, + = discharge) into the allowed range; NaN -> 0 first.
    /// The result is the setpoint in force from now on (the ramp runs from it).
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

    /// The setpoint in force is `power_kw` at monotonic time `mono`: a controller that
    /// (re)gains control of a unit (start, the unit back online, enabled again) anchors
    /// the ramp on the power the inverter reports, so that it moves on from there. A
    /// non-finite power anchors at 0; the rated range bounds it.
    pub fn anchor(&mut self, power_kw: f64, mono: f64) {
        let l = &self.lim;
        self.last_out = if power_kw.is_finite() {
            power_kw.clamp(0.0 - l.max_charge_kw, l.max_discharge_kw)
        } else {
            0.0
        };
        advance(&mut self.last_mono, mono);
    }

    /// The monotonic time of the latest evaluation or anchor (NaN before the first).
    pub fn last_mono(&self) -> f64 {
        self.last_mono
    }

    /// The setpoint in force (NaN before the first one).
    pub fn setpoint_in_force(&self) -> f64 {
        self.last_out
    }

    /// Clear the emergency latch if the latest evaluation allows it: fresh telemetry from
    /// every source, every field finite, and no emergency-level violation any more.
    pub fn reset(&mut self) -> SafetyReset {
        if !self.latched {
            return SafetyReset::NotLatched;
        }
        match self.reset_block {
            Some(code) => SafetyReset::Kept(code),
            None => {
                self.latched = false;
                SafetyReset::Cleared
            }
        }
    }
}

#[cfg(test)]
mod tests;
