//! Bounded mutation fuzzer for the C37.118 decoder and stream decoder.
//!
//! Usage: cargo run --release -p vpp-rt --example fuzz_decode -- [ITERATIONS] [SEED]
//!        ... --example fuzz_decode -- --write-corpus DIR   (seed files for cargo-fuzz)
//!
//! Mutates valid frames of every type (bit flips, byte writes, inserts, deletes,
//! truncation, splices), often repairing FRAMESIZE and CHK so that the deeper field
//! checks run, and asserts that decoding never panics and that every error names a
//! field and an offset inside the input. Every 64th input also goes through the
//! streaming decoder in random chunks. Exits non-zero on a violation.

use std::time::Instant;

use vpp_rt::c37118::{
    batch, crc_ccitt, decode, samples, ConfigStore, Frame, FrameStream, StreamEvent,
};
use vpp_rt::FrameError;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn refit(v: &mut [u8]) {
    let n = v.len();
    if n >= 4 {
        v[2..4].copy_from_slice(&(n.min(65535) as u16).to_be_bytes());
    }
    if n >= 2 {
        let crc = crc_ccitt(&v[..n - 2]);
        v[n - 2..].copy_from_slice(&crc.to_be_bytes());
    }
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                // Interesting values for counts and sizes.
                v[i] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xAA][rng.below(6)];
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                v.remove(rng.below(len));
            }
            4 => v.truncate(rng.below(len + 1)),
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            6 if len > 20 => {
                // Overwrite a 16-bit field with a large count.
                let i = 14 + rng.below(len - 16);
                v[i] = rng.next() as u8;
                v[i + 1] = rng.next() as u8;
            }
            _ => {}
        }
    }
    if rng.below(3) != 0 {
        refit(&mut v);
    }
    v
}

fn check(e: &FrameError, limit: usize, what: &str, input: &[u8]) {
    if e.field.is_empty() || e.offset > limit {
        eprintln!(
            "malformed error {e:?} ({what}, input {} bytes): {input:02x?}",
            input.len()
        );
        std::process::exit(1);
    }
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--write-corpus") {
        // Seed files for cargo-fuzz: one valid frame of every type per file.
        let dir = args.nth(1).unwrap_or_else(|| "corpus".into());
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for (i, f) in samples::all_frames().iter().enumerate() {
            std::fs::write(format!("{dir}/seed{i:03}"), f).expect("write seed");
        }
        return;
    }
    let iterations: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5EED);
    let mut rng = Rng(seed | 1);
    let seeds = samples::all_frames();
    let mut store = ConfigStore::new();
    for f in &seeds {
        if let Ok(Frame::Config(c)) = decode(f, &store) {
            store.insert(c);
        }
    }
    let started = Instant::now();
    let (mut ok, mut err, mut streamed) = (0u64, 0u64, 0u64);
    let mut pending: Vec<u8> = Vec::new();
    for i in 0..iterations {
        let input = mutate(&mut rng, &seeds);
        match decode(&input, &store) {
            Ok(frame) => {
                ok += 1;
                // Encoding what was decoded must not panic either (it may refuse).
                let _ = frame.encode(&store);
            }
            Err(e) => {
                err += 1;
                check(&e, input.len(), "decode", &input);
            }
        }
        pending.extend_from_slice(&input);
        if i % 64 == 63 {
            // The batch decoder gets the same bytes against one of the configurations.
            let ids: Vec<u16> = store.idcodes().collect();
            let cfg = store.get(ids[rng.below(ids.len())]).expect("listed");
            if let Err(e) = batch::decode_batch(&pending, cfg, 1 + rng.below(2)) {
                check(&e, pending.len(), "batch", &[]);
            }
            // And whole data frames of that configuration with one of them mutated.
            let mut frames: Vec<u8> = (0..8).flat_map(|s| samples::data_bytes(cfg, s)).collect();
            let size = cfg.data_frame_size();
            let at = rng.below(frames.len());
            frames[at] ^= 1 << rng.below(8);
            if rng.below(2) == 0 {
                let start = at / size * size;
                refit(&mut frames[start..start + size]);
            }
            if let Err(e) = batch::decode_batch(&frames, cfg, 1) {
                check(&e, frames.len(), "batch frames", &[]);
            }
            let mut s = FrameStream::with_configs(store.clone());
            let total = pending.len();
            let mut rest = &pending[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len().min(300));
                s.feed(&rest[..n], |ev| {
                    if let StreamEvent::Error(e) = ev {
                        check(&e, total, "stream", &[]);
                    }
                });
                rest = &rest[n..];
            }
            s.finish(|ev| {
                if let StreamEvent::Error(e) = ev {
                    check(&e, total, "stream finish", &[]);
                }
            });
            streamed += 1;
            pending.clear();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz_decode: {iterations} inputs ({ok} decoded, {err} errors, {streamed} stream runs) in {secs:.1} s, {:.0} inputs/s, seed {seed}",
        iterations as f64 / secs
    );
}
