//! Codec tests across modules: round trips of every frame type and FORMAT, known bytes,
//! every error kind, allocation-free data decoding, and stream chunking and resync.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::samples::*;
use super::*;
use crate::error::FrameErrorKind as K;

/// Counts allocations per thread, so parallel tests do not disturb each other.
struct CountingAlloc;
thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

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

fn assert_close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol * b.abs().max(1.0), "{a} != {b}");
}

fn assert_data_close(got: &DataFrame, want: &DataFrame) {
    assert_eq!(
        (got.soc, got.fraction, got.idcode),
        (want.soc, want.fraction, want.idcode)
    );
    assert_eq!(got.pmus.len(), want.pmus.len());
    for (g, w) in got.pmus.iter().zip(&want.pmus) {
        assert_eq!(
            (g.idcode, g.stat, &g.digitals),
            (w.idcode, w.stat, &w.digitals)
        );
        assert_close(g.freq, w.freq, 1e-6);
        assert_close(g.dfreq, w.dfreq, 1e-6);
        for (pg, pw) in g.phasors.iter().zip(&w.phasors) {
            assert_close(pg.real(), pw.real(), 1e-5);
            assert_close(pg.imag(), pw.imag(), 1e-5);
        }
        for (ag, aw) in g.analogs.iter().zip(&w.analogs) {
            assert_close(*ag, *aw, 1e-6);
        }
    }
}

#[test]
fn config_round_trip_every_format_and_kind() {
    for f in Format::all() {
        for kind in [ConfigKind::Cfg1, ConfigKind::Cfg2] {
            let mut c = one_pmu(f);
            c.kind = kind;
            let bytes = enc_cfg(&c);
            let Frame::Config(back) = decode(&bytes, &ConfigStore::new()).unwrap() else {
                panic!()
            };
            assert_eq!(back, c);
            assert_eq!(enc_cfg(&back), bytes);
        }
    }
}

#[test]
fn cfg3_round_trip_and_data_against_it() {
    let c = two_pmus(ConfigKind::Cfg3);
    let bytes = enc_cfg(&c);
    assert_eq!(bytes[1], 0x52);
    let Frame::Config(back) = decode(&bytes, &ConfigStore::new()).unwrap() else {
        panic!()
    };
    assert_eq!(back.kind, ConfigKind::Cfg3);
    assert_eq!(back.pmus[1].phasor_names, c.pmus[1].phasor_names);
    assert_eq!(back.pmus[0].cfg3.as_ref().unwrap().svc_class, b'M');
    assert_eq!(back.pmus[1].phasor_units, c.pmus[1].phasor_units);
    assert_eq!(enc_cfg(&back), bytes);
    let want = data_for(&c, 9);
    let mut d = Vec::new();
    data::encode_data(&want, &back, &mut d).unwrap();
    let Frame::Data(got) = decode(&d, &store_of(&back)).unwrap() else {
        panic!()
    };
    assert_data_close(&got, &want);
}

#[test]
fn data_round_trip_every_format() {
    for f in Format::all() {
        let c = one_pmu(f);
        let want = data_for(&c, 17);
        let bytes = data_bytes(&c, 17);
        assert_eq!(bytes.len(), c.data_frame_size());
        let got = decode_data(&bytes, &c).unwrap();
        assert_data_close(&got, &want);
        let mut again = Vec::new();
        data::encode_data(&got, &c, &mut again).unwrap();
        if !f.phasors_float() || f.polar() {
            assert_eq!(again, bytes, "format {f:?}");
        }
    }
}

#[test]
fn data_two_pmus_each_kind_and_version1() {
    for kind in [ConfigKind::Cfg1, ConfigKind::Cfg2, ConfigKind::Cfg3] {
        let c = two_pmus(kind);
        let got = decode_data(&data_bytes(&c, 4), &c).unwrap();
        assert_data_close(&got, &data_for(&c, 4));
        assert_eq!(got.pmus[1].idcode, 102);
    }
    let mut c = one_pmu(Format(0));
    c.version = 1;
    let bytes = enc_cfg(&c);
    assert_eq!(&bytes[..2], &[0xAA, 0x31]);
    let d = data_bytes(&c, 1);
    assert_eq!(&d[..2], &[0xAA, 0x01]);
    assert_eq!(decode_data(&d, &c).unwrap().version, 1);
}

#[test]
fn known_data_frame_bytes() {
    // One PMU, FORMAT 0 (int, rectangular), 1 phasor with PHUNIT 100000 (1 V per count),
    // 1 analog ANUNIT scale 2, 1 digital word; 60 Hz nominal.
    let mut p = pmu_config(60, "KNOWN", Format(0), 1, 1, 1);
    p.phasor_units = vec![phunit(false, 100_000)];
    p.analog_units = vec![anunit(1, 2)];
    p.fnom_50hz = false;
    let mut c = config(ConfigKind::Cfg2, 1, 60, vec![p]);
    c.time_base = 1000;
    let mut frame: Vec<u8> = vec![
        0xAA, 0x01, 0x00, 0x1E, 0x00, 0x3C, // SYNC, FRAMESIZE 30, IDCODE 60
        0x65, 0x53, 0xF1, 0x00, // SOC 1700000000
        0x0F, 0x00, 0x01, 0xF4, // FRACSEC: quality 0x0F, 500/1000
        0x20, 0x00, // STAT: sync lost
        0x00, 0x03, 0x00, 0x04, // phasor 3 + 4j
        0xFF, 0xCE, 0x00, 0x19, // FREQ -50 mHz, DFREQ 0.25 Hz/s
        0xFF, 0xF6, // analog -10 x 2
        0x80, 0x01, // digital
    ];
    let crc = crc_ccitt(&frame);
    frame.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(frame.len(), 30);
    let d = decode_data(&frame, &c).unwrap();
    assert_eq!(d.time(), 1_700_000_000.5);
    assert_eq!(d.time_quality.quality_code(), 0x0F);
    let p = &d.pmus[0];
    assert!(p.stat.sync_lost());
    assert_eq!(p.stat.data_error(), 0);
    assert_close(p.phasors[0].magnitude, 5.0, 1e-12);
    assert_close(p.phasors[0].angle, (4.0f64).atan2(3.0), 1e-12);
    assert_close(p.freq, 59.95, 1e-12);
    assert_close(p.dfreq, 0.25, 1e-12);
    assert_eq!(p.analogs, vec![-20.0]);
    assert_eq!(p.digitals, vec![0x8001]);
    let mut again = Vec::new();
    data::encode_data(&d, &c, &mut again).unwrap();
    assert_eq!(again, frame);
}

#[test]
fn header_and_command_round_trip() {
    let store = ConfigStore::new();
    for bytes in all_frames() {
        if bytes[1] >> 4 == 1 || bytes[1] >> 4 == 4 {
            let f = decode(&bytes, &store).unwrap();
            assert_eq!(f.encode(&store).unwrap(), bytes);
        }
    }
    let Frame::Header(h) = decode(
        &all_frames().into_iter().find(|b| b[1] == 0x12).unwrap(),
        &store,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(h.text(), "PMU header text");
    let mut cmd = CommandFrame::new(9, Command::Extended);
    cmd.extended = vec![9; 10];
    let bytes = Frame::Command(cmd.clone()).encode(&store).unwrap();
    assert_eq!(decode(&bytes, &store).unwrap(), Frame::Command(cmd));
    assert_eq!(Command::from_code(7), None);
    assert_eq!(Command::from_code(0x0100), Some(Command::User(0x0100)));
}

#[test]
fn cfg3_fragments_reassemble() {
    let mut c = two_pmus(ConfigKind::Cfg3);
    c.pmus[0].station = "ä long station name for fragments".into();
    let whole = enc_cfg(&c);
    let frames = encode_cfg3_frames(&c, 100).unwrap();
    assert!(frames.len() > 3);
    let idx: Vec<u16> = frames
        .iter()
        .map(|f| u16::from_be_bytes([f[14], f[15]]))
        .collect();
    assert_eq!(idx[0], 1);
    assert_eq!(idx[1], 2);
    assert_eq!(*idx.last().unwrap(), 0xFFFF);
    let store = ConfigStore::new();
    let Frame::Config(want) = decode(&whole, &store).unwrap() else {
        panic!()
    };
    let mut asm = Cfg3Assembler::new();
    let mut got = None;
    for f in &frames {
        assert!(f.len() <= 100);
        let Frame::Cfg3Fragment(frag) = decode(f, &store).unwrap() else {
            panic!()
        };
        assert_eq!(
            Frame::Cfg3Fragment(frag.clone()).encode(&store).unwrap(),
            *f
        );
        got = asm.push(frag).unwrap();
    }
    assert_eq!(got.unwrap(), want);
    assert_eq!(asm.pending(), 0);
    // Out of order: the second fragment is skipped.
    let mut asm = Cfg3Assembler::new();
    let frag = |i: usize| match decode(&frames[i], &store).unwrap() {
        Frame::Cfg3Fragment(f) => f,
        _ => panic!(),
    };
    asm.push(frag(0)).unwrap();
    let e = asm.push(frag(2)).unwrap_err();
    assert_eq!(
        (e.kind, e.field, e.offset, e.expected, e.found),
        (K::Value, "CONT_IDX", 14, Some(2), Some(3))
    );
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

#[test]
fn decode_data_into_does_not_allocate() {
    for c in [
        one_pmu(Format(0)),
        one_pmu(Format(0x0F)),
        two_pmus(ConfigKind::Cfg3),
    ] {
        let frames: Vec<Vec<u8>> = (0..50).map(|s| data_bytes(&c, s)).collect();
        let mut out = DataFrame::with_capacity_for(&c);
        let mut bad = frames[0].clone();
        bad[5] ^= 1;
        let before = allocs();
        for f in &frames {
            decode_data_into(f, &c, &mut out).unwrap();
        }
        let e = decode_data_into(&bad, &c, &mut out).unwrap_err();
        let _ = decode_data_into(&frames[0][..10], &c, &mut out).unwrap_err();
        assert_eq!(allocs(), before, "allocations on the hot path");
        assert_eq!(e.kind, K::Crc);
        assert_eq!(
            out.time(),
            f64::from(out.soc) + f64::from(out.fraction) / 1e6
        );
        assert!(out.freq().is_finite() && out.dfreq().is_finite());
    }
}

fn stream_all(chunks: &[&[u8]]) -> (Vec<StreamEvent>, Option<FrameError>) {
    let mut s = FrameStream::new();
    let mut ev = Vec::new();
    for c in chunks {
        s.feed(c, |e| ev.push(e));
    }
    (ev, s.finish())
}

fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn stream_every_split_point() {
    let frames = all_frames();
    let bytes = concat(&frames);
    let (want, tail) = stream_all(&[&bytes]);
    assert!(tail.is_none());
    assert!(
        want.iter().all(|e| matches!(e, StreamEvent::Frame { .. })),
        "{:?}",
        want.iter().find(|e| matches!(e, StreamEvent::Error(_)))
    );
    // Fragments yield one extra event (the reassembled config).
    assert_eq!(want.len(), frames.len() + 1);
    let mut off = 0u64;
    let offsets: Vec<u64> = frames
        .iter()
        .map(|f| {
            let o = off;
            off += f.len() as u64;
            o
        })
        .collect();
    let got_offsets: Vec<u64> = want.iter().filter_map(|e| match e { StreamEvent::Frame { offset, frame } if !matches!(frame, Frame::Config(c) if c.idcode == 33) => Some(*offset), _ => None }).collect();
    assert_eq!(got_offsets, offsets);
    for split in 0..=bytes.len() {
        let (got, tail) = stream_all(&[&bytes[..split], &bytes[split..]]);
        assert!(tail.is_none());
        assert_eq!(got, want, "split at {split}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(stream_all(&singles).0, want);
}

#[test]
fn stream_resyncs_after_garbage_with_one_error() {
    let c = one_pmu(Format(0x0B));
    let cfg = enc_cfg(&c);
    let d1 = data_bytes(&c, 1);
    let d2 = data_bytes(&c, 2);
    let mut bad = d1.clone();
    bad[20] ^= 1;
    let garbage = [0x00, 0xAA, 0x01, 0x00, 0x05, 0xAA, 0xAA, 0x13, 0x37, 0xAA];
    let bytes = [
        cfg.clone(),
        garbage.to_vec(),
        d1.clone(),
        bad.clone(),
        bad,
        d2.clone(),
    ]
    .concat();
    for chunk in [1usize, 3, 7, 64, bytes.len()] {
        let parts: Vec<&[u8]> = bytes.chunks(chunk).collect();
        let (ev, tail) = stream_all(&parts);
        assert!(tail.is_none());
        let kinds: Vec<String> = ev
            .iter()
            .map(|e| match e {
                StreamEvent::Frame { offset, frame } => {
                    format!("{}@{offset}", frame.frame_type().name())
                }
                StreamEvent::Error(e) => format!("{}@{}", e.kind.name(), e.offset),
            })
            .collect();
        let g = cfg.len();
        let d = g + garbage.len();
        let want = vec![
            "cfg2@0".to_string(),
            format!("sync@{g}"),
            format!("data@{d}"),
            format!("crc@{}", d + d1.len() + d1.len() - 2),
            format!("data@{}", d + 3 * d1.len()),
        ];
        assert_eq!(kinds, want, "chunk {chunk}");
    }
    let (ev, tail) = stream_all(&[&d2[..10]]);
    assert!(ev.is_empty());
    let t = tail.unwrap();
    assert_eq!((t.kind, t.offset), (K::Truncated, 2));
    let (ev, _) = stream_all(&[&d2]);
    assert!(matches!(
        ev[0],
        StreamEvent::Error(FrameError {
            kind: K::NoConfig,
            offset: 4,
            ..
        })
    ));
}

#[test]
fn stream_memory_is_bounded() {
    let mut s = StreamDecoder::new();
    let junk = vec![0x11u8; 1 << 20];
    let mut n = 0;
    s.feed(&junk, |_| n += 1);
    assert_eq!(n, 1);
    assert!(s.buffered() <= stream::STREAM_BUF);
    // A plausible header that claims 65535 bytes waits for them, then fails its CRC.
    let mut head = vec![0xAA, 0x02, 0xFF, 0xFF];
    head.resize(70_000, 0x22);
    let mut errs = Vec::new();
    s.feed(&head, |i| {
        if let StreamItem::Error(e) = i {
            errs.push(e)
        }
    });
    assert!(errs.is_empty(), "garbage run continues");
    assert!(s.buffered() < stream::STREAM_BUF);
}
