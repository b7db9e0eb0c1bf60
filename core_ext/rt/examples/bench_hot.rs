//! Quick timing of the data-frame hot path, CRC and batch decoding (a developer tool, not
//! a test): cargo run --release -p vpp-rt --example bench_hot [data|batch|crc]
//!
//! `crc`: the CRC's carry-less-multiply path (PCLMULQDQ on x86_64, PMULL on aarch64)
//! against the slicing-by-16 tables on the same bytes (one data frame's length, and 10
//! and 40 times it), medians of 9 rounds, and their ratio (docs/deploy.md quotes it).
use std::hint::black_box;
use std::time::Instant;

use vpp_rt::c37118::crc::crc_table;
use vpp_rt::c37118::{crc_ccitt, decode_data_into, samples, DataFrame, Format};

/// Median ns per call of `f` over 9 rounds of `n` calls.
fn median_ns(n: u32, mut f: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..9)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[4]
}

fn crc_paths() {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    println!(
        "carry-less path available: {}",
        vpp_rt::c37118::crc::clmul::available()
    );
    let cfg = samples::one_pmu(Format(0x01));
    for copies in [1u32, 10, 40] {
        // The CRC reads only bytes: a frame's worth, and as long as 10 and 40 of them
        // (about the data frame of 10 and 40 PMUs).
        let bytes: Vec<u8> = (0..copies)
            .flat_map(|i| samples::data_bytes(&cfg, i))
            .collect();
        let body = &bytes[..bytes.len() - 2];
        let fast = median_ns(200_000, || {
            black_box(crc_ccitt(black_box(body)));
        });
        let table = median_ns(200_000, || {
            black_box(crc_table(black_box(body)));
        });
        println!(
            "crc, {} bytes: carry-less {fast:.1} ns, tables {table:.1} ns, tables / carry-less {:.2}",
            body.len(),
            table / fast
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "crc") {
        crc_paths();
        return;
    }
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
