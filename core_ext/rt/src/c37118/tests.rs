//! Codec tests across modules: round trips of every frame type and FORMAT, known bytes,
//! every error kind, allocation-free data decoding, and stream chunking and resync.

use super::samples::*;
use super::*;
use crate::alloc_count::{thread_allocations as allocs, CountingAllocator};
use crate::error::FrameErrorKind as K;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

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
fn polar_phasors_are_written_in_the_standards_ranges() {
    // Angles far outside (-pi, pi] (a simulated PMU's turning phase), on its edges, and a
    // negative magnitude: every polar FORMAT writes magnitude >= 0 and angle in (-pi, pi]
    // (int16 within +-31416), and the phasor read back is the same phasor.
    use std::f64::consts::PI;
    let angles = [
        0.0,
        PI,
        -PI,
        3.0 * PI,
        -3.0 * PI,
        7.5,
        -7.5,
        PI - 1e-9,
        -PI + 1e-9,
        1e4,
    ];
    for f in Format::all().filter(|f| f.polar()) {
        let c = one_pmu(f);
        for (i, &angle) in angles.iter().enumerate() {
            let mut d = data_for(&c, 3);
            let k = c.pmus[0].phasor_factor(0);
            d.pmus[0].phasors[0] = Phasor {
                magnitude: 20_000.0 * k,
                angle,
            };
            d.pmus[0].phasors[1] = Phasor {
                magnitude: -20_000.0 * k,
                angle,
            };
            let mut bytes = Vec::new();
            data::encode_data(&d, &c, &mut bytes).unwrap();
            let got = decode_data(&bytes, &c).unwrap();
            for (j, p) in got.pmus[0].phasors[..2].iter().enumerate() {
                let want = d.pmus[0].phasors[j];
                assert!(p.magnitude >= 0.0, "format {f:?} angle {i}: {p:?}");
                if f.phasors_float() {
                    assert!(
                        -PI < p.angle && p.angle <= PI,
                        "format {f:?} angle {i}: {p:?}"
                    );
                } else {
                    let raw = i16::from_be_bytes([bytes[16 + 4 * j + 2], bytes[16 + 4 * j + 3]]);
                    assert!((-31416..=31416).contains(&raw), "format {f:?}: {raw}");
                }
                // The same phasor, to the resolution of the encoding (1e-4 rad for int16
                // angles; float32 keeps ~1e-3 rad of an angle of 1e4 rad).
                let tol = want.magnitude.abs() * if angle.abs() > 100.0 { 1e-2 } else { 1e-4 };
                let miss = (p.real() - want.real()).hypot(p.imag() - want.imag());
                assert!(miss <= tol, "format {f:?} angle {i}: {p:?} != {want:?}");
            }
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
