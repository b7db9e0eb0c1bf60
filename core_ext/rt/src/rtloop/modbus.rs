//! The minimal Modbus TCP client of the real-time loop: one holding-register point
//! encoded as the register map file describes it (type, scale, sign, word order), a
//! write request (function 6 for one register, 16 for more), a read request (function
//! 3, for the checks made on connect), and the response check.
//!
//! Pure functions on byte slices, so every rule is unit-tested without a socket; the
//! loop owns the sockets (`run.rs`). Nothing here allocates.

use crate::error::ConfigError;

/// Value type of a register point (the register map's `type`), bits excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegType {
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl RegType {
    /// The map's name of the type.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "u16" => Self::U16,
            "i16" => Self::I16,
            "u32" => Self::U32,
            "i32" => Self::I32,
            "f32" => Self::F32,
            _ => return None,
        })
    }
    /// Registers the type occupies.
    pub fn words(self) -> usize {
        match self {
            Self::U16 | Self::I16 => 1,
            _ => 2,
        }
    }
}

/// One holding-register point of a register map, as the writer needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegisterPoint {
    /// Zero-based protocol address.
    pub address: u16,
    pub kind: RegType,
    /// Engineering value = raw * scale (> 0).
    pub scale: f64,
    /// The device counts the other direction as positive (`sign: charge_positive`).
    pub negate: bool,
    /// Low word at the lower address (`word_order: little`; 32-bit types only).
    pub little_words: bool,
}

impl RegisterPoint {
    pub fn validate(&self, what: &'static str) -> Result<(), ConfigError> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(ConfigError::new(
                what,
                format!("scale must be positive, got {}", self.scale),
            ));
        }
        if usize::from(self.address) + self.kind.words() > 0x1_0000 {
            return Err(ConfigError::new(
                what,
                format!("address {} leaves no room for its registers", self.address),
            ));
        }
        Ok(())
    }

    /// `value` (vpp units and sign) as the point's registers; None when it is not finite
    /// or does not fit the type (the caller writes nothing: never a wrapped value).
    pub fn encode(&self, value: f64) -> Option<([u16; 2], usize)> {
        let v = if self.negate { -value } else { value };
        let scaled = v / self.scale;
        if !scaled.is_finite() {
            return None;
        }
        // Rounded half away from zero: Python's round() rounds half to even, which differs
        // only on exact halves of a raw step, both within half a step of the value.
        let raw = scaled.round();
        let (hi, lo) = match self.kind {
            RegType::U16 => return in_range(raw, 0.0, 65_535.0).map(|r| ([r as u16, 0], 1)),
            RegType::I16 => {
                return in_range(raw, -32_768.0, 32_767.0).map(|r| ([(r as i16) as u16, 0], 1))
            }
            RegType::U32 => {
                let r = in_range(raw, 0.0, 4_294_967_295.0)? as u32;
                ((r >> 16) as u16, r as u16)
            }
            RegType::I32 => {
                let r = in_range(raw, -2_147_483_648.0, 2_147_483_647.0)? as i32 as u32;
                ((r >> 16) as u16, r as u16)
            }
            RegType::F32 => {
                if scaled.abs() > f64::from(f32::MAX) {
                    return None;
                }
                let r = (scaled as f32).to_bits();
                ((r >> 16) as u16, r as u16)
            }
        };
        Some((
            if self.little_words {
                [lo, hi]
            } else {
                [hi, lo]
            },
            2,
        ))
    }
}

fn in_range(raw: f64, lo: f64, hi: f64) -> Option<f64> {
    (lo..=hi).contains(&raw).then_some(raw)
}

/// Most registers one write request built here carries: a setpoint's two and the
/// target's prefix (`super::MAX_PREFIX`).
pub const MAX_WRITE_WORDS: usize = 2 + super::MAX_PREFIX;
/// Longest request built here: MBAP (7) + function 16 header (6) + the registers.
pub const MAX_REQUEST: usize = 13 + 2 * MAX_WRITE_WORDS;

/// A read request (function 3) for `count` holding registers at `address`; returns
/// its length (12).
pub fn read_request(
    tid: u16,
    unit_id: u8,
    address: u16,
    count: u16,
    out: &mut [u8; MAX_REQUEST],
) -> usize {
    out[0..2].copy_from_slice(&tid.to_be_bytes());
    out[2..4].copy_from_slice(&[0, 0]);
    out[4..6].copy_from_slice(&6u16.to_be_bytes());
    out[6] = unit_id;
    out[7] = 3;
    out[8..10].copy_from_slice(&address.to_be_bytes());
    out[10..12].copy_from_slice(&count.to_be_bytes());
    12
}

/// A write request for `words` (1 to `MAX_WRITE_WORDS`) at `address` of device
/// `unit_id`, transaction `tid`, into `out`; returns its length. Function 6 for one
/// register, 16 for more.
pub fn write_request(
    tid: u16,
    unit_id: u8,
    address: u16,
    words: &[u16],
    out: &mut [u8; MAX_REQUEST],
) -> usize {
    out[0..2].copy_from_slice(&tid.to_be_bytes());
    out[2..4].copy_from_slice(&[0, 0]); // protocol id
    out[6] = unit_id;
    out[8..10].copy_from_slice(&address.to_be_bytes());
    if words.len() == 1 {
        out[4..6].copy_from_slice(&6u16.to_be_bytes());
        out[7] = 6;
        out[10..12].copy_from_slice(&words[0].to_be_bytes());
        12
    } else {
        let n = words.len() as u16;
        out[4..6].copy_from_slice(&(7 + 2 * n).to_be_bytes());
        out[7] = 16;
        out[10..12].copy_from_slice(&n.to_be_bytes());
        out[12] = (2 * n) as u8;
        for (i, w) in words.iter().enumerate() {
            out[13 + 2 * i..15 + 2 * i].copy_from_slice(&w.to_be_bytes());
        }
        13 + 2 * words.len()
    }
}

/// What a complete response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The write was done (transaction id).
    Ok(u16),
    /// A read's registers (transaction id, count): the words are the response's bytes
    /// from 9 on, big-endian.
    Registers(u16, u16),
    /// An exception response (transaction id, exception code).
    Exception(u16, u8),
    /// Not a response to a write of ours (wrong protocol id, function, length).
    Malformed,
}

/// Split one response off the front of `buf`: None until a whole one is there, else its
/// length and meaning. A length field beyond any Modbus response is `Malformed` with
/// the whole buffer consumed (the connection is then reset by the caller).
pub fn parse_reply(buf: &[u8]) -> Option<(usize, Reply)> {
    if buf.len() < 7 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if !(2..=254).contains(&len) || buf[2] != 0 || buf[3] != 0 {
        return Some((buf.len(), Reply::Malformed));
    }
    let total = 6 + len;
    if buf.len() < total {
        return None;
    }
    let tid = u16::from_be_bytes([buf[0], buf[1]]);
    let func = buf[7];
    let reply = match func {
        6 | 16 if len == 6 => Reply::Ok(tid),
        3 if len >= 5 && len == 3 + usize::from(buf[8]) && buf[8] % 2 == 0 => {
            Reply::Registers(tid, u16::from(buf[8] / 2))
        }
        0x83 | 0x86 | 0x90 if len == 3 => Reply::Exception(tid, buf[8]),
        _ => Reply::Malformed,
    };
    Some((total, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(kind: RegType, scale: f64, negate: bool, little: bool) -> RegisterPoint {
        RegisterPoint {
            address: 0,
            kind,
            scale,
            negate,
            little_words: little,
        }
    }

    #[test]
    fn encodes_like_the_register_map() {
        // bess_default's active_power_setpoint: i32, big word order, 0.1 kW, charge positive.
        let p = point(RegType::I32, 0.1, true, false);
        assert_eq!(p.encode(12.3), Some(([0xFFFF, 0xFF85], 2))); // -123
        assert_eq!(p.encode(-1.0), Some(([0, 10], 2)));
        let p = point(RegType::I32, 0.1, false, true);
        assert_eq!(p.encode(6553.7), Some(([1, 1], 2))); // 65537 = 0x0001_0001
        assert_eq!(p.encode(0.2), Some(([2, 0], 2)));
        let p = point(RegType::I16, 1.0, false, false);
        assert_eq!(p.encode(-2.0), Some(([0xFFFE, 0], 1)));
        assert_eq!(p.encode(40_000.0), None);
        let p = point(RegType::U16, 1.0, false, false);
        assert_eq!(p.encode(-1.0), None);
        assert_eq!(p.encode(f64::NAN), None);
        let p = point(RegType::F32, 1.0, false, false);
        let ([hi, lo], 2) = p.encode(1.5).unwrap() else {
            panic!()
        };
        assert_eq!(f32::from_bits((u32::from(hi) << 16) | u32::from(lo)), 1.5);
        assert_eq!(p.encode(1e300), None);
    }

    #[test]
    fn requests_and_replies() {
        let mut out = [0u8; MAX_REQUEST];
        let n = write_request(0x0102, 1, 0, &[0xFFFF, 0xFF85], &mut out);
        assert_eq!(
            &out[..n],
            &[1, 2, 0, 0, 0, 11, 1, 16, 0, 0, 0, 2, 4, 0xFF, 0xFF, 0xFF, 0x85]
        );
        let n = write_request(7, 3, 12, &[5], &mut out);
        assert_eq!(&out[..n], &[0, 7, 0, 0, 0, 6, 3, 6, 0, 12, 0, 5]);
        let ok = [1, 2, 0, 0, 0, 6, 1, 16, 0, 0, 0, 2];
        assert_eq!(parse_reply(&ok), Some((12, Reply::Ok(0x0102))));
        assert_eq!(parse_reply(&ok[..11]), None);
        let exc = [0, 9, 0, 0, 0, 3, 1, 0x90, 3];
        assert_eq!(parse_reply(&exc), Some((9, Reply::Exception(9, 3))));
        let bad = [0, 9, 0, 1, 0, 3, 1, 0x90, 3];
        assert_eq!(parse_reply(&bad), Some((9, Reply::Malformed)));
        let huge = [0, 9, 0, 0, 0xFF, 0xFF, 1];
        assert_eq!(parse_reply(&huge), Some((7, Reply::Malformed)));
    }

    #[test]
    fn reads_and_long_writes() {
        let mut out = [0u8; MAX_REQUEST];
        let n = read_request(5, 1, 40000, 2, &mut out);
        assert_eq!(&out[..n], &[0, 5, 0, 0, 0, 6, 1, 3, 0x9C, 0x40, 0, 2]);
        let regs = [0, 5, 0, 0, 0, 7, 1, 3, 4, 0x53, 0x75, 0x6E, 0x53];
        assert_eq!(parse_reply(&regs), Some((13, Reply::Registers(5, 2))));
        // A byte count that disagrees with the length, or an odd one: malformed.
        let odd = [0, 5, 0, 0, 0, 6, 1, 3, 3, 0x53, 0x75, 0x6E];
        assert_eq!(parse_reply(&odd), Some((12, Reply::Malformed)));
        let short = [0, 5, 0, 0, 0, 7, 1, 3, 2, 0x53, 0x75, 0x6E, 0x53];
        assert_eq!(parse_reply(&short), Some((13, Reply::Malformed)));
        let exc = [0, 5, 0, 0, 0, 3, 1, 0x83, 2];
        assert_eq!(parse_reply(&exc), Some((9, Reply::Exception(5, 2))));
        // The longest write: prefix and a two-register setpoint in one function 16.
        let words = [1u16; MAX_WRITE_WORDS];
        let n = write_request(1, 1, 100, &words, &mut out);
        assert_eq!(n, MAX_REQUEST);
        assert_eq!(out[7], 16);
        assert_eq!(usize::from(out[12]), 2 * MAX_WRITE_WORDS);
        assert_eq!(usize::from(u16::from_be_bytes([out[4], out[5]])), n - 6);
    }

    #[test]
    fn any_bytes_parse_without_panic() {
        // A small deterministic generator: every prefix of pseudo-random buffers.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut buf = [0u8; 16];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if x % 3 == 0 {
                buf[2] = 0;
                buf[3] = 0;
                buf[4] = 0;
            }
            for n in 0..=16 {
                if let Some((used, _)) = parse_reply(&buf[..n]) {
                    assert!(used <= n && used > 0);
                }
            }
        }
    }
}
