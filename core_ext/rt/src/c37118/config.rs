//! Configuration frames: the model shared by CFG-1, CFG-2 and CFG-3, and the CFG-1/CFG-2
//! codec (CFG-3 lives in `cfg3.rs`). A data frame can only be read against one of these.

use super::common::{
    begin_frame, check_header_for_encode, finish_frame, FrameType, Header, Reader, TimeQuality,
    HEADER_LEN,
};
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

/// Read a fixed 16-byte name, trimming the padding (spaces or NULs).
fn name16(r: &mut Reader<'_>, field: &'static str) -> Result<String, FrameError> {
    let at = r.pos;
    let raw = r.bytes(16, field)?;
    let end = raw
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |p| p + 1);
    std::str::from_utf8(&raw[..end])
        .map(str::to_owned)
        .map_err(|_| FrameError::new(FrameErrorKind::Value, field, at))
}

fn put_name16(out: &mut Vec<u8>, name: &str, field: &'static str) -> Result<(), FrameError> {
    let b = name.as_bytes();
    if b.len() > 16 {
        return Err(FrameError::new(FrameErrorKind::Encode, field, out.len())
            .with_values(16, b.len() as u64));
    }
    out.extend_from_slice(b);
    out.extend(std::iter::repeat_n(b' ', 16 - b.len()));
    Ok(())
}

/// Read TIME_BASE at the reader's position (shared with CFG-3).
pub(super) fn read_time_base(r: &mut Reader<'_>) -> Result<u32, FrameError> {
    let at = r.pos;
    let tb = r.u32("TIME_BASE")? & 0x00FF_FFFF;
    if tb == 0 {
        return Err(FrameError::new(FrameErrorKind::Value, "TIME_BASE", at).with_found(0));
    }
    Ok(tb)
}

/// Blame the first count that makes the channel block larger than what is left.
pub(super) fn check_counts(
    counts: [(usize, usize, &'static str, usize); 3],
    fixed: usize,
    remaining: usize,
) -> Result<(), FrameError> {
    let mut need = fixed;
    for (n, per, field, at) in counts {
        need = need.saturating_add(n.saturating_mul(per));
        if need > remaining {
            return Err(FrameError::new(FrameErrorKind::Count, field, at).with_found(n as u64));
        }
    }
    Ok(())
}

/// Decode a CFG-1 or CFG-2 body; `h` comes from `check_frame`.
pub fn decode_cfg12(buf: &[u8], h: &Header) -> Result<Config, FrameError> {
    let kind = if h.frame_type == FrameType::Cfg1 {
        ConfigKind::Cfg1
    } else {
        ConfigKind::Cfg2
    };
    let end = h.framesize - 2;
    let mut r = Reader::new(buf, HEADER_LEN, end);
    let time_base = read_time_base(&mut r)?;
    let at = r.pos;
    let num_pmu = usize::from(r.u16("NUM_PMU")?);
    // 30 bytes is the smallest PMU block (no channels); DATA_RATE follows the PMUs.
    if num_pmu == 0 || num_pmu.saturating_mul(30) + 2 > r.remaining() {
        return Err(
            FrameError::new(FrameErrorKind::Count, "NUM_PMU", at).with_found(num_pmu as u64)
        );
    }
    let mut pmus = Vec::with_capacity(num_pmu);
    for _ in 0..num_pmu {
        let station = name16(&mut r, "STN")?;
        let idcode = r.u16("IDCODE")?;
        let format = Format(r.u16("FORMAT")?);
        let ph_at = r.pos;
        let ph = usize::from(r.u16("PHNMR")?);
        let an = usize::from(r.u16("ANNMR")?);
        let dg = usize::from(r.u16("DGNMR")?);
        check_counts(
            [
                (ph, 20, "PHNMR", ph_at),
                (an, 20, "ANNMR", ph_at + 2),
                (dg, 16 * 16 + 4, "DGNMR", ph_at + 4),
            ],
            4,
            r.remaining(),
        )?;
        let mut name_list = |n: usize| -> Result<Vec<String>, FrameError> {
            (0..n).map(|_| name16(&mut r, "CHNAM")).collect()
        };
        let phasor_names = name_list(ph)?;
        let analog_names = name_list(an)?;
        let digital_names = name_list(16 * dg)?;
        let phasor_units = (0..ph).map(|_| r.u32("PHUNIT")).collect::<Result<_, _>>()?;
        let analog_units = (0..an).map(|_| r.u32("ANUNIT")).collect::<Result<_, _>>()?;
        let digital_units = (0..dg)
            .map(|_| r.u32("DIGUNIT"))
            .collect::<Result<_, _>>()?;
        let fnom = r.u16("FNOM")?;
        let cfgcnt = r.u16("CFGCNT")?;
        pmus.push(PmuConfig {
            station,
            idcode,
            format,
            phasor_names,
            analog_names,
            digital_names,
            phasor_units,
            analog_units,
            digital_units,
            fnom_50hz: fnom & 1 != 0,
            cfgcnt,
            cfg3: None,
        });
    }
    let data_rate = r.i16("DATA_RATE")?;
    if r.pos != end {
        return Err(FrameError::new(FrameErrorKind::FrameSize, "FRAMESIZE", 2)
            .with_values(r.pos as u64 + 2, h.framesize as u64));
    }
    Ok(Config {
        kind,
        version: h.version,
        idcode: h.idcode,
        soc: h.soc,
        fraction: h.fraction,
        time_quality: h.time_quality,
        time_base,
        data_rate,
        pmus,
    })
}

/// Append a CFG-1 or CFG-2 frame (as `cfg.kind` says) to `out`.
pub fn encode_cfg12(cfg: &Config, out: &mut Vec<u8>) -> Result<(), FrameError> {
    cfg.validate()?;
    let start = begin_frame(out, &cfg.header());
    out.extend_from_slice(&cfg.time_base.to_be_bytes());
    out.extend_from_slice(&(cfg.pmus.len() as u16).to_be_bytes());
    for p in &cfg.pmus {
        if let Err(e) = write_pmu12(p, out) {
            out.truncate(start);
            return Err(e.with_offset_from(start));
        }
    }
    out.extend_from_slice(&cfg.data_rate.to_be_bytes());
    finish_frame(out, start)
}

fn write_pmu12(p: &PmuConfig, out: &mut Vec<u8>) -> Result<(), FrameError> {
    put_name16(out, &p.station, "STN")?;
    out.extend_from_slice(&p.idcode.to_be_bytes());
    out.extend_from_slice(&p.format.0.to_be_bytes());
    for n in [p.phnmr(), p.annmr(), p.dgnmr()] {
        out.extend_from_slice(&(n as u16).to_be_bytes());
    }
    for n in p
        .phasor_names
        .iter()
        .chain(&p.analog_names)
        .chain(&p.digital_names)
    {
        put_name16(out, n, "CHNAM")?;
    }
    for u in p
        .phasor_units
        .iter()
        .chain(&p.analog_units)
        .chain(&p.digital_units)
    {
        out.extend_from_slice(&u.to_be_bytes());
    }
    out.extend_from_slice(&u16::from(p.fnom_50hz).to_be_bytes());
    out.extend_from_slice(&p.cfgcnt.to_be_bytes());
    Ok(())
}

/// Offsets of encode errors are absolute in the output buffer; make them frame-relative.
pub(super) trait RelOffset {
    fn with_offset_from(self, start: usize) -> Self;
}
impl RelOffset for FrameError {
    fn with_offset_from(mut self, start: usize) -> Self {
        self.offset = self.offset.saturating_sub(start);
        self
    }
}
