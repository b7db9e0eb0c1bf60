//! Per-frame pipeline benchmark: latency of every frame over N frames (median, p99,
//! p99.9, max), heap allocations per frame, and resident memory over M frames.
//!
//! `cargo run --release -p vpp-rt --example bench_pipeline -- [N] [M]` prints one JSON
//! object (benchmarks/bench_pipeline.py runs it and tabulates the figures).

use std::hint::black_box;
use std::time::Instant;

use vpp_rt::alloc_count::{thread_allocations, CountingAllocator};
use vpp_rt::c37118::config::Format;
use vpp_rt::c37118::data::encode_data;
use vpp_rt::c37118::{crc_ccitt, encode_config, samples, MAX_FRAME};
use vpp_rt::safety::Telemetry;
use vpp_rt::{Clock, Pipeline};

#[global_allocator]
static A: CountingAllocator = CountingAllocator;

const RATE: u32 = 50;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn telemetry(t: f64) -> Telemetry {
    Telemetry {
        timestamp: t,
        pack_voltage_v: 52.8,
        current_a: 0.0,
        cell_v_min: 3.30,
        cell_v_max: 3.31,
        temp_min_c: 24.0,
        temp_max_c: 25.0,
        soc_pct: 50.0,
        soh_pct: 100.0,
        bms_faults: 0,
        power_kw: 0.0,
        bms_timestamp: None,
    }
}

/// Move frame `b` (its SOC) `secs` seconds later and fix its CRC: the pipeline refuses a
/// frame that is not newer than the last, so each lap of the recording gets new times.
fn shift(b: &mut [u8], secs: u32) {
    let soc = u32::from_be_bytes([b[6], b[7], b[8], b[9]]);
    b[6..10].copy_from_slice(&(soc + secs).to_be_bytes());
    let n = b.len();
    let crc = crc_ccitt(&b[..n - 2]);
    b[n - 2..].copy_from_slice(&crc.to_be_bytes());
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let m: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);

    // The benchmark frame: one PMU, 4 phasors, 3 analogs, 1 digital word, integer
    // polar phasors and integer FREQ (the most common PMU setting).
    let mut cfg = samples::one_pmu(Format::new(true, false, false, false));
    cfg.data_rate = RATE as i16;
    let mut config = Vec::new();
    encode_config(&cfg, &mut config).unwrap();
    // One second's worth of distinct frames (frequency sweeping through the deadband
    // edge so the droop, ramp and bands all work); times advance per frame.
    let frames: Vec<(f64, Vec<u8>)> = (0..RATE * 60)
        .map(|k| {
            let mut df = samples::data_for(&cfg, k);
            df.soc = 1_700_000_000 + k / RATE;
            df.fraction = (k % RATE) * (1_000_000 / RATE);
            df.pmus[0].freq = 49.9 + 0.15 * (f64::from(k) * 0.01).sin();
            let mut b = Vec::new();
            encode_data(&df, &cfg, &mut b).unwrap();
            (df.time(), b)
        })
        .collect();

    let mut p = Pipeline::with_defaults(5.0).unwrap();
    p.process(&config, Clock::replay(0.0)).unwrap();
    for (t, b) in frames.iter().take(100) {
        p.set_telemetry(telemetry(*t));
        p.process(b, Clock::replay(*t)).unwrap();
    }

    let mut lat = vec![0u32; n];
    // The frame being shifted to its lap's time (allocated before the count starts).
    let mut buf = Vec::with_capacity(MAX_FRAME);
    let alloc_before = thread_allocations();
    let mut sum = 0.0;
    let t_all = Instant::now();
    for (i, slot) in lat.iter_mut().enumerate() {
        let (t, b) = &frames[i % frames.len()];
        let lap = (i / frames.len()) as u32;
        let t = t + 60.0 * f64::from(lap);
        buf.clear();
        buf.extend_from_slice(b);
        shift(&mut buf, 60 * lap);
        p.set_telemetry(telemetry(t));
        let start = Instant::now();
        let _ = black_box(p.process(black_box(&buf), Clock::replay(t)));
        let ns = start.elapsed().as_nanos();
        *slot = ns.min(u128::from(u32::MAX)) as u32;
        sum += p.decision().setpoint_kw;
    }
    let wall = t_all.elapsed().as_secs_f64();
    let allocs = thread_allocations() - alloc_before;
    lat.sort_unstable();
    let q = |f: f64| lat[((n as f64 - 1.0) * f).round() as usize];

    // Memory: M more frames, RSS sampled every M/10.
    let rss_start = rss_kib();
    let mut rss_max = rss_start;
    let mut rss_samples = Vec::with_capacity(11);
    rss_samples.push(rss_start);
    let step = (m / 10).max(1);
    for i in 0..m {
        let (t, b) = &frames[i % frames.len()];
        let lap = ((n + i) / frames.len()) as u32;
        let t = t + 60.0 * f64::from(lap);
        buf.clear();
        buf.extend_from_slice(b);
        shift(&mut buf, 60 * lap);
        p.set_telemetry(telemetry(t));
        let _ = black_box(p.process(black_box(&buf), Clock::replay(t)));
        if (i + 1) % step == 0 {
            let r = rss_kib();
            rss_max = rss_max.max(r);
            rss_samples.push(r);
        }
    }
    let rss_end = rss_kib();
    let samples: Vec<String> = rss_samples.iter().map(|v| v.to_string()).collect();
    println!(
        "{{\"frames\": {n}, \"median_ns\": {}, \"p99_ns\": {}, \"p999_ns\": {}, \"max_ns\": {}, \
         \"mean_ns\": {:.1}, \"allocations\": {allocs}, \"memory_frames\": {m}, \
         \"rss_start_kib\": {rss_start}, \"rss_end_kib\": {rss_end}, \"rss_max_kib\": {rss_max}, \
         \"rss_samples_kib\": [{}], \"checksum\": {sum:.3}, \"decisions\": {}}}",
        q(0.5),
        q(0.99),
        q(0.999),
        lat[n - 1],
        wall * 1e9 / n as f64,
        samples.join(", "),
        p.stats().decisions,
    );
}
