//! Command frames: CMD codes 1-6, 8 (extended frame with a user payload) and the
//! user-designated range 0x0100-0x0FFF.

use super::common::{
    begin_frame, check_header_for_encode, finish_frame, FrameType, Header, Reader, TimeQuality,
    HEADER_LEN,
};
use crate::error::{FrameError, FrameErrorKind};

/// The CMD word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    DataOff,
    DataOn,
    SendHeader,
    SendCfg1,
    SendCfg2,
    SendCfg3,
    Extended,
    /// 0x0100-0x0FFF.
    User(u16),
}

impl Command {
    pub const fn code(self) -> u16 {
        match self {
            Self::DataOff => 1,
            Self::DataOn => 2,
            Self::SendHeader => 3,
            Self::SendCfg1 => 4,
            Self::SendCfg2 => 5,
            Self::SendCfg3 => 6,
            Self::Extended => 8,
            Self::User(c) => c,
        }
    }
    /// The command for a code, None for reserved codes.
    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => Self::DataOff,
            2 => Self::DataOn,
            3 => Self::SendHeader,
            4 => Self::SendCfg1,
            5 => Self::SendCfg2,
            6 => Self::SendCfg3,
            8 => Self::Extended,
            0x0100..=0x0FFF => Self::User(code),
            _ => return None,
        })
    }
    /// Short stable name, as in the JSON output.
    pub const fn name(self) -> &'static str {
        match self {
            Self::DataOff => "data_off",
            Self::DataOn => "data_on",
            Self::SendHeader => "send_header",
            Self::SendCfg1 => "send_cfg1",
            Self::SendCfg2 => "send_cfg2",
            Self::SendCfg3 => "send_cfg3",
            Self::Extended => "extended",
            Self::User(_) => "user",
        }
    }
    /// Whether bytes may follow CMD (extended frames and user codes).
    pub const fn has_payload(self) -> bool {
        matches!(self, Self::Extended | Self::User(_))
    }
}

/// A command frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFrame {
    pub version: u8,
    pub idcode: u16,
    pub soc: u32,
    pub fraction: u32,
    pub time_quality: TimeQuality,
    pub command: Command,
    /// EXTFRAME bytes after CMD (empty unless `command.has_payload()`).
    pub extended: Vec<u8>,
}

impl CommandFrame {
    pub fn new(idcode: u16, command: Command) -> Self {
        Self {
            version: 2,
            idcode,
            soc: 0,
            fraction: 0,
            time_quality: TimeQuality(0),
            command,
            extended: Vec::new(),
        }
    }
    pub fn header(&self) -> Header {
        Header::new(
            FrameType::Command,
            self.version,
            self.idcode,
            self.soc,
            self.fraction,
            self.time_quality,
        )
    }
}

/// Decode a command frame; `h` comes from `check_frame`.
pub fn decode_command(buf: &[u8], h: &Header) -> Result<CommandFrame, FrameError> {
    let end = h.framesize - 2;
    let mut r = Reader::new(buf, HEADER_LEN, end);
    let code = r.u16("CMD")?;
    let command = Command::from_code(code).ok_or_else(|| {
        FrameError::new(FrameErrorKind::Value, "CMD", HEADER_LEN).with_found(u64::from(code))
    })?;
    if !command.has_payload() && r.remaining() != 0 {
        return Err(FrameError::new(FrameErrorKind::FrameSize, "FRAMESIZE", 2)
            .with_values((HEADER_LEN + 4) as u64, h.framesize as u64));
    }
    Ok(CommandFrame {
        version: h.version,
        idcode: h.idcode,
        soc: h.soc,
        fraction: h.fraction,
        time_quality: h.time_quality,
        command,
        extended: buf[HEADER_LEN + 2..end].to_vec(),
    })
}

/// Append a command frame to `out`.
pub fn encode_command(f: &CommandFrame, out: &mut Vec<u8>) -> Result<(), FrameError> {
    check_header_for_encode(&f.header())?;
    if Command::from_code(f.command.code()) != Some(f.command) {
        return Err(FrameError::new(FrameErrorKind::Encode, "CMD", HEADER_LEN)
            .with_found(u64::from(f.command.code())));
    }
    if !f.command.has_payload() && !f.extended.is_empty() {
        return Err(
            FrameError::new(FrameErrorKind::Encode, "EXTFRAME", HEADER_LEN + 2)
                .with_found(f.extended.len() as u64),
        );
    }
    let start = begin_frame(out, &f.header());
    out.extend_from_slice(&f.command.code().to_be_bytes());
    out.extend_from_slice(&f.extended);
    finish_frame(out, start)
}
