//! Stream decoder tests: every split point, resync after garbage, bounded memory.

use super::samples::*;
use super::*;
use crate::error::FrameErrorKind as K;

fn enc_cfg(c: &Config) -> Vec<u8> {
    let mut v = Vec::new();
    encode_config(c, &mut v).unwrap();
    v
}

/// The events of `chunks` fed in turn, and those `finish` adds.
fn stream_all(chunks: &[&[u8]]) -> (Vec<StreamEvent>, Vec<StreamEvent>) {
    let mut s = FrameStream::new();
    let mut ev = Vec::new();
    for c in chunks {
        s.feed(c, |e| ev.push(e));
    }
    (ev, s.finish_collect())
}

/// `kind@offset` of every event (the frame type name or the error kind name).
fn names(ev: &[StreamEvent]) -> Vec<String> {
    ev.iter()
        .map(|e| match e {
            StreamEvent::Frame { offset, frame } => {
                format!("{}@{offset}", frame.frame_type().name())
            }
            StreamEvent::Error(e) => format!("{}@{}", e.kind.name(), e.offset),
        })
        .collect()
}

fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn stream_every_split_point() {
    let frames = all_frames();
    let bytes = concat(&frames);
    let (want, tail) = stream_all(&[&bytes]);
    assert!(tail.is_empty());
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
        assert!(tail.is_empty());
        assert_eq!(got, small_want, "split at {split}");
    }
    // ...and a stride of split points over every sample frame.
    for split in (0..=bytes.len()).step_by(7) {
        let (got, tail) = stream_all(&[&bytes[..split], &bytes[split..]]);
        assert!(tail.is_empty());
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
        assert!(tail.is_empty());
        let kinds = names(&ev);
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
    assert_eq!(names(&tail), ["truncated@2"]);
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

/// Garbage that looks like a data frame's SYNC with FRAMESIZE 65535.
const FALSE_START: [u8; 4] = [0xAA, 0x02, 0xFF, 0xFF];

/// A capture: CFG-2 and three data frames, and the offsets of the frames.
fn capture() -> (Vec<u8>, Vec<usize>) {
    let c = one_pmu(Format(0x0B));
    let frames = [
        enc_cfg(&c),
        data_bytes(&c, 1),
        data_bytes(&c, 2),
        data_bytes(&c, 3),
    ];
    let mut at = 0;
    let offsets = frames
        .iter()
        .map(|f| {
            at += f.len();
            at - f.len()
        })
        .collect();
    (frames.concat(), offsets)
}

#[test]
fn stream_frames_behind_a_false_start_are_not_held_up() {
    // Mid-stream (a TCP stream never ends): the decoder used to wait for the 65535
    // bytes the false start claims (half a minute of a 50 frames/s stream). Now the
    // first frame behind it comes out once the next frame's header is in, after one
    // error, and the others as they complete.
    let (cap, offs) = capture();
    let bytes = [&FALSE_START[..], &cap].concat();
    let g = FALSE_START.len();
    let want: Vec<String> = ["framesize@2", &format!("cfg2@{g}")]
        .into_iter()
        .map(String::from)
        .chain(offs[1..].iter().map(|o| format!("data@{}", o + g)))
        .collect();
    for chunk in [1usize, 3, 7, 64, bytes.len()] {
        let parts: Vec<&[u8]> = bytes.chunks(chunk).collect();
        let (ev, tail) = stream_all(&parts);
        assert_eq!(names(&ev), want, "chunk {chunk}");
        assert!(tail.is_empty());
    }
    // Byte by byte: the CFG-2 comes out once 4 bytes of the next header are in.
    let mut s = FrameStream::new();
    let cfg_end = g + offs[1];
    for (i, b) in bytes.iter().enumerate() {
        let ev = s.feed_collect(std::slice::from_ref(b));
        if names(&ev).iter().any(|n| n.starts_with("cfg2")) {
            assert_eq!(i + 1, cfg_end + 4);
        }
    }
}

#[test]
fn stream_finish_rescans_behind_a_false_start() {
    // Two false starts in a row: the search behind the first waits on the second (whose
    // bytes never come), so nothing comes out mid-stream. At the end of input the
    // buffered bytes used to be dropped with one error; now they are rescanned.
    let (cap, offs) = capture();
    let garbage = [FALSE_START, FALSE_START].concat();
    let bytes = [&garbage[..], &cap, &[0x00, 0x11]].concat();
    let g = garbage.len();
    for chunk in [1usize, 5, 64, bytes.len()] {
        let parts: Vec<&[u8]> = bytes.chunks(chunk).collect();
        let (ev, tail) = stream_all(&parts);
        assert!(ev.is_empty(), "chunk {chunk}: {:?}", names(&ev));
        let mut want = vec!["truncated@2".to_string(), format!("cfg2@{g}")];
        want.extend(offs[1..].iter().map(|o| format!("data@{}", o + g)));
        // The two trailing bytes are garbage after a good frame: one error for them.
        want.push(format!("sync@{}", g + cap.len()));
        assert_eq!(names(&tail), want, "chunk {chunk}");
    }
    // finish leaves the decoder empty, at the end of the stream.
    let mut s = FrameStream::new();
    s.feed(&bytes, |_| {});
    s.finish(|_| {});
    assert_eq!(s.offset(), bytes.len() as u64);
    let n = bytes.len();
    assert_eq!(
        names(&s.feed_collect(&cap))[..2],
        [format!("cfg2@{n}"), format!("data@{}", n + offs[1])]
    );
}

#[test]
fn stream_a_genuine_large_frame_with_a_frame_inside_is_not_cut() {
    // A header frame whose text holds a whole valid frame (not followed by a header):
    // while it arrives the search finds the inner frame, but without the next frame's
    // header behind it the outer frame is not taken for a false start.
    let inner = data_bytes(&one_pmu(Format(0x0B)), 1);
    let mut text = vec![b'x'; 30_000];
    text.extend_from_slice(&inner);
    text.extend(std::iter::repeat_n(b'y', 30_000));
    let h = HeaderFrame {
        version: 2,
        idcode: 7,
        soc: 1,
        fraction: 0,
        time_quality: TimeQuality(0),
        data: text,
    };
    let outer = Frame::Header(h).encode(&ConfigStore::new()).unwrap();
    let bytes = [outer.clone(), enc_cfg(&one_pmu(Format(0x0B)))].concat();
    // Chunks of 1000 bytes, and one that ends where the inner frame ends.
    for chunk in [1000usize, 14 + 30_000 + inner.len(), bytes.len()] {
        let parts: Vec<&[u8]> = bytes.chunks(chunk).collect();
        let (ev, tail) = stream_all(&parts);
        assert_eq!(names(&ev), ["header@0", &format!("cfg2@{}", outer.len())]);
        assert!(tail.is_empty());
    }
}
