//! IEEE C37.118.2 synchrophasor frames (versions 1 = 2005 and 2 = 2011): decode and
//! encode data, header, CFG-1/2/3 and command frames, a config store keyed by IDCODE,
//! and a streaming decoder for TCP byte streams.
//!
//! Every failure is a `FrameError` naming the C37.118 field and its byte offset; no
//! input makes the codec panic, and nothing is allocated from an untrusted length beyond
//! what the frame's own size allows.

pub mod batch;
pub mod cfg12;
pub mod cfg3;
pub mod command;
pub mod common;
pub mod config;
pub mod crc;
pub mod data;
pub mod data_encode;
pub mod fragments;
pub mod header;
pub mod samples;
pub mod session;
pub mod store;
pub mod stream;
pub mod walk;
pub mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_stream;

pub use cfg3::Cfg3Fragment;
pub use command::{Command, CommandFrame};
pub use common::{check_frame, FrameType, Header, TimeQuality, MAX_FRAME, MIN_FRAME};
pub use config::{
    anunit, phunit, AnalogScale, Cfg3Ext, Config, ConfigKind, Format, PhasorScale, PmuConfig,
};
pub use crc::crc_ccitt;
pub use data::{decode_data, decode_data_into, DataFrame, Phasor, PmuData, Stat};
pub use fragments::{encode_cfg3_frames, Cfg3Assembler};
pub use header::HeaderFrame;
pub use session::{FrameStream, StreamEvent};
pub use store::ConfigStore;
pub use stream::{StreamDecoder, StreamItem};

use crate::error::{FrameError, FrameErrorKind};

/// Any decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Data(DataFrame),
    Header(HeaderFrame),
    /// CFG-1, CFG-2 or a whole CFG-3 (see `Config::kind`).
    Config(Config),
    /// One fragment of a CFG-3 (CONT_IDX != 0); join them with `Cfg3Assembler`.
    Cfg3Fragment(Cfg3Fragment),
    Command(CommandFrame),
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Data(_) => FrameType::Data,
            Self::Header(_) => FrameType::Header,
            Self::Config(c) => c.kind.frame_type(),
            Self::Cfg3Fragment(_) => FrameType::Cfg3,
            Self::Command(_) => FrameType::Command,
        }
    }
    pub fn idcode(&self) -> u16 {
        match self {
            Self::Data(f) => f.idcode,
            Self::Header(f) => f.idcode,
            Self::Config(f) => f.idcode,
            Self::Cfg3Fragment(f) => f.idcode,
            Self::Command(f) => f.idcode,
        }
    }

    /// Encode the frame. Data frames need their configuration in `configs`; a CFG-3 too
    /// large for one frame is refused here (use `encode_cfg3_frames`).
    pub fn encode(&self, configs: &ConfigStore) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        self.encode_into(configs, &mut out)?;
        Ok(out)
    }

    /// Append the encoded frame to `out`.
    pub fn encode_into(&self, configs: &ConfigStore, out: &mut Vec<u8>) -> Result<(), FrameError> {
        match self {
            Self::Data(f) => {
                let cfg = configs.get(f.idcode).ok_or_else(|| {
                    FrameError::new(FrameErrorKind::NoConfig, "IDCODE", 4)
                        .with_found(u64::from(f.idcode))
                })?;
                data::encode_data(f, cfg, out)
            }
            Self::Header(f) => header::encode_header(f, out),
            Self::Config(c) => encode_config(c, out),
            Self::Cfg3Fragment(f) => {
                let h = Header::new(
                    FrameType::Cfg3,
                    f.version,
                    f.idcode,
                    f.soc,
                    f.fraction,
                    f.time_quality,
                );
                common::check_header_for_encode(&h)?;
                let start = common::begin_frame(out, &h);
                out.extend_from_slice(&f.cont_idx.to_be_bytes());
                out.extend_from_slice(&f.payload);
                common::finish_frame(out, start)
            }
            Self::Command(f) => command::encode_command(f, out),
        }
    }
}

/// Append a configuration frame of the kind `c.kind` says.
pub fn encode_config(c: &Config, out: &mut Vec<u8>) -> Result<(), FrameError> {
    match c.kind {
        ConfigKind::Cfg3 => fragments::encode_cfg3(c, out),
        _ => cfg12::encode_cfg12(c, out),
    }
}

/// Decode one frame that fills `buf` exactly. Data frames are read against the
/// configuration of their IDCODE in `configs` (none: `NoConfig`).
pub fn decode(buf: &[u8], configs: &ConfigStore) -> Result<Frame, FrameError> {
    let h = check_frame(buf)?;
    decode_checked(buf, &h, configs)
}

/// `decode` for a frame whose header, size and CHK were already checked.
pub fn decode_checked(buf: &[u8], h: &Header, configs: &ConfigStore) -> Result<Frame, FrameError> {
    Ok(match h.frame_type {
        FrameType::Data => {
            let cfg = configs.get(h.idcode).ok_or_else(|| {
                FrameError::new(FrameErrorKind::NoConfig, "IDCODE", 4)
                    .with_found(u64::from(h.idcode))
            })?;
            let mut out = DataFrame::with_capacity_for(cfg);
            data::decode_checked(buf, h, cfg, &mut out)?;
            Frame::Data(out)
        }
        FrameType::Header => Frame::Header(header::decode_header(buf, h)),
        FrameType::Cfg1 | FrameType::Cfg2 => Frame::Config(cfg12::decode_cfg12(buf, h)?),
        FrameType::Cfg3 => match cfg3::decode_cfg3(buf, h)? {
            cfg3::Cfg3Frame::Whole(c) => Frame::Config(c),
            cfg3::Cfg3Frame::Fragment(f) => Frame::Cfg3Fragment(f),
        },
        FrameType::Command => Frame::Command(command::decode_command(buf, h)?),
    })
}
