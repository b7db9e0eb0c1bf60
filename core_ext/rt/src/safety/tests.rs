use super::*;

fn good(t: f64) -> Telemetry {
    Telemetry {
        timestamp: t,
        pack_voltage_v: 52.8,
        current_a: 10.0,
        cell_v_min: 3.29,
        cell_v_max: 3.31,
        temp_min_c: 24.0,
        temp_max_c: 26.0,
        soc_pct: 50.0,
        soh_pct: 95.0,
        bms_faults: 0,
        power_kw: 0.0,
        bms_timestamp: None,
    }
}

fn env() -> SafetyEnvelope {
    let mut l = SafetyLimits::lfp_16s();
    l.ramp_kw_per_s = f64::INFINITY;
    SafetyEnvelope::new(l).unwrap()
}

fn eval(e: &mut SafetyEnvelope, f: impl FnOnce(&mut Telemetry)) -> SafetyStatus {
    let mut t = good(100.0);
    f(&mut t);
    *e.evaluate(&t, 100.5)
}

#[test]
fn healthy_full_range() {
    let s = eval(&mut env(), |_| {});
    assert_eq!((s.action, s.min_kw, s.max_kw), (Action::None, -5.0, 5.0));
    assert!(s.violations().is_empty());
}

/// (mutation, expected code, action, min_kw, max_kw)
type Case = (fn(&mut Telemetry), ViolationCode, Action, f64, f64);

#[test]
fn each_check() {
    use ViolationCode as V;
    let cases: [Case; 17] = [
        (
            |t| (t.cell_v_min, t.cell_v_max) = (3.58, 3.6),
            V::CellOvervoltageWarn,
            Action::Reduce,
            0.0,
            5.0,
        ),
        (
            |t| (t.cell_v_min, t.cell_v_max) = (3.68, 3.7),
            V::CellOvervoltageTrip,
            Action::Stop,
            0.0,
            0.0,
        ),
        (
            |t| (t.cell_v_min, t.cell_v_max) = (2.7, 2.72),
            V::CellUndervoltageWarn,
            Action::Reduce,
            -5.0,
            0.0,
        ),
        (
            |t| (t.cell_v_min, t.cell_v_max) = (2.4, 2.42),
            V::CellUndervoltageTrip,
            Action::Stop,
            0.0,
            0.0,
        ),
        (
            |t| t.pack_voltage_v = 60.0,
            V::PackOvervoltage,
            Action::Stop,
            0.0,
            0.0,
        ),
        (
            |t| t.pack_voltage_v = 39.0,
            V::PackUndervoltage,
            Action::Stop,
            0.0,
            0.0,
        ),
        (
            |t| t.current_a = -120.0,
            V::ChargeOvercurrent,
            Action::Reduce,
            0.0,
            5.0,
        ),
        (
            |t| t.current_a = 120.0,
            V::DischargeOvercurrent,
            Action::Reduce,
            -5.0,
            0.0,
        ),
        (
            |t| t.temp_min_c = -1.0,
            V::ChargeTemperature,
            Action::Reduce,
            0.0,
            5.0,
        ),
        (
            |t| t.temp_max_c = 50.0,
            V::ChargeTemperature,
            Action::Reduce,
            0.0,
            5.0,
        ),
        (
            |t| t.temp_min_c = -25.0,
            V::DischargeTemperature,
            Action::Reduce,
            0.0,
            0.0,
        ),
        (
            |t| t.cell_v_max = 3.36,
            V::CellImbalanceWarn,
            Action::Log,
            -5.0,
            5.0,
        ),
        (
            |t| t.cell_v_max = 3.45,
            V::CellImbalanceTrip,
            Action::Reduce,
            -2.5,
            2.5,
        ),
        (|t| t.soc_pct = 5.0, V::SocLow, Action::Reduce, -5.0, 0.0),
        (|t| t.soc_pct = 96.0, V::SocHigh, Action::Reduce, 0.0, 5.0),
        (|t| t.soh_pct = 60.0, V::SohLow, Action::Reduce, -2.5, 2.5),
        (|t| t.bms_faults = 4, V::BmsFault, Action::Stop, 0.0, 0.0),
    ];
    for (i, (f, code, action, lo, hi)) in cases.into_iter().enumerate() {
        let s = eval(&mut env(), f);
        assert!(s.has(code), "case {i}: {:?}", s.violations());
        assert_eq!((s.action, s.min_kw, s.max_kw), (action, lo, hi), "case {i}");
        assert_eq!((-s.max_charge_kw, s.max_discharge_kw), (lo, hi), "case {i}");
    }
}

#[test]
fn stale_and_invalid_stop() {
    let mut e = env();
    let s = *e.evaluate(&good(100.0), 103.0);
    assert!(s.has(ViolationCode::StaleTelemetry));
    assert_eq!((s.action, s.min_kw, s.max_kw), (Action::Stop, 0.0, 0.0));
    let s = *e.evaluate(&good(100.0), f64::NAN);
    assert_eq!((s.min_kw, s.max_kw), (0.0, 0.0));
    let s = eval(&mut e, |t| t.soc_pct = f64::NAN);
    assert!(s.has(ViolationCode::InvalidTelemetry));
    assert_eq!((s.action, s.min_kw, s.max_kw), (Action::Stop, 0.0, 0.0));
    assert_eq!(e.clamp(4.0), 0.0);
}

#[test]
fn emergency_latches_until_reset() {
    let mut e = env();
    let s = eval(&mut e, |t| t.temp_max_c = 75.0);
    assert_eq!(s.action, Action::EmergencyShutdown);
    assert!(s.latched);
    assert_eq!(
        e.reset(),
        SafetyReset::Kept(ViolationCode::CriticalTemperature),
        "condition still present"
    );
    let s = eval(&mut e, |_| {});
    assert_eq!(
        (s.action, s.min_kw, s.max_kw),
        (Action::EmergencyShutdown, 0.0, 0.0)
    );
    assert!(s.has(ViolationCode::Latched));
    assert_eq!(e.reset(), SafetyReset::Cleared);
    assert_eq!(e.reset(), SafetyReset::NotLatched);
    let s = eval(&mut e, |_| {});
    assert_eq!((s.action, s.max_kw), (Action::None, 5.0));
    // BMS emergency bits latch too
    let mut l = SafetyLimits::nmc_16s();
    l.bms_emergency_mask = 0x8000_0000;
    let mut e = SafetyEnvelope::new(l).unwrap();
    let mut t = good(0.0);
    t.pack_voltage_v = 58.0;
    t.bms_faults = 0x8000_0001;
    assert_eq!(e.evaluate(&t, 0.0).action, Action::EmergencyShutdown);
}

#[test]
fn temperature_rise_rate() {
    let mut e = env();
    let mut worst = Action::None;
    for k in 0..40 {
        let mut t = good(k as f64 * 0.5);
        t.temp_max_c = 26.0 + 0.3 * k as f64 * 0.5; // 0.3 C/s
        worst = worst.max(e.evaluate(&t, k as f64 * 0.5).action);
    }
    assert_eq!(worst, Action::EmergencyShutdown);
    let mut e = env();
    for k in 0..40 {
        let mut t = good(k as f64 * 0.5);
        t.temp_max_c = 26.0 + 0.05 * k as f64 * 0.5;
        assert_eq!(e.evaluate(&t, k as f64 * 0.5).action, Action::None);
    }
}

#[test]
fn ramp_limits_clamp() {
    let mut e = SafetyEnvelope::new(SafetyLimits::lfp_16s()).unwrap(); // 5 kW/s
    let mut t = good(0.0);
    e.evaluate(&t, 0.0);
    assert_eq!(e.clamp(5.0), 0.0);
    t.timestamp = 0.2;
    e.evaluate(&t, 0.2);
    assert!((e.clamp(5.0) - 1.0).abs() < 1e-12);
    assert_eq!(e.status().max_discharge_kw, 5.0);
    t.timestamp = 0.4;
    e.evaluate(&t, 0.4);
    assert!((e.clamp(-5.0) - 0.0).abs() < 1e-12);
    assert_eq!(e.clamp(f64::NAN), 0.0);
}

#[test]
fn bad_limits_name_field() {
    let mut l = SafetyLimits::lfp_16s();
    l.cell_v_max_trip = 3.5;
    assert_eq!(SafetyEnvelope::new(l).unwrap_err().field, "cell_v_max_trip");
    let mut l = SafetyLimits::lfp_16s();
    l.stale_after_s = f64::NAN;
    assert_eq!(SafetyEnvelope::new(l).unwrap_err().field, "stale_after_s");
}

#[test]
fn set_cells() {
    let mut t = good(0.0);
    t.set_cells(&[3.3, 3.1, 3.4]);
    assert_eq!((t.cell_v_min, t.cell_v_max), (3.1, 3.4));
    t.set_cells(&[3.3, f64::NAN]);
    assert!(t.cell_v_min.is_nan());
}

/// Property: whatever the telemetry, `now` and request, the clamp stays inside the
/// reported range and inside the rated range, and the range is ordered.
#[test]
fn clamp_never_leaves_envelope() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let specials = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        1e308,
        -1e308,
        f64::MIN_POSITIVE,
    ];
    let mut pick = move |lo: f64, hi: f64| -> f64 {
        let r = next();
        if r % 10 == 0 {
            specials[(r >> 8) as usize % specials.len()]
        } else {
            lo + (hi - lo) * ((r >> 11) as f64 / (1u64 << 53) as f64)
        }
    };
    for preset in [SafetyLimits::lfp_16s(), SafetyLimits::nmc_16s()] {
        let mut e = SafetyEnvelope::new(preset).unwrap();
        let mut now = 0.0;
        for _ in 0..50_000 {
            now += pick(0.0, 0.5);
            let tel = Telemetry {
                timestamp: now - pick(-0.5, 3.0),
                pack_voltage_v: pick(35.0, 70.0),
                current_a: pick(-150.0, 150.0),
                cell_v_min: pick(2.0, 3.6),
                cell_v_max: pick(3.0, 4.4),
                temp_min_c: pick(-30.0, 50.0),
                temp_max_c: pick(0.0, 80.0),
                soc_pct: pick(-5.0, 105.0),
                soh_pct: pick(50.0, 100.0),
                bms_faults: if pick(0.0, 1.0) < 0.05 { 1 } else { 0 },
                power_kw: pick(-10.0, 10.0),
                bms_timestamp: if pick(0.0, 1.0) < 0.5 {
                    None
                } else {
                    Some(now - pick(-0.5, 3.0))
                },
            };
            let s = *e.evaluate(&tel, if pick(0.0, 1.0) < 0.01 { f64::NAN } else { now });
            if !now.is_finite() {
                now = 0.0;
            }
            assert!(s.min_kw <= s.max_kw, "{s:?}");
            let req = pick(-20.0, 20.0);
            let out = e.clamp(req);
            assert!(out.is_finite());
            assert!(
                out >= s.min_kw && out <= s.max_kw,
                "{out} outside [{}, {}]",
                s.min_kw,
                s.max_kw
            );
            assert!(out >= -preset.max_charge_kw && out <= preset.max_discharge_kw);
            if s.action >= Action::Stop {
                assert_eq!(out, 0.0);
            }
            if s.latched && matches!(e.reset(), SafetyReset::Kept(_)) {
                assert_eq!(out, 0.0);
            }
        }
    }
}

/// An envelope with a 5 kW/s ramp that has been at `kw` since monotonic time 0.
fn running_at(kw: f64) -> SafetyEnvelope {
    let mut e = SafetyEnvelope::new(SafetyLimits::lfp_16s()).unwrap();
    e.anchor(kw, 0.0);
    e
}

#[test]
fn the_ramp_runs_on_the_monotonic_clock_not_on_frame_or_wall_time() {
    let mut e = running_at(0.0);
    // The wall clock (and the telemetry with it) jumps 1000 s ahead; 20 ms really
    // elapsed: the step is 5 kW/s * 20 ms, not the whole range.
    let s = *e.evaluate_at(&good(1000.0), 1000.0, 0.02);
    assert!((s.max_kw - 0.1).abs() < 1e-12, "{s:?}");
    assert!((e.clamp(5.0) - 0.1).abs() < 1e-12);
}

#[test]
fn an_earlier_monotonic_time_is_no_time_and_never_moves_the_clock_back() {
    let mut e = running_at(0.0);
    e.evaluate_at(&good(0.0), 0.0, 1.0);
    assert!((e.clamp(5.0) - 5.0).abs() < 1e-12);
    e.evaluate_at(&good(0.0), 0.0, 1.0);
    assert_eq!(e.clamp(-5.0), 5.0, "no time elapsed: held");
    // A late caller hands an older time: held, and the clock stays at 1.0 ...
    e.evaluate_at(&good(0.0), 0.0, 0.5);
    assert_eq!(e.clamp(-5.0), 5.0);
    // ... so 20 ms after 1.0 allows 0.1 kW, not 0.52 s worth.
    e.evaluate_at(&good(0.0), 0.0, 1.02);
    assert!((e.clamp(-5.0) - 4.9).abs() < 1e-9);
    // A non-finite time is no time either, and counted.
    let before = e.invalid_count();
    e.evaluate_at(&good(0.0), 0.0, f64::NAN);
    assert!((e.clamp(-5.0) - 4.9).abs() < 1e-9);
    assert_eq!(e.invalid_count(), before + 1);
}

#[test]
fn protection_narrows_at_once_toward_zero() {
    let mut e = running_at(4.0);
    let mut t = good(0.0);
    t.soc_pct = 4.0; // discharge blocked
    let s = *e.evaluate_at(&t, 0.0, 0.02);
    assert_eq!((s.action, s.max_kw), (Action::Reduce, 0.0));
    assert_eq!(e.clamp(4.0), 0.0);
}

#[test]
fn the_first_setpoint_starts_from_the_measured_power() {
    let mut e = SafetyEnvelope::new(SafetyLimits::lfp_16s()).unwrap();
    let mut t = good(0.0);
    t.power_kw = 3.0;
    let s = *e.evaluate_at(&t, 0.0, 10.0);
    assert_eq!((s.min_kw, s.max_kw), (3.0, 3.0));
    assert_eq!(e.clamp(0.0), 3.0);
    assert_eq!(e.setpoint_in_force(), 3.0);
}

#[test]
fn anchor_restarts_the_ramp_from_the_reported_power() {
    let mut e = running_at(0.0);
    e.evaluate_at(&good(0.0), 0.0, 0.0);
    e.clamp(0.0);
    e.anchor(4.0, 5.0);
    e.evaluate_at(&good(5.0), 5.0, 5.02);
    assert!((e.clamp(-5.0) - 3.9).abs() < 1e-9);
    e.anchor(f64::NAN, 6.0);
    assert_eq!(e.setpoint_in_force(), 0.0);
    e.anchor(1e9, 7.0);
    assert_eq!(e.setpoint_in_force(), 5.0, "bounded by the rating");
}

#[test]
fn stale_bms_data_stops_the_unit_while_the_inverter_answers() {
    let mut e = env();
    let mut t = good(100.0);
    t.bms_timestamp = Some(100.0 - 600.0);
    let s = *e.evaluate(&t, 100.0);
    assert!(s.has(ViolationCode::StaleBms), "{s:?}");
    assert!(!s.has(ViolationCode::StaleTelemetry));
    assert_eq!((s.action, s.min_kw, s.max_kw), (Action::Stop, 0.0, 0.0));
    // Never heard (NaN) is stale too; a unit without a BMS (None) is not checked.
    t.bms_timestamp = Some(f64::NAN);
    assert!(e.evaluate(&t, 100.0).has(ViolationCode::StaleBms));
    t.bms_timestamp = Some(99.0);
    assert_eq!(e.evaluate(&t, 100.0).action, Action::None);
    t.bms_timestamp = None;
    assert_eq!(e.evaluate(&t, 100.0).action, Action::None);
    // Its own limit.
    let mut l = SafetyLimits::lfp_16s();
    l.bms_stale_after_s = 0.5;
    let mut e = SafetyEnvelope::new(l).unwrap();
    t.bms_timestamp = Some(99.0);
    assert!(e.evaluate(&t, 100.0).has(ViolationCode::StaleBms));
}

#[test]
fn the_latch_clears_only_on_fresh_finite_telemetry_without_its_cause() {
    let mut e = env();
    eval(&mut e, |t| t.temp_max_c = 75.0);
    assert!(e.is_latched());
    // Temperatures unreadable: the cause cannot be seen to be gone.
    eval(&mut e, |t| {
        (t.temp_min_c, t.temp_max_c) = (f64::NAN, f64::NAN)
    });
    assert_eq!(
        e.reset(),
        SafetyReset::Kept(ViolationCode::InvalidTelemetry)
    );
    // Stale inverter or BMS data: the same.
    e.evaluate(&good(100.0), 200.0);
    assert_eq!(e.reset(), SafetyReset::Kept(ViolationCode::StaleTelemetry));
    eval(&mut e, |t| t.bms_timestamp = Some(0.0));
    assert_eq!(e.reset(), SafetyReset::Kept(ViolationCode::StaleBms));
    assert!(e.is_latched());
    eval(&mut e, |_| {});
    assert_eq!(e.reset(), SafetyReset::Cleared);
    assert!(!e.is_latched());
}
