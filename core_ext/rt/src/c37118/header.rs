//! Header frames: free-form text (ASCII by the standard) about the PMU and its data.

use std::borrow::Cow;

use super::common::{
    begin_frame, check_header_for_encode, finish_frame, FrameType, Header, TimeQuality, HEADER_LEN,
};
use crate::error::FrameError;

/// A header frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderFrame {
    pub version: u8,
    pub idcode: u16,
    pub soc: u32,
    pub fraction: u32,
    pub time_quality: TimeQuality,
    /// The raw DATA bytes.
    pub data: Vec<u8>,
}

impl HeaderFrame {
    /// The text, with bytes that are not UTF-8 replaced (the standard says ASCII).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.data)
    }
    pub fn header(&self) -> Header {
        Header::new(
            FrameType::Header,
            self.version,
            self.idcode,
            self.soc,
            self.fraction,
            self.time_quality,
        )
    }
}

/// Decode a header frame; `h` comes from `check_frame`.
pub fn decode_header(buf: &[u8], h: &Header) -> HeaderFrame {
    HeaderFrame {
        version: h.version,
        idcode: h.idcode,
        soc: h.soc,
        fraction: h.fraction,
        time_quality: h.time_quality,
        data: buf[HEADER_LEN..h.framesize - 2].to_vec(),
    }
}

/// Append a header frame to `out`.
pub fn encode_header(f: &HeaderFrame, out: &mut Vec<u8>) -> Result<(), FrameError> {
    check_header_for_encode(&f.header())?;
    let start = begin_frame(out, &f.header());
    out.extend_from_slice(&f.data);
    finish_frame(out, start)
}
