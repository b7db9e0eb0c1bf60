//! Bounded mutation fuzzer for the IEC 60870-5-104 decoder.
//!
//! Usage: cargo run --release -p vpp-rt --example fuzz_iec104 -- [ITERATIONS] [SEED]
//!
//! Mutates valid APDUs of every type the codec knows (bit flips, byte writes, inserts,
//! deletes, truncation, splices), usually repairing the length octet so that the ASDU
//! checks run, and asserts that decoding never panics, that every error points inside
//! the input, and that what decodes re-encodes to something that decodes the same.
//! Exits non-zero on a violation.

use std::time::Instant;

use vpp_rt::iec104::{
    decode_apdu, encode_apdu, encode_asdu, encode_i, encode_s, encode_u, Asdu, Cp56Time,
    InfoObject, TypeId, UFunction, Value,
};

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

fn seeds() -> Vec<Vec<u8>> {
    let time = Cp56Time::from_unix_ms(1_709_214_330_250);
    let mut out = Vec::new();
    for f in UFunction::ALL {
        let mut v = Vec::new();
        encode_u(f, &mut v);
        out.push(v);
    }
    let mut s = Vec::new();
    encode_s(1234, &mut s).expect("S-frame");
    out.push(s);
    for t in TypeId::ALL {
        let value = match t as u8 {
            1 | 30 | 45 | 58 => Value::Bool(true),
            3 | 31 | 46 | 59 => Value::Double(2),
            13 | 36 | 50 | 63 => Value::Float(12.5),
            70 | 100 => Value::Code(20),
            _ => Value::None,
        };
        let objects = (0..3)
            .map(|i| InfoObject {
                ioa: 1000 + i,
                value,
                qualifier: 0,
                select: false,
                time: if t.has_time() { time } else { None },
            })
            .collect();
        let asdu = Asdu {
            type_id: t as u8,
            sequence: false,
            count: 3,
            cot: 6,
            negative: false,
            test: false,
            originator: 0,
            common_address: 1,
            objects,
        };
        let mut body = Vec::new();
        encode_asdu(&asdu, &mut body).expect("seed ASDU");
        let mut v = Vec::new();
        encode_i(7, 3, &body, &mut v).expect("seed I-frame");
        out.push(v);
    }
    out
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0x3B][rng.below(6)];
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
            _ => {}
        }
    }
    if rng.below(4) != 0 && v.len() >= 2 {
        v[1] = (v.len() - 2).min(255) as u8;
    }
    v
}

fn fail(what: &str, input: &[u8]) -> ! {
    eprintln!("{what} for input {} bytes: {input:02x?}", input.len());
    std::process::exit(1);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0x001E_C104);
    let mut rng = Rng(seed | 1);
    let seeds = seeds();
    let started = Instant::now();
    let (mut ok, mut err, mut partial) = (0u64, 0u64, 0u64);
    for _ in 0..iterations {
        let input = mutate(&mut rng, &seeds);
        match decode_apdu(&input) {
            Ok(Some((n, apdu))) => {
                ok += 1;
                if n > input.len() {
                    fail("consumed more than the input", &input);
                }
                let mut out = Vec::new();
                if encode_apdu(&apdu, &mut out).is_ok() {
                    match decode_apdu(&out) {
                        // Debug, not ==: a decoded NaN is not equal to itself.
                        Ok(Some((_, again))) if format!("{again:?}") == format!("{apdu:?}") => {}
                        _ => fail("re-encoded APDU decodes differently", &input),
                    }
                }
            }
            Ok(None) => partial += 1,
            Err(e) => {
                err += 1;
                if e.offset >= input.len().max(1) || e.field.is_empty() {
                    fail(&format!("error {e:?} points outside the input"), &input);
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz_iec104: {iterations} inputs ({ok} decoded, {err} errors, {partial} partial) in {secs:.1} s, {:.0} inputs/s, seed {seed}",
        iterations as f64 / secs
    );
}
