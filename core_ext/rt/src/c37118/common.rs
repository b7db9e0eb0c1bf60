//! The part every C37.118 frame shares: SYNC, FRAMESIZE, IDCODE, SOC, FRACSEC and CHK,
//! plus the bounds-checked reader and the writer helpers the frame modules use.

use super::crc::frame_chk;
pub use super::wire::{begin_frame, check_header_for_encode, finish_frame, Reader};
use crate::error::{FrameError, FrameErrorKind};

/// Bytes of SYNC + FRAMESIZE + IDCODE + SOC + FRACSEC.
pub const HEADER_LEN: usize = 14;
/// The smallest possible frame: the common header and CHK.
pub const MIN_FRAME: usize = HEADER_LEN + 2;
/// FRAMESIZE is a u16, so no frame is larger.
pub const MAX_FRAME: usize = 65535;

/// The frame type, from bits 6-4 of the second SYNC byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    Data,
    Header,
    Cfg1,
    Cfg2,
    Command,
    Cfg3,
}

impl FrameType {
    /// The type code in SYNC (type 4 is command and type 5 is CFG-3; some parsers swap them).
    pub const fn code(self) -> u8 {
        match self {
            Self::Data => 0,
            Self::Header => 1,
            Self::Cfg1 => 2,
            Self::Cfg2 => 3,
            Self::Command => 4,
            Self::Cfg3 => 5,
        }
    }

    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Data,
            1 => Self::Header,
            2 => Self::Cfg1,
            3 => Self::Cfg2,
            4 => Self::Command,
            5 => Self::Cfg3,
            _ => return None,
        })
    }

    /// Short stable name, as in the JSON output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Header => "header",
            Self::Cfg1 => "cfg1",
            Self::Cfg2 => "cfg2",
            Self::Command => "command",
            Self::Cfg3 => "cfg3",
        }
    }

    /// Parse the second SYNC byte: known type and a version this codec speaks
    /// (1 = 2005, 2 = 2011; CFG-3 exists only from version 2).
    pub const fn parse_sync(byte: u8) -> Option<(Self, u8)> {
        let version = byte & 0x0F;
        if byte & 0x80 != 0 || version == 0 || version > 2 {
            return None;
        }
        match Self::from_code((byte >> 4) & 0x07) {
            Some(Self::Cfg3) if version < 2 => None,
            Some(t) => Some((t, version)),
            None => None,
        }
    }
}

/// The time-quality byte of FRACSEC (bits 31-24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TimeQuality(pub u8);

impl TimeQuality {
    /// Bit 6: the pending or occurred leap second is a deletion (false = addition).
    pub const fn leap_second_delete(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// Bit 5: a leap second occurred (set for 24 h after it).
    pub const fn leap_second_occurred(self) -> bool {
        self.0 & 0x20 != 0
    }
    /// Bit 4: a leap second is pending (set up to 60 s before it).
    pub const fn leap_second_pending(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// Bits 3-0: 0 = locked to UTC, 0x1..0xB = unlocked within 1e-9..10 s, 0xF = clock failure.
    pub const fn quality_code(self) -> u8 {
        self.0 & 0x0F
    }
    /// Worst-case time error in seconds for the quality code (None for clock failure or reserved codes).
    pub fn max_error_s(self) -> Option<f64> {
        match self.quality_code() {
            0 => Some(0.0),
            c @ 1..=0xB => Some(10f64.powi(i32::from(c) - 10)),
            _ => None,
        }
    }
}

/// Fields of the common header of a frame that passed the SYNC, FRAMESIZE and CHK checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub frame_type: FrameType,
    pub version: u8,
    pub framesize: usize,
    pub idcode: u16,
    pub soc: u32,
    /// FRACSEC bits 23-0: the fraction of the second, in 1/TIME_BASE units.
    pub fraction: u32,
    pub time_quality: TimeQuality,
}

impl Header {
    /// A header for encoding (framesize is filled in by `finish_frame`).
    pub const fn new(
        frame_type: FrameType,
        version: u8,
        idcode: u16,
        soc: u32,
        fraction: u32,
        tq: TimeQuality,
    ) -> Self {
        Self {
            frame_type,
            version,
            framesize: 0,
            idcode,
            soc,
            fraction,
            time_quality: tq,
        }
    }
    /// The raw FRACSEC word.
    pub const fn fracsec(&self) -> u32 {
        ((self.time_quality.0 as u32) << 24) | (self.fraction & 0x00FF_FFFF)
    }
}

/// Read the SYNC and FRAMESIZE of a frame at the start of `buf` without checking CHK:
/// `Ok((type, version, framesize))`. Used by `check_frame` and by the stream's resync.
pub fn peek(buf: &[u8]) -> Result<(FrameType, u8, usize), FrameError> {
    if buf.is_empty() {
        return Err(FrameError::new(FrameErrorKind::Truncated, "SYNC", 0).with_values(2, 0));
    }
    if buf[0] != 0xAA {
        return Err(
            FrameError::new(FrameErrorKind::Sync, "SYNC", 0).with_values(0xAA, u64::from(buf[0]))
        );
    }
    if buf.len() < 2 {
        return Err(FrameError::new(FrameErrorKind::Truncated, "SYNC", 1).with_values(2, 1));
    }
    let (ft, version) = FrameType::parse_sync(buf[1]).ok_or_else(|| {
        FrameError::new(FrameErrorKind::Sync, "SYNC", 1).with_found(u64::from(buf[1]))
    })?;
    if buf.len() < 4 {
        return Err(FrameError::new(FrameErrorKind::Truncated, "FRAMESIZE", 2)
            .with_values(4, buf.len() as u64));
    }
    let size = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if size < MIN_FRAME {
        return Err(FrameError::new(FrameErrorKind::FrameSize, "FRAMESIZE", 2)
            .with_values(MIN_FRAME as u64, size as u64));
    }
    Ok((ft, version, size))
}

/// Check SYNC, FRAMESIZE (against the buffer, which must hold exactly one frame) and CHK,
/// and read the common header.
pub fn check_frame(buf: &[u8]) -> Result<Header, FrameError> {
    let (frame_type, version, framesize) = peek(buf)?;
    if buf.len() < framesize {
        return Err(FrameError::new(FrameErrorKind::Truncated, "FRAMESIZE", 2)
            .with_values(framesize as u64, buf.len() as u64));
    }
    if buf.len() > framesize {
        return Err(FrameError::new(FrameErrorKind::FrameSize, "FRAMESIZE", 2)
            .with_values(buf.len() as u64, framesize as u64));
    }
    let (stored, computed) = frame_chk(buf);
    if stored != computed {
        return Err(FrameError::new(FrameErrorKind::Crc, "CHK", framesize - 2)
            .with_values(u64::from(computed), u64::from(stored)));
    }
    let fracsec = u32::from_be_bytes([buf[10], buf[11], buf[12], buf[13]]);
    Ok(Header {
        frame_type,
        version,
        framesize,
        idcode: u16::from_be_bytes([buf[4], buf[5]]),
        soc: u32::from_be_bytes([buf[6], buf[7], buf[8], buf[9]]),
        fraction: fracsec & 0x00FF_FFFF,
        time_quality: TimeQuality((fracsec >> 24) as u8),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let h = Header::new(
            FrameType::Header,
            2,
            7,
            1_700_000_000,
            123,
            TimeQuality(0x25),
        );
        let s = begin_frame(&mut v, &h);
        v.extend_from_slice(body);
        finish_frame(&mut v, s).unwrap();
        v
    }

    #[test]
    fn header_round_trip() {
        let v = frame(b"hi");
        let h = check_frame(&v).unwrap();
        assert_eq!(h.frame_type, FrameType::Header);
        assert_eq!(
            (h.version, h.framesize, h.idcode, h.soc, h.fraction),
            (2, 18, 7, 1_700_000_000, 123)
        );
        assert_eq!(h.time_quality.quality_code(), 5);
        assert!(h.time_quality.leap_second_occurred());
        assert!(!h.time_quality.leap_second_pending());
    }

    #[test]
    fn sync_table() {
        assert_eq!(FrameType::parse_sync(0x01), Some((FrameType::Data, 1)));
        assert_eq!(FrameType::parse_sync(0x42), Some((FrameType::Command, 2)));
        assert_eq!(FrameType::parse_sync(0x52), Some((FrameType::Cfg3, 2)));
        assert_eq!(FrameType::parse_sync(0x51), None);
        assert_eq!(FrameType::parse_sync(0x62), None);
        assert_eq!(FrameType::parse_sync(0x03), None);
        assert_eq!(FrameType::parse_sync(0x00), None);
    }

    #[test]
    fn errors_name_field_and_offset() {
        let v = frame(b"hi");
        let e = check_frame(&v[..10]).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (FrameErrorKind::Truncated, "FRAMESIZE", 2)
        );
        let mut bad = v.clone();
        bad[0] = 0xAB;
        assert_eq!(check_frame(&bad).unwrap_err().kind, FrameErrorKind::Sync);
        let mut bad = v.clone();
        bad[1] = 0x72;
        let e = check_frame(&bad).unwrap_err();
        assert_eq!((e.kind, e.offset), (FrameErrorKind::Sync, 1));
        let mut bad = v.clone();
        bad[15] ^= 1;
        let e = check_frame(&bad).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (FrameErrorKind::Crc, "CHK", 16)
        );
        let mut bad = v.clone();
        bad[3] = 5;
        assert_eq!(
            check_frame(&bad).unwrap_err().kind,
            FrameErrorKind::FrameSize
        );
        let mut long = v.clone();
        long.push(0);
        assert_eq!(
            check_frame(&long).unwrap_err().kind,
            FrameErrorKind::FrameSize
        );
        assert_eq!(
            check_frame(&[]).unwrap_err().kind,
            FrameErrorKind::Truncated
        );
    }

    #[test]
    fn reader_bounds() {
        let data = [0u8, 1, 2, 3, 4];
        let mut r = Reader::new(&data, 1, 4);
        assert_eq!(r.u16("A").unwrap(), 0x0102);
        let e = r.u16("B").unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (FrameErrorKind::Truncated, "B", 3)
        );
    }

    #[test]
    fn time_quality_error() {
        assert_eq!(TimeQuality(0).max_error_s(), Some(0.0));
        assert_eq!(TimeQuality(0x0A).max_error_s(), Some(1.0));
        assert_eq!(TimeQuality(0x0F).max_error_s(), None);
    }
}
