//! IEC 60870-5-104 codec: APDUs (APCI in I, S and U format, with the ASDU of an I-frame)
//! from bytes into plain Rust values, and back.
//!
//! The sizes are the 104 defaults and fixed: cause of transmission 2 octets (with the
//! originator address), common address 2 octets, information object address 3 octets.
//! The information objects decoded are those a plant outstation needs (see [`TypeId`]);
//! an ASDU of any other type decodes with its header only, so that the outstation can
//! answer "unknown type" (cause 44) instead of dropping the connection.
//!
//! Decoding never panics: every malformed input is an [`Iec104Error`] naming the field
//! and its byte offset from the start of the APDU.

mod apci;
mod asdu;
mod time;

#[cfg(test)]
mod tests;

use std::fmt;

pub use apci::{decode_apdu, encode_apdu, encode_i, encode_s, encode_u, Apci, Apdu, UFunction};
pub use asdu::{
    decode_asdu, encode_asdu, max_objects, Asdu, InfoObject, TypeId, Value, ASDU_HEADER_LEN,
    IOA_LEN, MAX_ASDU_LEN,
};
pub use time::Cp56Time;

/// First octet of every APDU.
pub const START: u8 = 0x68;
/// Largest value of the APDU length octet (control field plus ASDU).
pub const MAX_LENGTH: usize = 253;
/// Sequence numbers N(S) and N(R) count modulo 2^15.
pub const SEQ_MODULO: u16 = 1 << 15;
/// Largest information object address (3 octets).
pub const MAX_IOA: u32 = 0xFF_FFFF;

/// Quality descriptor bits (SIQ, DIQ, QDS): blocked, substituted, not topical, invalid.
pub mod quality {
    /// QDS only: overflow.
    pub const OV: u8 = 0x01;
    pub const BL: u8 = 0x10;
    pub const SB: u8 = 0x20;
    pub const NT: u8 = 0x40;
    pub const IV: u8 = 0x80;
}

/// What went wrong with an APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Iec104ErrorKind {
    /// The APCI: start octet, length octet, control field.
    Apdu,
    /// The ASDU: header, variable structure qualifier, object count against the length,
    /// an information object address out of range.
    Asdu,
    /// A CP56Time2a field out of range (milliseconds, minute, hour, day, month).
    Time,
    /// A value that cannot be encoded as asked.
    Encode,
}

impl Iec104ErrorKind {
    /// Short stable name: the counter the outstation counts the error under.
    pub fn name(self) -> &'static str {
        match self {
            Self::Apdu => "apdu",
            Self::Asdu => "asdu",
            Self::Time => "time",
            Self::Encode => "encode",
        }
    }
}

/// An APDU that could not be decoded or encoded: what, which field, where.
///
/// `Copy` data only, so that building one never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iec104Error {
    pub kind: Iec104ErrorKind,
    /// The field that failed (e.g. "start", "length", "VSQ", "CP56Time2a.minute").
    pub field: &'static str,
    /// Byte offset of that field from the start of the APDU (of the ASDU when an ASDU is
    /// decoded on its own).
    pub offset: usize,
    /// The offending value, where one makes sense.
    pub found: Option<u64>,
}

impl Iec104Error {
    pub const fn new(kind: Iec104ErrorKind, field: &'static str, offset: usize) -> Self {
        Self {
            kind,
            field,
            offset,
            found: None,
        }
    }

    pub const fn with_found(mut self, found: u64) -> Self {
        self.found = Some(found);
        self
    }

    /// The same error with its offset moved by `base`.
    pub const fn shifted(mut self, base: usize) -> Self {
        self.offset += base;
        self
    }
}

impl fmt::Display for Iec104Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Iec104ErrorKind::Apdu => "malformed APCI",
            Iec104ErrorKind::Asdu => "malformed ASDU",
            Iec104ErrorKind::Time => "invalid CP56Time2a",
            Iec104ErrorKind::Encode => "cannot encode",
        };
        write!(
            f,
            "{what}: field {} at byte offset {}",
            self.field, self.offset
        )?;
        match self.found {
            Some(v) => write!(f, " (found {v})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Iec104Error {}
