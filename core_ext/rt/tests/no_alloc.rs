//! The per-sample methods never touch the heap, whatever the input: a counting global
//! allocator (per thread, so parallel tests do not interfere) must see zero allocations
//! across many updates with ordinary, special and hostile values.

use vpp_rt::alloc_count::{thread_allocations as allocs, CountingAllocator};
use vpp_rt::{
    DroopConfig, DroopController, FrequencyMonitor, MonitorConfig, RocofConfig, RocofEstimator,
    RocofSource, SafetyEnvelope, SafetyLimits, Telemetry,
};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const SPECIAL: [f64; 10] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    0.0,
    -0.0,
    1e308,
    -1e308,
    49.95,
    50.6,
    49.3,
];

#[test]
fn per_sample_methods_do_not_allocate() {
    let mut mon = FrequencyMonitor::new(MonitorConfig::default()).unwrap();
    let mut roc = RocofEstimator::new(RocofConfig::default()).unwrap();
    let mut dfr = RocofEstimator::new(RocofConfig {
        source: RocofSource::Dfreq,
        ..Default::default()
    })
    .unwrap();
    let mut cfg = DroopConfig::new(100.0);
    cfg.inertia_kw_per_hz_s = 10.0;
    let mut droop = DroopController::new(cfg).unwrap();
    // The knee's two segments (GB Dynamic Containment) on the same path.
    let mut knee_cfg = DroopConfig::new(100.0);
    knee_cfg.deadband_low_hz = 49.985;
    knee_cfg.deadband_high_hz = 50.015;
    knee_cfg.knee_hz = 0.2;
    knee_cfg.knee_percent = 5.0;
    knee_cfg.full_hz = 0.5;
    let mut knee = DroopController::new(knee_cfg).unwrap();
    let mut env = SafetyEnvelope::new(SafetyLimits::nmc_16s()).unwrap();
    let mut tel = Telemetry {
        timestamp: 0.0,
        pack_voltage_v: 60.0,
        current_a: 5.0,
        cell_v_min: 3.7,
        cell_v_max: 3.72,
        temp_min_c: 20.0,
        temp_max_c: 25.0,
        soc_pct: 50.0,
        soh_pct: 90.0,
        bms_faults: 0,
        power_kw: 0.0,
        bms_timestamp: None,
    };
    let cells = [3.7; 16];
    let before = allocs();
    let mut seed = 0x1234_5678_9abc_def0u64;
    for k in 0..20_000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let t = f64::from(k) * 0.02;
        let f = if seed % 7 == 0 {
            SPECIAL[(seed >> 8) as usize % SPECIAL.len()]
        } else {
            50.0 + (k % 100) as f64 * 1e-3
        };
        mon.update(t, f);
        let r = roc.update(t, f, f64::NAN).unwrap_or(f64::NAN);
        dfr.update(t, f, f);
        let o = droop.update(t, f, r, f.abs() % 100.0, f);
        let _ = knee.update(t, f - 0.6, r, f.abs() % 100.0, f);
        tel.timestamp = t;
        tel.temp_max_c = 25.0 + (seed % 60) as f64;
        tel.soc_pct = f;
        tel.set_cells(&cells);
        let s = env.evaluate(&tel, t + (seed % 3) as f64);
        let _ = s.violations().len();
        env.clamp(o.output_kw);
        env.reset();
    }
    assert_eq!(
        allocs() - before,
        0,
        "heap allocations on the per-sample path"
    );
    // The counter itself works: a real allocation is seen.
    let v: Vec<u64> = std::hint::black_box(Vec::with_capacity(8));
    assert!(allocs() > before && v.capacity() >= 8);
}
