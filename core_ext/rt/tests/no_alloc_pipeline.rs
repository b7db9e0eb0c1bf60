//! The per-frame pipeline allocates nothing in steady state: decode, monitor, ROCOF,
//! droop and safety over many frames with changing frequency, telemetry and errors, and
//! the other ways in: decoded measurements, idle steps, refused frames, the real clocks.

use vpp_rt::alloc_count::{thread_allocations, CountingAllocator};
use vpp_rt::c37118::config::Format;
use vpp_rt::c37118::data::encode_data;
use vpp_rt::c37118::{encode_config, samples};
use vpp_rt::safety::Telemetry;
use vpp_rt::{Clock, Measurement, Outcome, Pipeline};

#[global_allocator]
static A: CountingAllocator = CountingAllocator;

#[test]
fn steady_state_processing_allocates_nothing() {
    for format in Format::all() {
        let mut cfg = samples::one_pmu(format);
        cfg.data_rate = 50;
        let mut config = Vec::new();
        encode_config(&cfg, &mut config).unwrap();
        // Pre-encode frames (encoding allocates; processing must not).
        let frames: Vec<(f64, Vec<u8>)> = (0..10_000u32)
            .map(|k| {
                let mut df = samples::data_for(&cfg, k);
                df.soc = 1_700_000_000 + k / 50;
                df.fraction = (k % 50) * 20_000;
                df.pmus[0].freq = 50.0 + 0.4 * ((k as f64) * 0.05).sin();
                let mut b = Vec::new();
                encode_data(&df, &cfg, &mut b).unwrap();
                (df.time(), b)
            })
            .collect();
        let mut corrupt = frames[3].1.clone();
        corrupt[10] ^= 0x55;

        let mut p = Pipeline::with_defaults(5.0).unwrap();
        p.process(&config, Clock::replay(0.0)).unwrap();
        let tel = |t: f64, k: usize| Telemetry {
            timestamp: t,
            pack_voltage_v: 52.8,
            current_a: 0.0,
            cell_v_min: 3.30,
            cell_v_max: 3.31 + 0.001 * (k % 7) as f64,
            temp_min_c: 24.0,
            temp_max_c: 25.0 + 0.01 * (k % 13) as f64,
            soc_pct: 50.0,
            soh_pct: 100.0,
            bms_faults: 0,
            power_kw: 0.0,
            bms_timestamp: Some(t),
        };
        // Warm up: first frames may size buffers.
        for (k, (t, b)) in frames.iter().take(10).enumerate() {
            p.set_telemetry(tel(*t, k));
            p.process(b, Clock::replay(*t)).unwrap();
        }
        let before = thread_allocations();
        let mut setpoint_sum = 0.0;
        for (k, (t, b)) in frames.iter().enumerate().skip(10) {
            let clock = Clock::replay(*t);
            p.set_telemetry(tel(*t, k));
            if let Ok(Outcome::Decision) = p.process(b, clock) {
                setpoint_sum += p.decision().setpoint_kw;
            }
            if k % 50 == 0 {
                assert!(p.process(&corrupt, clock).is_err());
                assert!(p.process(&b[..b.len() / 2], clock).is_err());
                // A duplicate is refused, a decoded measurement goes the same way.
                assert!(matches!(p.process(b, clock), Ok(Outcome::Refused(_))));
                let m = Measurement {
                    t: t + 0.001,
                    idcode: cfg.idcode,
                    freq: 49.9,
                    dfreq: f64::NAN,
                    stat: 0,
                };
                setpoint_sum += p.step(m, clock).map_or(0.0, |d| d.setpoint_kw);
                setpoint_sum += p.idle(clock).setpoint_kw;
                setpoint_sum += p.idle(Clock::now()).setpoint_kw;
            }
        }
        let after = thread_allocations();
        assert_eq!(
            after - before,
            0,
            "format {:#x}: {} allocations",
            format.0,
            after - before
        );
        assert!(setpoint_sum.is_finite());
        assert!(p.stats().decisions > 9000);
    }
}
