//! Every error kind, with its field and offset; truncated and mutated frames never panic.

use super::samples::*;
use super::*;
use crate::error::FrameErrorKind as K;

fn store_of(c: &Config) -> ConfigStore {
    let mut s = ConfigStore::new();
    s.insert(c.clone());
    s
}

fn enc_cfg(c: &Config) -> Vec<u8> {
    let mut v = Vec::new();
    encode_config(c, &mut v).unwrap();
    v
}

fn err_of(buf: &[u8], store: &ConfigStore) -> FrameError {
    decode(buf, store).unwrap_err()
}

/// Replace bytes at `at` and fix FRAMESIZE/CHK so that the deeper check runs.
fn patched(frame: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut v = frame.to_vec();
    v[at..at + bytes.len()].copy_from_slice(bytes);
    refit(v)
}

fn refit(mut v: Vec<u8>) -> Vec<u8> {
    let n = v.len();
    v[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    let crc = crc_ccitt(&v[..n - 2]);
    v[n - 2..].copy_from_slice(&crc.to_be_bytes());
    v
}

#[test]
fn every_error_kind_with_field_and_offset() {
    let c = one_pmu(Format(0));
    let store = store_of(&c);
    let cfg = enc_cfg(&c);
    let data = data_bytes(&c, 1);
    let check = |e: FrameError, kind, field, offset| {
        assert_eq!((e.kind, e.field, e.offset), (kind, field, offset), "{e}")
    };
    check(err_of(&data[..20], &store), K::Truncated, "FRAMESIZE", 2);
    check(err_of(&data[..1], &store), K::Truncated, "SYNC", 1);
    let mut b = data.clone();
    b[0] = 0x55;
    check(err_of(&b, &store), K::Sync, "SYNC", 0);
    b = data.clone();
    b[1] = 0x09;
    check(err_of(&b, &store), K::Sync, "SYNC", 1);
    b = data.clone();
    b[3] = 3;
    check(err_of(&b, &store), K::FrameSize, "FRAMESIZE", 2);
    b = data.clone();
    b[20] ^= 0xFF;
    let e = err_of(&b, &store);
    check(e, K::Crc, "CHK", data.len() - 2);
    assert!(e.expected.is_some() && e.found.is_some() && e.expected != e.found);
    check(err_of(&data, &ConfigStore::new()), K::NoConfig, "IDCODE", 4);
    let mut shorter = data[..data.len() - 4].to_vec();
    shorter.extend_from_slice(&[0, 0]);
    check(err_of(&refit(shorter), &store), K::Mismatch, "FRAMESIZE", 2);
    check(
        decode_data(&patched(&data, 4, &[0, 8]), &c).unwrap_err(),
        K::Mismatch,
        "IDCODE",
        4,
    );
    check(
        err_of(&patched(&cfg, 18, &[0xFF, 0xFF]), &store),
        K::Count,
        "NUM_PMU",
        18,
    );
    check(
        err_of(&patched(&cfg, 40, &[0x7F, 0xFF]), &store),
        K::Count,
        "PHNMR",
        40,
    );
    check(
        err_of(&patched(&cfg, 44, &[0x10, 0x00]), &store),
        K::Count,
        "DGNMR",
        44,
    );
    check(
        err_of(&patched(&cfg, 14, &[0, 0, 0, 0]), &store),
        K::Value,
        "TIME_BASE",
        14,
    );
    check(
        err_of(&patched(&cfg, 20, &[0xC3, 0x28]), &store),
        K::Value,
        "STN",
        20,
    );
    let cmd = Frame::Command(CommandFrame::new(7, Command::DataOn))
        .encode(&store)
        .unwrap();
    check(
        err_of(&patched(&cmd, 14, &[0, 7]), &store),
        K::Value,
        "CMD",
        14,
    );
    let mut longer = cmd.clone();
    longer.insert(16, 0);
    check(err_of(&refit(longer), &store), K::FrameSize, "FRAMESIZE", 2);
    let mut big = data_for(&c, 1);
    big.pmus[0].freq = 200.0;
    check(
        Frame::Data(big).encode(&store).unwrap_err(),
        K::Encode,
        "FREQ",
        32,
    );
    let mut bad = c.clone();
    bad.pmus[0].phasor_names.pop();
    check(enc_cfg_err(&bad), K::Encode, "PHNMR", 0);
    bad = c.clone();
    bad.pmus[0].station = "x".repeat(17);
    check(enc_cfg_err(&bad), K::Encode, "STN", 20);
}

fn enc_cfg_err(c: &Config) -> FrameError {
    let mut v = Vec::new();
    let e = encode_config(c, &mut v).unwrap_err();
    assert!(v.is_empty());
    e
}

#[test]
fn truncation_and_byte_flips_never_panic() {
    let frames = all_frames();
    let mut store = ConfigStore::new();
    for f in &frames {
        for n in 0..f.len() {
            let e = decode(&f[..n], &store).unwrap_err();
            assert!(e.offset <= f.len());
        }
        for i in 0..f.len() {
            let mut m = f.clone();
            m[i] ^= 0x5A;
            let _ = decode(&m, &store);
            let _ = decode(&refit(m), &store);
        }
        if let Ok(Frame::Config(c)) = decode(f, &store) {
            store.insert(c);
        }
    }
}
