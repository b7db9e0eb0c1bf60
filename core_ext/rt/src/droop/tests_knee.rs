//! The two-segment characteristic (a knee): GB Dynamic Containment's points, continuity,
//! monotonicity, the straight droop unchanged without a knee, bad knees refused.

use super::*;

/// GB Dynamic Containment: deadband 15 mHz, 5 % at 0.2 Hz, 100 % at 0.5 Hz.
fn dc_config(p_max_kw: f64) -> DroopConfig {
    let mut c = DroopConfig::new(p_max_kw);
    c.deadband_low_hz = 49.985;
    c.deadband_high_hz = 50.015;
    c.knee_hz = 0.2;
    c.knee_percent = 5.0;
    c.full_hz = 0.5;
    c.ramp_kw_per_s = f64::INFINITY;
    c
}

fn dc() -> DroopController {
    DroopController::new(dc_config(100.0)).unwrap()
}

#[test]
fn dc_points_both_directions() {
    let d = dc();
    for (f, kw) in [
        (50.0, 0.0),
        (49.985, 0.0),
        (50.015, 0.0),
        (49.8, 5.0),
        (50.2, -5.0),
        (49.5, 100.0),
        (50.5, -100.0),
        // halfway between knee and full: 5 + 95 / 2
        (49.65, 52.5),
        (50.35, -52.5),
        // halfway between edge and knee: 2.5 %
        (49.8925, 2.5),
        (50.1075, -2.5),
    ] {
        assert!(
            (d.droop_kw(f) - kw).abs() < 1e-9,
            "{f} Hz: {} kW",
            d.droop_kw(f)
        );
    }
    // beyond full the outer line goes on; the limits (p_max here) hold the target
    assert!(d.droop_kw(49.4) > 100.0);
    let mut d = dc();
    assert_eq!(d.update(0.0, 49.4, f64::NAN, 50.0, 25.0).target_kw, 100.0);
    assert_eq!(d.update(1.0, 50.6, f64::NAN, 50.0, 25.0).target_kw, -100.0);
}

#[test]
fn continuous_at_edges_and_knee() {
    let d = dc();
    let eps = 1e-9;
    for edge in [49.985, 50.015] {
        assert_eq!(d.droop_kw(edge), 0.0);
        assert!(d.droop_kw(edge - eps).abs() < 1e-5);
        assert!(d.droop_kw(edge + eps).abs() < 1e-5);
    }
    for (knee, kw) in [(49.8, 5.0), (50.2, -5.0)] {
        assert!((d.droop_kw(knee - eps) - kw).abs() < 1e-5);
        assert!((d.droop_kw(knee + eps) - kw).abs() < 1e-5);
    }
}

#[test]
fn monotonic_over_a_sweep() {
    // Asymmetric deadband and an uneven knee, to catch a side mixed up.
    let mut c = dc_config(250.0);
    c.deadband_low_hz = 49.9;
    c.deadband_high_hz = 50.03;
    c.knee_percent = 37.0;
    for cfg in [dc_config(100.0), c] {
        let d = DroopController::new(cfg).unwrap();
        let mut prev = f64::INFINITY;
        for k in 0..=400_000 {
            let f = 48.0 + k as f64 * 1e-5;
            let p = d.droop_kw(f);
            assert!(p.is_finite() && p <= prev, "{f} Hz: {p} after {prev}");
            if (cfg.deadband_low_hz..=cfg.deadband_high_hz).contains(&f) {
                assert_eq!(p, 0.0);
            }
            prev = p;
        }
    }
}

#[test]
fn no_knee_is_the_straight_droop_exactly() {
    let mut c = DroopConfig::new(100.0);
    c.droop_percent = 0.97;
    c.deadband_low_hz = 49.985;
    c.deadband_high_hz = 50.015;
    let d = DroopController::new(c).unwrap();
    let gain = c.p_max_kw / (c.droop_percent / 100.0);
    for k in 0..=2_000 {
        let f = 48.0 + k as f64 * 2e-3;
        let old = if f < c.deadband_low_hz {
            -gain * (f - c.deadband_low_hz) / c.nominal_hz
        } else if f > c.deadband_high_hz {
            -gain * (f - c.deadband_high_hz) / c.nominal_hz
        } else {
            0.0
        };
        assert_eq!(d.droop_kw(f).to_bits(), old.to_bits(), "{f} Hz");
    }
    assert!(d.droop_kw(f64::NAN).is_nan());
    assert!(dc().droop_kw(f64::NAN).is_nan());
}

#[test]
fn invalid_frequency_still_fails_safe_with_a_knee() {
    let mut d = dc();
    let o = d.update(0.0, f64::NAN, f64::NAN, 50.0, 25.0);
    assert!(!o.valid);
    assert_eq!((o.target_kw, o.output_kw), (0.0, 0.0));
    assert_eq!(d.invalid_count(), 1);
}

#[test]
fn bad_knees_refused() {
    let field = |f: fn(&mut DroopConfig)| {
        let mut c = dc_config(100.0);
        f(&mut c);
        DroopController::new(c).unwrap_err().field
    };
    // inside (or at) a deadband edge, on either side
    assert_eq!(field(|c| c.knee_hz = 0.015), "knee_hz");
    assert_eq!(field(|c| c.deadband_low_hz = 49.7), "knee_hz");
    assert_eq!(field(|c| c.deadband_high_hz = 50.25), "knee_hz");
    assert_eq!(field(|c| c.knee_hz = -0.2), "knee_hz");
    assert_eq!(field(|c| c.knee_hz = f64::NAN), "knee_hz");
    assert_eq!(field(|c| c.knee_hz = f64::INFINITY), "knee_hz");
    for pct in [0.0, 100.0, -5.0, 120.0, f64::NAN] {
        let mut c = dc_config(100.0);
        c.knee_percent = pct;
        assert_eq!(DroopController::new(c).unwrap_err().field, "knee_percent");
    }
    for full in [0.2, 0.1, 0.0, f64::INFINITY, f64::NAN] {
        let mut c = dc_config(100.0);
        c.full_hz = full;
        assert_eq!(DroopController::new(c).unwrap_err().field, "full_hz");
    }
    // full a hair beyond the knee, equal to it once rounded: a vertical segment
    assert_eq!(field(|c| c.full_hz = 0.2 + 1e-17), "full_hz");
    // knee_percent or full_hz without knee_hz would be ignored: refused
    assert_eq!(field(|c| c.knee_hz = 0.0), "knee_percent");
    assert_eq!(
        field(|c| {
            c.knee_hz = 0.0;
            c.knee_percent = 0.0;
        }),
        "full_hz"
    );
    // a refused reconfiguration keeps the knee in force
    let mut d = dc();
    let mut bad = dc_config(100.0);
    bad.knee_percent = 0.0;
    assert!(d.reconfigure(bad).is_err());
    assert!((d.droop_kw(49.8) - 5.0).abs() < 1e-9);
}
