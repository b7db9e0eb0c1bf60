//! The admission rule and ramp continuity through the pipeline: every way in, late,
//! duplicate and jumped frames, other streams, implausible values, reconfiguration.

use super::tests::healthy;
use super::*;
use crate::safety::{Action, SafetyReset, ViolationCode};

const T0: f64 = 1_700_000_000.0;
const ID: u16 = 7;

/// A 500 kW unit (ramp 500 kW/s, droop 5 %) for stream `ID`, running at `kw` from
/// controller time 0.
fn unit(kw: f64, admit: AdmitConfig) -> Pipeline {
    let mut limits = SafetyLimits::lfp_16s();
    (limits.max_charge_kw, limits.max_discharge_kw) = (500.0, 500.0);
    limits.max_charge_current_a = 1e4;
    limits.max_discharge_current_a = 1e4;
    limits.ramp_kw_per_s = 500.0;
    let mut droop = DroopConfig::new(500.0);
    droop.ramp_kw_per_s = f64::INFINITY;
    let mut p = Pipeline::new(
        PipelineConfig {
            pmu_index: 0,
            admit: AdmitConfig {
                idcode: Some(ID),
                ..admit
            },
        },
        FrequencyMonitor::new(MonitorConfig::default()).unwrap(),
        RocofEstimator::new(RocofConfig::default()).unwrap(),
        DroopController::new(droop).unwrap(),
        SafetyEnvelope::new(limits).unwrap(),
    )
    .unwrap();
    p.set_telemetry(healthy(T0));
    p.anchor(
        kw,
        Clock {
            wall: T0,
            mono: 0.0,
        },
    );
    p
}

fn m(t: f64, freq: f64) -> Measurement {
    Measurement {
        t,
        idcode: ID,
        freq,
        dfreq: f64::NAN,
        stat: 0,
    }
}

/// Controller clocks `dt` seconds after T0 / 0.
fn at(dt: f64) -> Clock {
    Clock {
        wall: T0 + dt,
        mono: dt,
    }
}

/// Step at frame time T0 + `dt` and controller time `dt`, telemetry fresh.
fn go(p: &mut Pipeline, dt: f64, freq: f64) -> Result<Decision, Refusal> {
    p.set_telemetry(healthy(T0 + dt));
    p.step(m(T0 + dt, freq), at(dt)).copied()
}

#[test]
fn late_duplicate_and_out_of_order_frames_are_refused_and_counted() {
    let mut p = unit(0.0, AdmitConfig::default());
    p.set_base_kw(500.0).unwrap();
    go(&mut p, 0.02, 50.0).unwrap();
    let d = go(&mut p, 0.04, 50.0).unwrap();
    assert!((d.setpoint_kw - 20.0).abs() < 1e-9, "{}", d.setpoint_kw);
    // The same frame again, and an older one: refused, no decision, nothing moves.
    p.set_telemetry(healthy(T0 + 0.05));
    assert_eq!(
        p.step(m(T0 + 0.04, 50.0), at(0.05)).err(),
        Some(Refusal::Duplicate)
    );
    assert_eq!(
        p.step(m(T0 + 0.02, 50.0), at(0.05)).err(),
        Some(Refusal::Late)
    );
    assert_eq!(p.decision().sequence, 2);
    let s = p.stats();
    assert_eq!(
        (
            s.refused[Refusal::Duplicate as usize],
            s.refused[Refusal::Late as usize]
        ),
        (1, 1)
    );
    // The next in-order frame, 20 ms later in real time: one 20 ms step of the ramp.
    let d = go(&mut p, 0.06, 50.0).unwrap();
    assert!((d.setpoint_kw - 30.0).abs() < 1e-9, "{}", d.setpoint_kw);
}

#[test]
fn a_forward_jump_of_the_pmu_time_is_refused_and_never_opens_the_ramp() {
    let mut p = unit(-50.0, AdmitConfig::default());
    p.set_base_kw(500.0).unwrap();
    let d = go(&mut p, 0.02, 50.0).unwrap();
    assert!((d.setpoint_kw - -40.0).abs() < 1e-9);
    // The PMU time leaps 1.5 s (inside the 2 s staleness window) while 20 ms pass.
    p.set_telemetry(healthy(T0 + 0.04));
    let r = p.step(m(T0 + 1.52, 50.0), at(0.04));
    assert_eq!(r.err(), Some(Refusal::TimeJump));
    let d = go(&mut p, 0.06, 50.0).unwrap();
    assert!((d.setpoint_kw - -20.0).abs() < 1e-9, "{}", d.setpoint_kw);
}

#[test]
fn frames_within_the_lead_are_admitted_but_the_ramp_still_follows_real_time() {
    let mut p = unit(0.0, AdmitConfig::default());
    p.set_base_kw(500.0).unwrap();
    go(&mut p, 0.0, 50.0).unwrap();
    // PMU time +0.4 s (jitter allowance 0.5 s) while 20 ms pass.
    p.set_telemetry(healthy(T0 + 0.02));
    let d = *p.step(m(T0 + 0.4, 50.0), at(0.02)).unwrap();
    assert!((d.setpoint_kw - 10.0).abs() < 1e-9, "{}", d.setpoint_kw);
}

#[test]
fn a_new_time_base_is_taken_after_it_held_for_resync_after_s() {
    for shift in [3600.0, -3600.0] {
        let mut p = unit(0.0, AdmitConfig::default());
        go(&mut p, 0.0, 50.0).unwrap();
        let mut first_ok = None;
        for k in 1..200 {
            let dt = k as f64 * 0.02;
            p.set_telemetry(healthy(T0 + dt));
            let r = p.step(m(T0 + shift + dt, 50.0), at(dt));
            if r.is_ok() && first_ok.is_none() {
                first_ok = Some(dt);
            }
        }
        let first = first_ok.expect("resynchronised");
        assert!((2.0..2.1).contains(&first), "shift {shift}: {first}");
        assert_eq!(p.stats().resyncs, 1);
        assert_eq!(p.decision().time, T0 + shift + 199.0 * 0.02);
    }
}

#[test]
fn frames_far_from_the_wall_clock_are_refused_when_checked() {
    let cfg = AdmitConfig {
        max_offset_s: 5.0,
        ..Default::default()
    };
    let mut p = unit(0.0, cfg);
    assert_eq!(
        p.step(m(T0 + 60.0, 50.0), at(0.0)).err(),
        Some(Refusal::TimeOffset)
    );
    assert_eq!(
        p.step(m(T0 - 60.0, 50.0), at(0.0)).err(),
        Some(Refusal::TimeOffset)
    );
    assert!(p.step(m(T0 - 0.2, 50.0), at(0.0)).is_ok());
}

#[test]
fn other_streams_and_bad_times_are_refused_on_every_path() {
    let mut p = unit(0.0, AdmitConfig::default());
    let mut other = m(T0, 49.0);
    other.idcode = ID + 1;
    assert_eq!(p.step(other, at(0.0)).err(), Some(Refusal::WrongIdcode));
    assert_eq!(
        p.step(m(f64::NAN, 49.0), at(0.0)).err(),
        Some(Refusal::BadTime)
    );
    let nan_clock = Clock {
        wall: T0,
        mono: f64::NAN,
    };
    assert_eq!(p.step(m(T0, 49.0), nan_clock).err(), Some(Refusal::BadTime));
    assert_eq!(p.stats().refused_total(), 3);
    assert_eq!(p.decision().sequence, 0);
}

#[test]
fn implausible_flagged_or_unsynchronised_values_drive_no_response() {
    for (freq, stat, why) in [
        (56.0, 0, Invalid::Implausible),
        (40.0, 0, Invalid::Implausible),
        (f64::INFINITY, 0, Invalid::NonFinite),
        (49.0, 0x4000, Invalid::DataError),
        (49.0, 0x2000, Invalid::SyncLost),
    ] {
        let mut p = unit(0.0, AdmitConfig::default());
        for k in 0..100 {
            let dt = k as f64 * 0.02;
            p.set_telemetry(healthy(T0 + dt));
            let mut x = m(T0 + dt, freq);
            x.stat = stat;
            let d = *p.step(x, at(dt)).unwrap();
            assert!(!d.freq_valid);
            assert_eq!(d.response_kw, 0.0, "{freq} {stat:#x}");
        }
        assert_eq!(p.stats().invalid[why as usize], 100);
    }
    // A site that trusts unsynchronised PMUs may say so.
    let mut p = unit(
        0.0,
        AdmitConfig {
            accept_sync_lost: true,
            ..Default::default()
        },
    );
    let mut x = m(T0, 49.0);
    x.stat = 0x2000;
    assert!(p.step(x, at(0.0)).unwrap().freq_valid);
}

#[test]
fn idle_decays_the_response_and_keeps_the_envelope_going() {
    let mut p = unit(0.0, AdmitConfig::default());
    for k in 0..200 {
        go(&mut p, k as f64 * 0.02, 49.0).unwrap();
    }
    let before = p.decision().setpoint_kw;
    assert!(before > 100.0, "{before}");
    // No frame: 20 ms of idle moves at most one ramp step.
    p.set_telemetry(healthy(T0 + 4.0));
    let d = *p.idle(at(4.0));
    assert!(!d.freq_valid);
    assert!((before - d.setpoint_kw) <= 500.0 * 0.02 + 1e-9);
    for k in 0..200 {
        let dt = 4.0 + k as f64 * 0.02;
        p.set_telemetry(healthy(T0 + dt));
        p.idle(at(dt));
    }
    assert_eq!(p.decision().setpoint_kw, 0.0);
    assert_eq!(p.stats().idle, 201);
    // Frames come back and are admitted.
    assert!(go(&mut p, 10.0, 50.0).is_ok());
}

#[test]
fn new_droop_settings_carry_the_response_over() {
    let mut p = unit(0.0, AdmitConfig::default());
    for k in 0..200 {
        go(&mut p, k as f64 * 0.02, 47.5).unwrap();
    }
    let before = p.decision().setpoint_kw;
    assert!(before > 400.0, "{before}");
    let mut out = DroopConfig::new(500.0);
    (out.max_charge_kw, out.max_discharge_kw) = (0.0, 0.0);
    p.set_droop(out).unwrap();
    let d = go(&mut p, 4.0, 47.5).unwrap();
    assert_eq!(d.response_kw, 0.0);
    assert!(
        (before - d.setpoint_kw - 10.0).abs() < 1e-9,
        "{}",
        d.setpoint_kw
    );
    // An invalid configuration is refused and the previous one stays.
    let mut bad = DroopConfig::new(500.0);
    bad.droop_percent = 0.0;
    assert_eq!(p.set_droop(bad).unwrap_err().field, "droop_percent");
    assert_eq!(p.droop().config().max_discharge_kw, 0.0);
}

#[test]
fn a_reset_says_why_the_latch_stays() {
    let mut p = unit(0.0, AdmitConfig::default());
    let mut hot = healthy(T0);
    hot.temp_max_c = 90.0;
    p.set_telemetry(hot);
    p.step(m(T0, 50.0), at(0.0)).unwrap();
    assert_eq!(p.decision().safety.action, Action::EmergencyShutdown);
    let mut blind = healthy(T0 + 0.02);
    blind.temp_max_c = f64::NAN;
    p.set_telemetry(blind);
    p.step(m(T0 + 0.02, 50.0), at(0.02)).unwrap();
    assert_eq!(
        p.reset_safety(),
        SafetyReset::Kept(ViolationCode::InvalidTelemetry)
    );
    go(&mut p, 0.04, 50.0).unwrap();
    assert_eq!(p.reset_safety(), SafetyReset::Cleared);
}

/// What may happen to the setpoint between two decisions (docs/pipeline.md): inside the
/// envelope; zero when stopped; otherwise within the ramp of the previous setpoint over
/// the real time elapsed, or pulled to the envelope's edge, toward zero, by protection.
pub(super) fn check_step(prev: f64, prev_mono: f64, d: &Decision, mono: f64, ramp: f64) {
    let s = &d.safety;
    let sp = d.setpoint_kw;
    let eps = 1e-9 * (1.0 + prev.abs());
    assert!(sp.is_finite());
    assert!(sp >= -s.max_charge_kw - eps && sp <= s.max_discharge_kw + eps);
    if s.action >= Action::Stop || s.latched {
        assert_eq!(sp, 0.0, "{d:?}");
        return;
    }
    let dt = (mono - prev_mono).max(0.0);
    let within = (sp - prev).abs() <= ramp * dt + eps;
    let pulled = (prev > s.max_discharge_kw && sp == s.max_discharge_kw)
        || (prev < -s.max_charge_kw && sp == -s.max_charge_kw);
    assert!(
        within || pulled,
        "{prev} -> {sp} in {dt} s (ramp {ramp}): {d:?}"
    );
}

/// Random sequences of frames (in order, late, duplicate, jumped, other streams, bad
/// values), telemetry (fresh, stale, NaN, faults), settings (base, droop) and anchors:
/// after every decision the setpoint obeys `check_step`. The Python property tests
/// (tests/core/test_safety_properties.py) generate such sequences with hypothesis;
/// this one runs many more steps at Rust speed.
#[test]
fn random_sequences_never_break_the_envelope_or_the_ramp() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut uni = move |lo: f64, hi: f64| {
        let r = next();
        lo + (hi - lo) * ((r >> 11) as f64 / (1u64 << 53) as f64)
    };
    let mut steps = 0u64;
    for _run in 0..60 {
        let mut p = unit(uni(-500.0, 500.0), AdmitConfig::default());
        let (mut t, mut mono) = (T0, 0.0);
        let mut prev = p.safety().setpoint_in_force();
        let mut prev_mono = 0.0;
        for _ in 0..20_000 {
            let dm = uni(0.0, 0.05);
            mono += dm;
            let choice = uni(0.0, 1.0);
            let ft = if choice < 0.05 {
                t - uni(0.0, 1.0)
            } else if choice < 0.08 {
                t + uni(0.5, 100.0)
            } else {
                t + 0.02
            };
            let freq = if uni(0.0, 1.0) < 0.05 {
                [f64::NAN, 56.0, 40.0, f64::INFINITY][(uni(0.0, 3.99)) as usize]
            } else {
                uni(48.5, 51.5)
            };
            let mut tel = healthy(T0 + mono);
            let tc = uni(0.0, 1.0);
            if tc < 0.02 {
                tel.timestamp -= 10.0;
            } else if tc < 0.03 {
                tel.temp_max_c = f64::NAN;
            } else if tc < 0.035 {
                tel.soc_pct = 3.0;
            } else if tc < 0.04 {
                tel.bms_faults = 1;
            }
            p.set_telemetry(tel);
            let sc = uni(0.0, 1.0);
            if sc < 0.01 {
                p.set_base_kw(uni(-500.0, 500.0)).unwrap();
            } else if sc < 0.015 {
                let mut c = DroopConfig::new(500.0);
                let share = uni(0.0, 500.0);
                (c.max_charge_kw, c.max_discharge_kw) = (share, share);
                c.ramp_kw_per_s = f64::INFINITY;
                p.set_droop(c).unwrap();
            } else if sc < 0.017 {
                p.anchor(uni(-600.0, 600.0), at(mono));
                prev = p.safety().setpoint_in_force();
                prev_mono = mono;
            }
            let clock = at(mono);
            let d = if uni(0.0, 1.0) < 0.03 {
                Some(*p.idle(clock))
            } else {
                let mut x = m(ft, freq);
                if uni(0.0, 1.0) < 0.02 {
                    x.idcode = ID + 1;
                }
                p.step(x, clock).ok().copied()
            };
            if let Some(d) = d {
                if d.freq_valid || d.freq.is_finite() {
                    t = t.max(d.time);
                }
                check_step(prev, prev_mono, &d, mono, 500.0);
                prev = d.setpoint_kw;
                prev_mono = mono;
                steps += 1;
            }
            if ft > t && uni(0.0, 1.0) < 0.5 {
                t = ft.min(t + 0.04);
            }
        }
    }
    assert!(steps > 1_000_000, "{steps}");
}
