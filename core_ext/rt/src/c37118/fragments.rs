//! CFG-3 fragmentation: splitting a configuration too large for one frame into
//! CONT_IDX fragments, and joining received fragments back (bounded in memory).

use std::collections::HashMap;

use super::cfg3::{decode_body, encode_body, Cfg3Fragment, BODY_AT, CONT_IDX_AT, MAX_CFG3_BODY};
use super::common::{begin_frame, finish_frame, FrameType, Header, MAX_FRAME};
use super::config::Config;
use crate::error::{FrameError, FrameErrorKind};

/// Encode `cfg` as CFG-3 frames of at most `max_frame` bytes each: one frame with
/// CONT_IDX 0 if it fits, else fragments 1, 2, .., 0xFFFF.
pub fn encode_cfg3_frames(cfg: &Config, max_frame: usize) -> Result<Vec<Vec<u8>>, FrameError> {
    let max_frame = max_frame.min(MAX_FRAME);
    if max_frame <= BODY_AT + 2 {
        return Err(
            FrameError::new(FrameErrorKind::Encode, "FRAMESIZE", 2).with_found(max_frame as u64)
        );
    }
    let body = encode_body(cfg)?;
    let chunk = max_frame - BODY_AT - 2;
    let n = body.len().div_ceil(chunk).max(1);
    if n >= 0xFFFF {
        return Err(
            FrameError::new(FrameErrorKind::Encode, "CONT_IDX", CONT_IDX_AT).with_found(n as u64),
        );
    }
    let mut h = cfg.header();
    h.frame_type = FrameType::Cfg3;
    h.version = 2;
    let mut frames = Vec::with_capacity(n);
    for (i, part) in body.chunks(chunk).enumerate() {
        let cont_idx: u16 = if n == 1 {
            0
        } else if i + 1 == n {
            0xFFFF
        } else {
            i as u16 + 1
        };
        let mut out = Vec::with_capacity(part.len() + BODY_AT + 2);
        let start = begin_frame(&mut out, &h);
        out.extend_from_slice(&cont_idx.to_be_bytes());
        out.extend_from_slice(part);
        finish_frame(&mut out, start)?;
        frames.push(out);
    }
    Ok(frames)
}

/// Encode `cfg` as one unfragmented CFG-3 frame appended to `out`.
pub fn encode_cfg3(cfg: &Config, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut frames = encode_cfg3_frames(cfg, MAX_FRAME)?;
    if frames.len() != 1 {
        return Err(FrameError::new(FrameErrorKind::Encode, "FRAMESIZE", 2)
            .with_values(MAX_FRAME as u64, (frames.len() * MAX_FRAME) as u64));
    }
    out.append(&mut frames[0]);
    Ok(())
}

/// At most this many configurations are assembled at once (one per IDCODE).
pub const MAX_PENDING: usize = 16;

struct Partial {
    next: u16,
    first: Cfg3Fragment,
    body: Vec<u8>,
}

/// Joins CFG-3 fragments per IDCODE. A fragment out of order drops the partial
/// configuration and reports CONT_IDX.
#[derive(Default)]
pub struct Cfg3Assembler {
    partial: HashMap<u16, Partial>,
}

impl Cfg3Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one fragment; returns the whole configuration when the last one arrives.
    pub fn push(&mut self, frag: Cfg3Fragment) -> Result<Option<Config>, FrameError> {
        let bad_idx = |expected: u16, found: u16| {
            FrameError::new(FrameErrorKind::Value, "CONT_IDX", CONT_IDX_AT)
                .with_values(u64::from(expected), u64::from(found))
        };
        if frag.cont_idx == 1 {
            // Bound memory when many IDCODEs start and never finish: drop some other partial.
            if self.partial.len() >= MAX_PENDING && !self.partial.contains_key(&frag.idcode) {
                if let Some(&k) = self.partial.keys().next() {
                    self.partial.remove(&k);
                }
            }
            let body = frag.payload.clone();
            self.partial.insert(
                frag.idcode,
                Partial {
                    next: 2,
                    first: frag,
                    body,
                },
            );
            return Ok(None);
        }
        let Some(p) = self.partial.get_mut(&frag.idcode) else {
            return Err(bad_idx(1, frag.cont_idx));
        };
        if frag.cont_idx != 0xFFFF && frag.cont_idx != p.next {
            let next = p.next;
            self.partial.remove(&frag.idcode);
            return Err(bad_idx(next, frag.cont_idx));
        }
        if p.body.len() + frag.payload.len() > MAX_CFG3_BODY {
            self.partial.remove(&frag.idcode);
            return Err(
                FrameError::new(FrameErrorKind::FrameSize, "CONT_IDX", CONT_IDX_AT)
                    .with_found(MAX_CFG3_BODY as u64),
            );
        }
        p.body.extend_from_slice(&frag.payload);
        p.next = p.next.wrapping_add(1);
        if frag.cont_idx != 0xFFFF {
            return Ok(None);
        }
        let Partial { first, body, .. } = self.partial.remove(&frag.idcode).expect("present");
        let h = Header::new(
            FrameType::Cfg3,
            first.version,
            first.idcode,
            first.soc,
            first.fraction,
            first.time_quality,
        );
        // Offsets inside the joined body mean nothing in any one frame: report the
        // failing field at the CONT_IDX of the last fragment.
        decode_body(&body, &h, BODY_AT).map(Some).map_err(|mut e| {
            e.offset = CONT_IDX_AT;
            e
        })
    }

    /// Number of configurations waiting for more fragments.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::c37118::common::TimeQuality;

    fn frag(idcode: u16, cont_idx: u16) -> Cfg3Fragment {
        Cfg3Fragment {
            version: 2,
            idcode,
            soc: 0,
            fraction: 0,
            time_quality: TimeQuality(0),
            cont_idx,
            payload: vec![0; 1000],
        }
    }

    #[test]
    fn pending_partials_are_bounded() {
        let mut a = Cfg3Assembler::new();
        for id in 0..1000 {
            assert_eq!(a.push(frag(id, 1)), Ok(None));
            assert!(a.pending() <= MAX_PENDING);
        }
        let e = a.push(frag(5000, 2)).unwrap_err();
        assert_eq!((e.field, e.offset), ("CONT_IDX", CONT_IDX_AT));
    }

    #[test]
    fn body_size_is_bounded() {
        let mut a = Cfg3Assembler::new();
        a.push(frag(1, 1)).unwrap();
        let mut idx = 2;
        let err = loop {
            match a.push(frag(1, idx)) {
                Ok(None) => idx += 1,
                Ok(Some(_)) => panic!("joined garbage"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind, FrameErrorKind::FrameSize);
        assert_eq!(a.pending(), 0);
        assert!(usize::from(idx) * 1000 > MAX_CFG3_BODY);
    }
}
