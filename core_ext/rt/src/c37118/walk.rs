//! Reading the PMU blocks of a data frame (STAT, phasors, FREQ/DFREQ, analogs, digitals)
//! into any `PmuSink`: a `PmuData` for one frame, or batch columns.

use super::config::{Format, PmuConfig};
use super::data::{Phasor, PmuData, Stat};

/// What `walk_pmu` needs to know about a PMU: its FORMAT, counts and scale factors.
pub(crate) trait PmuScales {
    fn format(&self) -> Format;
    /// (PHNMR, ANNMR, DGNMR).
    fn counts(&self) -> (usize, usize, usize);
    fn phasor_factor(&self, i: usize) -> f64;
    fn analog_factor(&self, i: usize) -> (f64, f64);
    fn fnom(&self) -> f64;
    /// All phasor scale factors at once, where they are worked out ahead (`PmuLayout`).
    fn phasor_factors(&self) -> Option<&[f64]> {
        None
    }
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
    #[inline]
    fn phasor_factors(&self) -> Option<&[f64]> {
        Some(&self.phasor)
    }
}

/// Receives the values of one PMU block as `walk_pmu` reads them.
pub(crate) trait PmuSink {
    fn stat(&mut self, s: Stat);
    fn phasor(&mut self, p: Phasor);
    fn freq(&mut self, freq: f64, dfreq: f64);
    fn analog(&mut self, v: f64);
    fn digital(&mut self, d: u16);
    /// The integer polar phasors of `block` (4 bytes each, as many as `factors`), each
    /// magnitude scaled by its factor. Sinks that can take a whole block at once (batch
    /// columns) override this; the results must equal `phasor_int_polar`'s.
    #[inline(always)]
    fn int_polar_block(&mut self, block: &[u8], factors: &[f64]) {
        for (c, &k) in block.chunks_exact(4).zip(factors) {
            self.phasor(phasor_int_polar(c, k));
        }
    }
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

/// An integer polar phasor (u16 magnitude, i16 angle in 1e-4 rad) from its 4 bytes.
#[inline(always)]
pub(crate) fn phasor_int_polar(c: &[u8], k: f64) -> Phasor {
    let m = f64::from(u16::from_be_bytes([c[0], c[1]]));
    let a = f64::from(i16::from_be_bytes([c[2], c[3]]));
    Phasor {
        magnitude: m * k,
        angle: a * 1e-4,
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
/// Always inlined: the batch row loop is compiled with extra target features, and LLVM
/// otherwise leaves this as a call per PMU and frame.
#[inline(always)]
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
    // One slice per channel block and one loop per FORMAT variant, so the loops carry
    // no format tests and no per-field bounds checks.
    let w = if f.phasors_float() { 8 } else { 4 };
    let block = &buf[p..p + phnmr * w];
    p += phnmr * w;
    match (f.phasors_float(), f.polar()) {
        (true, true) => {
            for c in block.chunks_exact(8) {
                let m = f32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                let a = f32::from_be_bytes([c[4], c[5], c[6], c[7]]);
                sink.phasor(Phasor {
                    magnitude: f64::from(m),
                    angle: f64::from(a),
                });
            }
        }
        (true, false) => {
            for c in block.chunks_exact(8) {
                let re = f32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                let im = f32::from_be_bytes([c[4], c[5], c[6], c[7]]);
                sink.phasor(Phasor::from_rect(f64::from(re), f64::from(im)));
            }
        }
        (false, true) => match pc.phasor_factors() {
            Some(factors) => sink.int_polar_block(block, factors),
            None => {
                for (i, c) in block.chunks_exact(4).enumerate() {
                    sink.phasor(phasor_int_polar(c, pc.phasor_factor(i)));
                }
            }
        },
        (false, false) => {
            for (i, c) in block.chunks_exact(4).enumerate() {
                let k = pc.phasor_factor(i);
                let re = f64::from(i16::from_be_bytes([c[0], c[1]]));
                let im = f64::from(i16::from_be_bytes([c[2], c[3]]));
                sink.phasor(Phasor::from_rect(re * k, im * k));
            }
        }
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
    if f.analogs_float() {
        let block = &buf[p..p + annmr * 4];
        p += annmr * 4;
        for c in block.chunks_exact(4) {
            sink.analog(f64::from(f32::from_be_bytes([c[0], c[1], c[2], c[3]])));
        }
    } else {
        let block = &buf[p..p + annmr * 2];
        p += annmr * 2;
        for (i, c) in block.chunks_exact(2).enumerate() {
            let (k, off) = pc.analog_factor(i);
            sink.analog(f64::from(i16::from_be_bytes([c[0], c[1]])) * k + off);
        }
    }
    for _ in 0..dgnmr {
        sink.digital(u16::from_be_bytes(be16(buf, p)));
        p += 2;
    }
    *pos = p;
}
