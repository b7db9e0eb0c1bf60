//! CFG-1 and CFG-2 frames: fixed 16-byte names, PHUNIT/ANUNIT/DIGUNIT words. The model
//! they decode to is in `config.rs`.

use super::common::{begin_frame, finish_frame, FrameType, Header, Reader, HEADER_LEN};
use super::config::{Config, ConfigKind, Format, PmuConfig};
use crate::error::{FrameError, FrameErrorKind};

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
