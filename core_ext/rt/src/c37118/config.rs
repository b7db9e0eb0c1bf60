//! Configuration frames: the model shared by CFG-1, CFG-2 and CFG-3, and the CFG-1/CFG-2
//! codec (CFG-3 lives in `cfg3.rs`). A data frame can only be read against one of these.

use super::common::{check_header_for_encode, FrameType, Header, TimeQuality, HEADER_LEN};
use crate::error::{FrameError, FrameErrorKind};

/// The FORMAT word of one PMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Format(pub u16);

impl Format {
    pub const fn new(
        polar: bool,
        phasors_float: bool,
        analogs_float: bool,
        freq_float: bool,
    ) -> Self {
        Self(
            (polar as u16)
                | (phasors_float as u16) << 1
                | (analogs_float as u16) << 2
                | (freq_float as u16) << 3,
        )
    }
    /// Bit 0: phasors are magnitude/angle (else real/imaginary).
    pub const fn polar(self) -> bool {
        self.0 & 1 != 0
    }
    /// Bit 1: phasors are float32 pairs (else int16).
    pub const fn phasors_float(self) -> bool {
        self.0 & 2 != 0
    }
    /// Bit 2: analogs are float32 (else int16).
    pub const fn analogs_float(self) -> bool {
        self.0 & 4 != 0
    }
    /// Bit 3: FREQ/DFREQ are float32 (else int16).
    pub const fn freq_float(self) -> bool {
        self.0 & 8 != 0
    }
    /// All 16 combinations of the four defined bits.
    pub fn all() -> impl Iterator<Item = Format> {
        (0u16..16).map(Format)
    }
}

/// Which configuration frame a `Config` came from or will be encoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigKind {
    Cfg1,
    Cfg2,
    Cfg3,
}

impl ConfigKind {
    pub const fn frame_type(self) -> FrameType {
        match self {
            Self::Cfg1 => FrameType::Cfg1,
            Self::Cfg2 => FrameType::Cfg2,
            Self::Cfg3 => FrameType::Cfg3,
        }
    }
    pub const fn name(self) -> &'static str {
        self.frame_type().name()
    }
}

/// PHUNIT: high byte 0 = voltage, 1 = current; low 24 bits = scale in 1e-5 V or A per bit.
pub const fn phunit(current: bool, scale_1e5: u32) -> u32 {
    ((current as u32) << 24) | (scale_1e5 & 0x00FF_FFFF)
}
/// The engineering-unit factor of a PHUNIT word.
#[inline]
pub fn phunit_factor(u: u32) -> f64 {
    f64::from(u & 0x00FF_FFFF) * 1e-5
}
/// ANUNIT: high byte 0 = point-on-wave, 1 = rms, 2 = peak; low 24 bits = signed scale.
pub const fn anunit(kind: u8, scale: i32) -> u32 {
    ((kind as u32) << 24) | (scale as u32 & 0x00FF_FFFF)
}
/// The signed 24-bit scale of an ANUNIT word (an integer analog is multiplied by it).
#[inline]
pub fn anunit_factor(u: u32) -> f64 {
    f64::from(((u << 8) as i32) >> 8)
}

/// PHSCALE of CFG-3, one per phasor.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PhasorScale {
    pub flags: u16,
    /// Bit 3: 0 voltage, 1 current; bits 2-0: component (0 zero, 1 positive, 2 negative sequence, 4-6 phase A-C).
    pub phasor_type: u8,
    pub user: u8,
    /// Engineering units per integer count (replaces PHUNIT for integer phasors).
    pub scale: f32,
    /// Angle adjustment in radians; carried, not applied to the data.
    pub angle_offset: f32,
}

/// ANSCALE of CFG-3: an integer analog reads `raw * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AnalogScale {
    pub scale: f32,
    pub offset: f32,
}

/// The per-PMU fields only CFG-3 has.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cfg3Ext {
    pub global_pmu_id: [u8; 16],
    pub phasor_scales: Vec<PhasorScale>,
    pub analog_scales: Vec<AnalogScale>,
    pub latitude: f32,
    pub longitude: f32,
    pub elevation: f32,
    /// b'P' or b'M'.
    pub svc_class: u8,
    /// Measurement window, microseconds.
    pub window: i32,
    /// Group delay, microseconds.
    pub group_delay: i32,
}

/// One PMU of a configuration. PHNMR, ANNMR and DGNMR are the lengths of the unit vectors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PmuConfig {
    pub station: String,
    pub idcode: u16,
    pub format: Format,
    pub phasor_names: Vec<String>,
    pub analog_names: Vec<String>,
    /// 16 names per digital status word.
    pub digital_names: Vec<String>,
    pub phasor_units: Vec<u32>,
    pub analog_units: Vec<u32>,
    /// Normal-status mask (high 16 bits) and valid-input mask (low 16 bits) per word.
    pub digital_units: Vec<u32>,
    /// FNOM bit 0: true = 50 Hz, false = 60 Hz.
    pub fnom_50hz: bool,
    pub cfgcnt: u16,
    pub cfg3: Option<Cfg3Ext>,
}

impl PmuConfig {
    pub fn phnmr(&self) -> usize {
        self.phasor_units.len()
    }
    pub fn annmr(&self) -> usize {
        self.analog_units.len()
    }
    pub fn dgnmr(&self) -> usize {
        self.digital_units.len()
    }
    /// Nominal frequency in Hz.
    pub fn fnom(&self) -> f64 {
        if self.fnom_50hz {
            50.0
        } else {
            60.0
        }
    }
    /// Engineering units per count of integer phasor `i` (CFG-3 PHSCALE if present, else PHUNIT).
    #[inline]
    pub fn phasor_factor(&self, i: usize) -> f64 {
        if let Some(s) = self.cfg3.as_ref().and_then(|x| x.phasor_scales.get(i)) {
            return f64::from(s.scale);
        }
        phunit_factor(self.phasor_units[i])
    }
    /// (scale, offset) of integer analog `i`.
    #[inline]
    pub fn analog_factor(&self, i: usize) -> (f64, f64) {
        if let Some(s) = self.cfg3.as_ref().and_then(|x| x.analog_scales.get(i)) {
            return (f64::from(s.scale), f64::from(s.offset));
        }
        (anunit_factor(self.analog_units[i]), 0.0)
    }
    /// Bytes of this PMU's block in a data frame (STAT to DIGITAL).
    pub fn data_len(&self) -> usize {
        let f = self.format;
        2 + self.phnmr() * if f.phasors_float() { 8 } else { 4 }
            + if f.freq_float() { 8 } else { 4 }
            + self.annmr() * if f.analogs_float() { 4 } else { 2 }
            + self.dgnmr() * 2
    }

    /// Check that names and units agree, before encoding.
    pub fn validate(&self) -> Result<(), FrameError> {
        let enc = |field| FrameError::new(FrameErrorKind::Encode, field, 0);
        if self.phasor_names.len() != self.phnmr() {
            return Err(
                enc("PHNMR").with_values(self.phnmr() as u64, self.phasor_names.len() as u64)
            );
        }
        if self.analog_names.len() != self.annmr() {
            return Err(
                enc("ANNMR").with_values(self.annmr() as u64, self.analog_names.len() as u64)
            );
        }
        if self.digital_names.len() != 16 * self.dgnmr() {
            return Err(
                enc("DGNMR").with_values(16 * self.dgnmr() as u64, self.digital_names.len() as u64)
            );
        }
        if self.phnmr() > 0xFFFF || self.annmr() > 0xFFFF || self.dgnmr() > 0xFFFF {
            return Err(enc("PHNMR"));
        }
        Ok(())
    }
}

/// A decoded configuration frame (CFG-1, CFG-2 or a whole, reassembled CFG-3).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub kind: ConfigKind,
    pub version: u8,
    pub idcode: u16,
    pub soc: u32,
    pub fraction: u32,
    pub time_quality: TimeQuality,
    /// FRACSEC denominator (bits 23-0 of TIME_BASE, never 0).
    pub time_base: u32,
    /// Frames per second, or seconds per frame when negative.
    pub data_rate: i16,
    pub pmus: Vec<PmuConfig>,
}

impl Config {
    /// FRAMESIZE of a data frame that follows this configuration.
    pub fn data_frame_size(&self) -> usize {
        HEADER_LEN + self.pmus.iter().map(PmuConfig::data_len).sum::<usize>() + 2
    }
    pub fn header(&self) -> Header {
        Header::new(
            self.kind.frame_type(),
            self.version,
            self.idcode,
            self.soc,
            self.fraction,
            self.time_quality,
        )
    }
    /// Check counts, names and TIME_BASE before encoding.
    pub fn validate(&self) -> Result<(), FrameError> {
        check_header_for_encode(&self.header())?;
        if self.time_base == 0 || self.time_base > 0x00FF_FFFF {
            return Err(
                FrameError::new(FrameErrorKind::Encode, "TIME_BASE", HEADER_LEN)
                    .with_found(u64::from(self.time_base)),
            );
        }
        if self.pmus.is_empty() || self.pmus.len() > 0xFFFF {
            return Err(
                FrameError::new(FrameErrorKind::Encode, "NUM_PMU", HEADER_LEN + 4)
                    .with_found(self.pmus.len() as u64),
            );
        }
        self.pmus.iter().try_for_each(PmuConfig::validate)
    }
    pub fn time(&self) -> f64 {
        f64::from(self.soc) + f64::from(self.fraction) / f64::from(self.time_base.max(1))
    }
}
