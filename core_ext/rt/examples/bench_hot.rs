//! Quick timing of the data-frame hot path, CRC and batch decoding (a developer tool, not
//! a test): cargo run --release -p vpp-rt --example bench_hot [data|batch]
use std::hint::black_box;
use std::time::Instant;

use vpp_rt::c37118::{crc_ccitt, decode_data_into, samples, DataFrame, Format};

fn main() {
    let cfg = samples::one_pmu(Format(0x01));
    let frame = samples::data_bytes(&cfg, 3);
    let mut out = DataFrame::with_capacity_for(&cfg);
    let only_data = std::env::args().any(|a| a == "data");
    let only_batch = std::env::args().any(|a| a == "batch");
    let n = if only_data { 50_000_000u32 } else { 5_000_000 };
    let t = Instant::now();
    for _ in 0..if only_batch { 0 } else { n } {
        decode_data_into(black_box(&frame), &cfg, &mut out).unwrap();
    }
    println!(
        "decode_data_into: {:.1} ns/frame ({} bytes)",
        t.elapsed().as_nanos() as f64 / f64::from(n),
        frame.len()
    );
    if only_data {
        return;
    }
    let n = if only_batch { 0 } else { n };
    let t = Instant::now();
    for _ in 0..n {
        black_box(crc_ccitt(black_box(&frame[..frame.len() - 2])));
    }
    println!(
        "crc: {:.1} ns/frame",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
    let t = Instant::now();
    for _ in 0..n {
        black_box(vpp_rt::c37118::check_frame(black_box(&frame)).unwrap());
    }
    println!(
        "check_frame: {:.1} ns/frame",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
    let rows = 10_000u32;
    let buf: Vec<u8> = (0..rows)
        .flat_map(|i| samples::data_bytes(&cfg, i))
        .collect();
    for threads in [1, 2] {
        let reps = 200;
        let t = Instant::now();
        for _ in 0..reps {
            black_box(vpp_rt::c37118::batch::decode_batch(black_box(&buf), &cfg, threads).unwrap());
        }
        println!(
            "decode_batch x{threads}: {:.1} ns/frame",
            t.elapsed().as_nanos() as f64 / f64::from(rows * reps)
        );
    }
}
