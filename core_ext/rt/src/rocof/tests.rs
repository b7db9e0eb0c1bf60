use super::*;

/// Seeded Gaussian noise (xorshift + Box-Muller), no dependency.
struct Noise(u64);
impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gauss(&mut self, sigma: f64) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[test]
fn ramp_with_noise_meets_p_class() {
    for fps in [10.0, 25.0, 50.0] {
        for slope in [1.0, -1.0] {
            let mut r = RocofEstimator::new(RocofConfig::default()).unwrap();
            let mut n = Noise(0x9e3779b97f4a7c15);
            let t0 = 1_700_000_000.0;
            let mut worst: f64 = 0.0;
            for k in 0..(5.0 * fps) as usize {
                let dt = k as f64 / fps;
                // 2 mHz rms noise: well inside the 5 mHz P-class frequency error.
                let f = 50.0 + slope * dt + n.gauss(0.002);
                if let Some(v) = r.update(t0 + dt, f, f64::NAN) {
                    worst = worst.max((v - slope).abs());
                }
            }
            assert!(r.is_full());
            assert!(worst <= 0.4, "fps {fps} slope {slope}: worst error {worst}");
        }
    }
}

#[test]
fn steady_state_small() {
    let mut r = RocofEstimator::new(RocofConfig::default()).unwrap();
    let mut n = Noise(7);
    let mut worst: f64 = 0.0;
    for k in 0..500 {
        if let Some(v) = r.update(k as f64 * 0.02, 50.0 + n.gauss(0.001), f64::NAN) {
            worst = worst.max(v.abs());
        }
    }
    assert!(worst < 0.1, "{worst}");
}

#[test]
fn missing_duplicate_out_of_order() {
    let mut r = RocofEstimator::new(RocofConfig::default()).unwrap();
    let mut last = None;
    for k in 0..100 {
        if k % 7 == 3 {
            continue; // missing frame
        }
        let t = k as f64 * 0.04;
        let f = 50.0 - 0.5 * t;
        last = r.update(t, f, f64::NAN).or(last);
        assert_eq!(r.update(t, f + 1.0, f64::NAN), None); // duplicate
        if k > 2 {
            assert_eq!(r.update(t - 0.08, 49.0, f64::NAN), None); // late
        }
    }
    assert!((last.unwrap() + 0.5).abs() < 1e-9);
    assert_eq!(r.duplicate_count(), 86);
    assert!(r.out_of_order_count() > 80);
}

#[test]
fn step_pulse_lasts_one_window() {
    let mut r = RocofEstimator::new(RocofConfig::default()).unwrap();
    let mut peak: f64 = 0.0;
    let mut after = 0.0;
    for k in 0..100 {
        let t = k as f64 * 0.02;
        let f = if t < 1.0 { 50.0 } else { 49.9 };
        if let Some(v) = r.update(t, f, f64::NAN) {
            peak = peak.max(v.abs());
            if t > 1.0 + 0.2 + 0.021 {
                after = v;
            }
        }
    }
    assert!(peak > 0.5 && peak < 1.5 * 0.1 / 0.2 + 0.2, "{peak}");
    assert!(after.abs() < 1e-9);
}

#[test]
fn gap_longer_than_window_refills() {
    let mut r = RocofEstimator::new(RocofConfig::default()).unwrap();
    for k in 0..20 {
        r.update(k as f64 * 0.1, 50.0, f64::NAN);
    }
    assert!(r.is_full());
    assert_eq!(r.update(10.0, 50.0, f64::NAN), None);
    assert!(!r.is_full());
}

#[test]
fn dfreq_source_and_invalid() {
    let mut r = RocofEstimator::new(RocofConfig {
        source: RocofSource::Dfreq,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(r.update(0.0, 50.0, 0.3), Some(0.3));
    assert_eq!(r.update(0.1, 50.0, f64::NAN), None);
    assert_eq!(r.update(f64::INFINITY, 50.0, 0.1), None);
    assert_eq!(r.invalid_count(), 2);
    assert_eq!(r.value(), Some(0.3));
}

#[test]
fn bad_config() {
    let c = RocofConfig {
        window_s: 0.0,
        ..Default::default()
    };
    assert_eq!(RocofEstimator::new(c).unwrap_err().field, "window_s");
    let c = RocofConfig {
        capacity: 1,
        ..Default::default()
    };
    assert_eq!(RocofEstimator::new(c).unwrap_err().field, "capacity");
}
