//! Stream decoder tests: every split point, resync after garbage, bounded memory.

use super::samples::*;
use super::*;
use crate::error::FrameErrorKind as K;

fn enc_cfg(c: &Config) -> Vec<u8> {
    let mut v = Vec::new();
    encode_config(c, &mut v).unwrap();
    v
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
    // Every split point of a stream with one frame of each type (CFG-2 and its data,
    // CFG-3 fragments, header, commands)...
    let kinds: Vec<Vec<u8>> = frames
        .iter()
        .enumerate()
        .filter(|(i, f)| *i < 2 || *i >= 32 + 6 + 2 || f.len() < 40)
        .map(|(_, f)| f.clone())
        .collect();
    let small = concat(&kinds);
    let (small_want, _) = stream_all(&[&small]);
    assert!(small_want
        .iter()
        .all(|e| matches!(e, StreamEvent::Frame { .. })));
    for split in 0..=small.len() {
        let (got, tail) = stream_all(&[&small[..split], &small[split..]]);
        assert!(tail.is_none());
        assert_eq!(got, small_want, "split at {split}");
    }
    // ...and a stride of split points over every sample frame.
    for split in (0..=bytes.len()).step_by(7) {
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
