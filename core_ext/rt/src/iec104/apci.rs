//! The APCI: start octet, length, and the four control octets of an I, S or U frame.

use super::asdu::{decode_asdu, encode_asdu, Asdu, ASDU_HEADER_LEN, MAX_ASDU_LEN};
use super::{Iec104Error, Iec104ErrorKind, MAX_LENGTH, SEQ_MODULO, START};

/// The U-format functions (each is an activation or its confirmation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UFunction {
    StartDtAct,
    StartDtCon,
    StopDtAct,
    StopDtCon,
    TestFrAct,
    TestFrCon,
}

impl UFunction {
    pub const ALL: [UFunction; 6] = [
        Self::StartDtAct,
        Self::StartDtCon,
        Self::StopDtAct,
        Self::StopDtCon,
        Self::TestFrAct,
        Self::TestFrCon,
    ];

    /// The first control octet: one function bit set, and the U-format bits 0b11.
    pub fn octet(self) -> u8 {
        match self {
            Self::StartDtAct => 0x07,
            Self::StartDtCon => 0x0B,
            Self::StopDtAct => 0x13,
            Self::StopDtCon => 0x23,
            Self::TestFrAct => 0x43,
            Self::TestFrCon => 0x83,
        }
    }

    pub fn from_octet(v: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.octet() == v)
    }

    /// Stable name (`startdt_act`, ...), used by the Python face.
    pub fn name(self) -> &'static str {
        match self {
            Self::StartDtAct => "startdt_act",
            Self::StartDtCon => "startdt_con",
            Self::StopDtAct => "stopdt_act",
            Self::StopDtCon => "stopdt_con",
            Self::TestFrAct => "testfr_act",
            Self::TestFrCon => "testfr_con",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == name)
    }
}

/// The control field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apci {
    /// Numbered information transfer: N(S), N(R).
    I { send: u16, recv: u16 },
    /// Numbered supervisory function: acknowledges up to N(R).
    S { recv: u16 },
    /// Unnumbered control function.
    U(UFunction),
}

/// One APDU: its control field, and the ASDU of an I-frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Apdu {
    pub apci: Apci,
    pub asdu: Option<Asdu>,
}

fn apdu_err(field: &'static str, at: usize, found: u8) -> Iec104Error {
    Iec104Error::new(Iec104ErrorKind::Apdu, field, at).with_found(u64::from(found))
}

/// Decode the first APDU of `data`: `Ok(None)` when `data` holds only part of it,
/// `Ok(Some((consumed, apdu)))` when whole. Offsets in errors count from `data[0]`.
pub fn decode_apdu(data: &[u8]) -> Result<Option<(usize, Apdu)>, Iec104Error> {
    let Some(&start) = data.first() else {
        return Ok(None);
    };
    if start != START {
        return Err(apdu_err("start", 0, start));
    }
    let Some(&len) = data.get(1) else {
        return Ok(None);
    };
    let len = usize::from(len);
    if !(4..=MAX_LENGTH).contains(&len) {
        return Err(apdu_err("length", 1, len as u8));
    }
    let total = 2 + len;
    if data.len() < total {
        return Ok(None);
    }
    let c = &data[2..6];
    let apci = if c[0] & 0x01 == 0 {
        if c[2] & 0x01 != 0 {
            return Err(apdu_err("control", 4, c[2]));
        }
        Apci::I {
            send: u16::from_le_bytes([c[0], c[1]]) >> 1,
            recv: u16::from_le_bytes([c[2], c[3]]) >> 1,
        }
    } else if c[0] & 0x03 == 0x01 {
        // S-format: the rest of the first two octets is zero.
        if c[0] != 0x01 || c[1] != 0 {
            return Err(apdu_err("control", 2, c[0]));
        }
        if c[2] & 0x01 != 0 {
            return Err(apdu_err("control", 4, c[2]));
        }
        Apci::S {
            recv: u16::from_le_bytes([c[2], c[3]]) >> 1,
        }
    } else {
        let f = UFunction::from_octet(c[0]).ok_or_else(|| apdu_err("control", 2, c[0]))?;
        if let Some(i) = c[1..].iter().position(|&b| b != 0) {
            return Err(apdu_err("control", 3 + i, c[1 + i]));
        }
        Apci::U(f)
    };
    let asdu = match apci {
        // Too short for a data unit identifier: the length octet is what is wrong.
        Apci::I { .. } if len < 4 + ASDU_HEADER_LEN => {
            return Err(
                Iec104Error::new(Iec104ErrorKind::Asdu, "data unit identifier", 1)
                    .with_found(len as u64),
            )
        }
        Apci::I { .. } => Some(decode_asdu(&data[6..total]).map_err(|e| e.shifted(6))?),
        _ if len != 4 => return Err(apdu_err("length", 1, len as u8)),
        _ => None,
    };
    Ok(Some((total, Apdu { apci, asdu })))
}

fn seq_ok(v: u16) -> Result<u16, Iec104Error> {
    if v < SEQ_MODULO {
        Ok(v << 1)
    } else {
        Err(
            Iec104Error::new(Iec104ErrorKind::Encode, "sequence number", 0)
                .with_found(u64::from(v)),
        )
    }
}

/// Append an I-frame carrying the already encoded `asdu`.
pub fn encode_i(send: u16, recv: u16, asdu: &[u8], out: &mut Vec<u8>) -> Result<(), Iec104Error> {
    if asdu.is_empty() || asdu.len() > MAX_ASDU_LEN {
        return Err(
            Iec104Error::new(Iec104ErrorKind::Encode, "length", 1).with_found(asdu.len() as u64)
        );
    }
    let (s, r) = (seq_ok(send)?, seq_ok(recv)?);
    out.extend_from_slice(&[START, (4 + asdu.len()) as u8]);
    out.extend_from_slice(&s.to_le_bytes());
    out.extend_from_slice(&r.to_le_bytes());
    out.extend_from_slice(asdu);
    Ok(())
}

/// Append an S-frame acknowledging up to `recv`.
pub fn encode_s(recv: u16, out: &mut Vec<u8>) -> Result<(), Iec104Error> {
    let r = seq_ok(recv)?;
    out.extend_from_slice(&[START, 4, 0x01, 0x00]);
    out.extend_from_slice(&r.to_le_bytes());
    Ok(())
}

/// Append a U-frame.
pub fn encode_u(f: UFunction, out: &mut Vec<u8>) {
    out.extend_from_slice(&[START, 4, f.octet(), 0, 0, 0]);
}

/// Append any APDU (the ASDU of an I-frame encoded from its values).
pub fn encode_apdu(a: &Apdu, out: &mut Vec<u8>) -> Result<(), Iec104Error> {
    match (a.apci, &a.asdu) {
        (Apci::I { send, recv }, Some(asdu)) => {
            let mut body = Vec::with_capacity(MAX_ASDU_LEN);
            encode_asdu(asdu, &mut body)?;
            encode_i(send, recv, &body, out)
        }
        (Apci::S { recv }, None) => encode_s(recv, out),
        (Apci::U(f), None) => {
            encode_u(f, out);
            Ok(())
        }
        _ => Err(Iec104Error::new(Iec104ErrorKind::Encode, "ASDU", 6)),
    }
}
