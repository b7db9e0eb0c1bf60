//! Data frames: decoded against the configuration of their IDCODE, on the hot path
//! without allocation (`decode_data_into` reuses the output's vectors).

use super::common::{check_frame, FrameType, Header, TimeQuality, HEADER_LEN};
use super::config::{Config, Format, PmuConfig};
pub use super::data_encode::encode_data;
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

/// What `walk_pmu` needs to know about a PMU: its FORMAT, counts and scale factors.
pub(crate) trait PmuScales {
    fn format(&self) -> Format;
    /// (PHNMR, ANNMR, DGNMR).
    fn counts(&self) -> (usize, usize, usize);
    fn phasor_factor(&self, i: usize) -> f64;
    fn analog_factor(&self, i: usize) -> (f64, f64);
    fn fnom(&self) -> f64;
}

impl PmuScales for PmuConfig {
    #[inline]
    fn format(&self) -> Format {
        self.format
    }
    #[inline]
    fn counts(&self) -> (usize, usize, usize) {
        (self.phnmr(), self.annmr(), self.dgnmr())
    }
    #[inline]
    fn phasor_factor(&self, i: usize) -> f64 {
        PmuConfig::phasor_factor(self, i)
    }
    #[inline]
    fn analog_factor(&self, i: usize) -> (f64, f64) {
        PmuConfig::analog_factor(self, i)
    }
    #[inline]
    fn fnom(&self) -> f64 {
        PmuConfig::fnom(self)
    }
}

/// Scale factors of one PMU worked out once, for decoding many frames (batch).
pub(crate) struct PmuLayout {
    format: Format,
    phasor: Vec<f64>,
    analog: Vec<(f64, f64)>,
    dgnmr: usize,
    fnom: f64,
}

impl PmuLayout {
    pub(crate) fn of(pc: &PmuConfig) -> Self {
        Self {
            format: pc.format,
            phasor: (0..pc.phnmr()).map(|i| pc.phasor_factor(i)).collect(),
            analog: (0..pc.annmr()).map(|i| pc.analog_factor(i)).collect(),
            dgnmr: pc.dgnmr(),
            fnom: pc.fnom(),
        }
    }
}

impl PmuScales for PmuLayout {
    #[inline]
    fn format(&self) -> Format {
        self.format
    }
    #[inline]
    fn counts(&self) -> (usize, usize, usize) {
        (self.phasor.len(), self.analog.len(), self.dgnmr)
    }
    #[inline]
    fn phasor_factor(&self, i: usize) -> f64 {
        self.phasor[i]
    }
    #[inline]
    fn analog_factor(&self, i: usize) -> (f64, f64) {
        self.analog[i]
    }
    #[inline]
    fn fnom(&self) -> f64 {
        self.fnom
    }
}

/// Receives the values of one PMU block as `walk_pmu` reads them.
pub(crate) trait PmuSink {
    fn stat(&mut self, s: Stat);
    fn phasor(&mut self, p: Phasor);
    fn freq(&mut self, freq: f64, dfreq: f64);
    fn analog(&mut self, v: f64);
    fn digital(&mut self, d: u16);
}

impl PmuSink for PmuData {
    #[inline]
    fn stat(&mut self, s: Stat) {
        self.stat = s;
    }
    #[inline]
    fn phasor(&mut self, p: Phasor) {
        self.phasors.push(p);
    }
    #[inline]
    fn freq(&mut self, freq: f64, dfreq: f64) {
        self.freq = freq;
        self.dfreq = dfreq;
    }
    #[inline]
    fn analog(&mut self, v: f64) {
        self.analogs.push(v);
    }
    #[inline]
    fn digital(&mut self, d: u16) {
        self.digitals.push(d);
    }
}

#[inline]
fn be16(buf: &[u8], at: usize) -> [u8; 2] {
    [buf[at], buf[at + 1]]
}
#[inline]
fn be32(buf: &[u8], at: usize) -> [u8; 4] {
    [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
}

/// Read one PMU block at `*pos`. The caller has checked that FRAMESIZE equals the size
/// the configuration implies, so every field is inside `buf` (indexing cannot fail).
#[inline]
pub(crate) fn walk_pmu<S: PmuSink, P: PmuScales>(
    buf: &[u8],
    pos: &mut usize,
    pc: &P,
    sink: &mut S,
) {
    let f = pc.format();
    let (phnmr, annmr, dgnmr) = pc.counts();
    let mut p = *pos;
    sink.stat(Stat(u16::from_be_bytes(be16(buf, p))));
    p += 2;
    for i in 0..phnmr {
        let ph = if f.phasors_float() {
            let a = f64::from(f32::from_be_bytes(be32(buf, p)));
            let b = f64::from(f32::from_be_bytes(be32(buf, p + 4)));
            p += 8;
            if f.polar() {
                Phasor {
                    magnitude: a,
                    angle: b,
                }
            } else {
                Phasor::from_rect(a, b)
            }
        } else {
            let k = pc.phasor_factor(i);
            let r = p;
            p += 4;
            if f.polar() {
                let m = f64::from(u16::from_be_bytes(be16(buf, r)));
                let a = f64::from(i16::from_be_bytes(be16(buf, r + 2)));
                Phasor {
                    magnitude: m * k,
                    angle: a * 1e-4,
                }
            } else {
                let re = f64::from(i16::from_be_bytes(be16(buf, r)));
                let im = f64::from(i16::from_be_bytes(be16(buf, r + 2)));
                Phasor::from_rect(re * k, im * k)
            }
        };
        sink.phasor(ph);
    }
    if f.freq_float() {
        let fr = f64::from(f32::from_be_bytes(be32(buf, p)));
        let df = f64::from(f32::from_be_bytes(be32(buf, p + 4)));
        p += 8;
        sink.freq(fr, df);
    } else {
        let fr = f64::from(i16::from_be_bytes(be16(buf, p)));
        let df = f64::from(i16::from_be_bytes(be16(buf, p + 2)));
        p += 4;
        sink.freq(pc.fnom() + fr * 1e-3, df * 1e-2);
    }
    for i in 0..annmr {
        let v = if f.analogs_float() {
            let v = f64::from(f32::from_be_bytes(be32(buf, p)));
            p += 4;
            v
        } else {
            let (k, off) = pc.analog_factor(i);
            let v = f64::from(i16::from_be_bytes(be16(buf, p)));
            p += 2;
            v * k + off
        };
        sink.analog(v);
    }
    for _ in 0..dgnmr {
        sink.digital(u16::from_be_bytes(be16(buf, p)));
        p += 2;
    }
    *pos = p;
}

/// Decode a data frame into a new `DataFrame`.
pub fn decode_data(buf: &[u8], cfg: &Config) -> Result<DataFrame, FrameError> {
    let mut out = DataFrame::with_capacity_for(cfg);
    decode_data_into(buf, cfg, &mut out)?;
    Ok(out)
}
