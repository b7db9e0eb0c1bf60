//! Data frames: decoded against the configuration of their IDCODE, on the hot path
//! without allocation (`decode_data_into` reuses the output's vectors).

use super::common::{check_frame, FrameType, Header, TimeQuality, HEADER_LEN};
use super::config::Config;
pub use super::data_encode::encode_data;
use super::walk::walk_pmu;
use crate::error::{FrameError, FrameErrorKind};

/// One phasor in engineering units (V or A) and radians.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Phasor {
    pub magnitude: f64,
    pub angle: f64,
}

impl Phasor {
    pub fn from_rect(re: f64, im: f64) -> Self {
        Self {
            magnitude: re.hypot(im),
            angle: im.atan2(re),
        }
    }
    pub fn real(&self) -> f64 {
        self.magnitude * self.angle.cos()
    }
    pub fn imag(&self) -> f64 {
        self.magnitude * self.angle.sin()
    }
}

/// The STAT word of one PMU block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Stat(pub u16);

impl Stat {
    /// Bits 15-14: 0 good, 1 PMU error, 2 test mode or absent data, 3 PMU error.
    pub const fn data_error(self) -> u8 {
        (self.0 >> 14) as u8
    }
    /// Bit 13: PMU not in sync with UTC.
    pub const fn sync_lost(self) -> bool {
        self.0 & 0x2000 != 0
    }
    /// Bit 12: data sorted by arrival instead of by timestamp.
    pub const fn sorted_by_arrival(self) -> bool {
        self.0 & 0x1000 != 0
    }
    /// Bit 11: a trigger was detected.
    pub const fn trigger(self) -> bool {
        self.0 & 0x0800 != 0
    }
    /// Bit 10: the configuration will change; re-read it.
    pub const fn config_changed(self) -> bool {
        self.0 & 0x0400 != 0
    }
    /// Bit 9: data modified by post-processing.
    pub const fn data_modified(self) -> bool {
        self.0 & 0x0200 != 0
    }
    /// Bits 8-6: PMU time quality (0 not used, 1 < 100 ns .. 7 > 10 ms).
    pub const fn time_quality(self) -> u8 {
        ((self.0 >> 6) & 0x07) as u8
    }
    /// Bits 5-4: time since sync was lost (0 < 10 s, 1 < 100 s, 2 < 1000 s, 3 > 1000 s).
    pub const fn unlocked_time(self) -> u8 {
        ((self.0 >> 4) & 0x03) as u8
    }
    /// Bits 3-0: trigger reason.
    pub const fn trigger_reason(self) -> u8 {
        (self.0 & 0x0F) as u8
    }
}

/// One PMU block of a data frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PmuData {
    pub idcode: u16,
    pub stat: Stat,
    pub phasors: Vec<Phasor>,
    /// Absolute frequency, Hz.
    pub freq: f64,
    /// Rate of change of frequency, Hz/s.
    pub dfreq: f64,
    pub analogs: Vec<f64>,
    pub digitals: Vec<u16>,
}

/// A decoded data frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataFrame {
    pub version: u8,
    pub idcode: u16,
    pub soc: u32,
    /// FRACSEC bits 23-0.
    pub fraction: u32,
    pub time_quality: TimeQuality,
    /// TIME_BASE of the configuration the frame was read with.
    pub time_base: u32,
    pub pmus: Vec<PmuData>,
}

impl DataFrame {
    /// An empty frame whose vectors can hold a frame of `cfg` without growing.
    pub fn with_capacity_for(cfg: &Config) -> Self {
        let pmus = cfg
            .pmus
            .iter()
            .map(|p| PmuData {
                phasors: Vec::with_capacity(p.phnmr()),
                analogs: Vec::with_capacity(p.annmr()),
                digitals: Vec::with_capacity(p.dgnmr()),
                ..Default::default()
            })
            .collect();
        Self {
            pmus,
            time_base: cfg.time_base,
            ..Default::default()
        }
    }
    /// SOC + FRACSEC / TIME_BASE, seconds since the UNIX epoch.
    #[inline]
    pub fn time(&self) -> f64 {
        f64::from(self.soc) + f64::from(self.fraction) / f64::from(self.time_base.max(1))
    }
    /// Frequency of the first PMU (Hz), NaN if there is none.
    #[inline]
    pub fn freq(&self) -> f64 {
        self.pmus.first().map_or(f64::NAN, |p| p.freq)
    }
    /// ROCOF of the first PMU (Hz/s), NaN if there is none.
    #[inline]
    pub fn dfreq(&self) -> f64 {
        self.pmus.first().map_or(f64::NAN, |p| p.dfreq)
    }
    pub fn header(&self) -> Header {
        Header::new(
            FrameType::Data,
            self.version,
            self.idcode,
            self.soc,
            self.fraction,
            self.time_quality,
        )
    }
}

/// Decode a data frame into `out`, reusing its vectors: no allocation once they have
/// the capacity (see `DataFrame::with_capacity_for`). On error `out` holds partial data.
pub fn decode_data_into(buf: &[u8], cfg: &Config, out: &mut DataFrame) -> Result<(), FrameError> {
    let h = check_frame(buf)?;
    if h.frame_type != FrameType::Data {
        return Err(FrameError::new(FrameErrorKind::Value, "SYNC", 1)
            .with_values(0, u64::from(h.frame_type.code())));
    }
    decode_checked(buf, &h, cfg, out)
}

/// `decode_data_into` for a frame whose header was already checked.
pub fn decode_checked(
    buf: &[u8],
    h: &Header,
    cfg: &Config,
    out: &mut DataFrame,
) -> Result<(), FrameError> {
    if h.idcode != cfg.idcode {
        return Err(FrameError::new(FrameErrorKind::Mismatch, "IDCODE", 4)
            .with_values(u64::from(cfg.idcode), u64::from(h.idcode)));
    }
    let expected = cfg.data_frame_size();
    if h.framesize != expected {
        return Err(FrameError::new(FrameErrorKind::Mismatch, "FRAMESIZE", 2)
            .with_values(expected as u64, h.framesize as u64));
    }
    out.version = h.version;
    out.idcode = h.idcode;
    out.soc = h.soc;
    out.fraction = h.fraction;
    out.time_quality = h.time_quality;
    out.time_base = cfg.time_base;
    out.pmus.truncate(cfg.pmus.len());
    while out.pmus.len() < cfg.pmus.len() {
        out.pmus.push(PmuData::default());
    }
    let mut pos = HEADER_LEN;
    for (pc, pd) in cfg.pmus.iter().zip(out.pmus.iter_mut()) {
        pd.idcode = pc.idcode;
        pd.phasors.clear();
        pd.analogs.clear();
        pd.digitals.clear();
        walk_pmu(buf, &mut pos, pc, pd);
    }
    Ok(())
}

/// Decode a data frame into a new `DataFrame`.
pub fn decode_data(buf: &[u8], cfg: &Config) -> Result<DataFrame, FrameError> {
    let mut out = DataFrame::with_capacity_for(cfg);
    decode_data_into(buf, cfg, &mut out)?;
    Ok(out)
}
