//! Byte-level helpers of the frame codecs: a bounds-checked big-endian reader whose
//! errors name the field and offset, and the writer steps every encoder shares.

use super::common::{FrameType, Header, MAX_FRAME};
use super::crc::crc_ccitt;
use crate::error::{FrameError, FrameErrorKind};

/// A bounds-checked big-endian reader over one frame body. `end` excludes CHK so that a
/// field never reads into it; every failure names the field and its offset.
pub struct Reader<'a> {
    buf: &'a [u8],
    pub pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// Read `buf[pos..end]`.
    pub fn new(buf: &'a [u8], pos: usize, end: usize) -> Self {
        Self {
            buf,
            pos,
            end: end.min(buf.len()),
        }
    }

    /// Bytes left before `end`.
    pub fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    #[inline]
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        if self.remaining() < n {
            return Err(FrameError::new(FrameErrorKind::Truncated, field, self.pos)
                .with_values(n as u64, self.remaining() as u64));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FrameError> {
        let s = self.bytes(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline]
    pub fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        Ok(self.array::<1>(field)?[0])
    }
    #[inline]
    pub fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        self.array(field).map(u16::from_be_bytes)
    }
    #[inline]
    pub fn i16(&mut self, field: &'static str) -> Result<i16, FrameError> {
        self.array(field).map(i16::from_be_bytes)
    }
    #[inline]
    pub fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        self.array(field).map(u32::from_be_bytes)
    }
    #[inline]
    pub fn i32(&mut self, field: &'static str) -> Result<i32, FrameError> {
        self.array(field).map(i32::from_be_bytes)
    }
    #[inline]
    pub fn f32(&mut self, field: &'static str) -> Result<f32, FrameError> {
        self.array(field).map(f32::from_be_bytes)
    }
}

/// Start a frame in `out`: SYNC, a FRAMESIZE placeholder, IDCODE, SOC, FRACSEC.
/// Returns the index of the frame start (frames may be appended to a longer buffer).
pub fn begin_frame(out: &mut Vec<u8>, h: &Header) -> usize {
    let start = out.len();
    out.push(0xAA);
    out.push((h.frame_type.code() << 4) | (h.version & 0x0F));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&h.idcode.to_be_bytes());
    out.extend_from_slice(&h.soc.to_be_bytes());
    out.extend_from_slice(&h.fracsec().to_be_bytes());
    start
}

/// Write FRAMESIZE and CHK of the frame that starts at `start`.
pub fn finish_frame(out: &mut Vec<u8>, start: usize) -> Result<(), FrameError> {
    let size = out.len() - start + 2;
    if size > MAX_FRAME {
        out.truncate(start);
        return Err(FrameError::new(FrameErrorKind::Encode, "FRAMESIZE", 2)
            .with_values(MAX_FRAME as u64, size as u64));
    }
    out[start + 2..start + 4].copy_from_slice(&(size as u16).to_be_bytes());
    let crc = crc_ccitt(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Check the header fields an encoder takes from the caller.
pub fn check_header_for_encode(h: &Header) -> Result<(), FrameError> {
    if FrameType::parse_sync((h.frame_type.code() << 4) | h.version).is_none() || h.version > 2 {
        return Err(
            FrameError::new(FrameErrorKind::Encode, "SYNC", 1).with_found(u64::from(h.version))
        );
    }
    if h.fraction > 0x00FF_FFFF {
        return Err(FrameError::new(FrameErrorKind::Encode, "FRACSEC", 10)
            .with_found(u64::from(h.fraction)));
    }
    Ok(())
}
