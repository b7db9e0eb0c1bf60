//! CFG-3 (version 2 only): length-prefixed UTF-8 names, PHSCALE/ANSCALE, position and
//! service class, and fragmentation through CONT_IDX (0 = whole frame, 1 = first
//! fragment, 2.. = next, 0xFFFF = last). A fragment carries a slice of the body that
//! starts at TIME_BASE; `Cfg3Assembler` joins them back.

use super::cfg12::{check_counts, read_time_base};
use super::common::{Header, Reader, TimeQuality, HEADER_LEN};
use super::config::{
    phunit, AnalogScale, Cfg3Ext, Config, ConfigKind, Format, PhasorScale, PmuConfig,
};
use crate::error::{FrameError, FrameErrorKind};

/// Offset of CONT_IDX, and of the body in an unfragmented frame.
pub(super) const CONT_IDX_AT: usize = HEADER_LEN;
pub(super) const BODY_AT: usize = HEADER_LEN + 2;
/// Upper bound on a reassembled body, so a stream of fragments cannot grow memory without end.
pub const MAX_CFG3_BODY: usize = 4 << 20;

/// One fragment of a CFG-3 that did not fit one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cfg3Fragment {
    pub version: u8,
    pub idcode: u16,
    pub soc: u32,
    pub fraction: u32,
    pub time_quality: TimeQuality,
    pub cont_idx: u16,
    /// This fragment's slice of the body (TIME_BASE .. DATA_RATE).
    pub payload: Vec<u8>,
}

/// A decoded CFG-3 frame: either whole, or one fragment to feed a `Cfg3Assembler`.
#[derive(Debug, Clone, PartialEq)]
pub enum Cfg3Frame {
    Whole(Config),
    Fragment(Cfg3Fragment),
}

/// Decode a CFG-3 frame; `h` comes from `check_frame`.
pub fn decode_cfg3(buf: &[u8], h: &Header) -> Result<Cfg3Frame, FrameError> {
    let end = h.framesize - 2;
    let mut r = Reader::new(buf, CONT_IDX_AT, end);
    let cont_idx = r.u16("CONT_IDX")?;
    let body = &buf[BODY_AT.min(end)..end];
    if cont_idx == 0 {
        return decode_body(body, h, BODY_AT).map(Cfg3Frame::Whole);
    }
    Ok(Cfg3Frame::Fragment(Cfg3Fragment {
        version: h.version,
        idcode: h.idcode,
        soc: h.soc,
        fraction: h.fraction,
        time_quality: h.time_quality,
        cont_idx,
        payload: body.to_vec(),
    }))
}

fn name8(r: &mut Reader<'_>, field: &'static str, base: usize) -> Result<String, FrameError> {
    let at = r.pos;
    let n = usize::from(r.u8(field)?);
    let raw = r.bytes(n, field)?;
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|_| FrameError::new(FrameErrorKind::Value, field, at + base))
}

/// Decode the CFG-3 body (TIME_BASE .. DATA_RATE). Error offsets are `base` + position in the body.
pub fn decode_body(body: &[u8], h: &Header, base: usize) -> Result<Config, FrameError> {
    let shift = |e: FrameError| e.shifted(base);
    let mut r = Reader::new(body, 0, body.len());
    let time_base = read_time_base(&mut r).map_err(shift)?;
    let at = r.pos;
    let num_pmu = usize::from(r.u16("NUM_PMU").map_err(shift)?);
    // 52 bytes is the smallest CFG-3 PMU block (empty station name, no channels).
    if num_pmu == 0 || num_pmu.saturating_mul(52) + 2 > r.remaining() {
        return Err(
            FrameError::new(FrameErrorKind::Count, "NUM_PMU", at + base).with_found(num_pmu as u64)
        );
    }
    let mut pmus = Vec::with_capacity(num_pmu);
    for _ in 0..num_pmu {
        pmus.push(decode_pmu(&mut r, base)?);
    }
    let data_rate = r.i16("DATA_RATE").map_err(shift)?;
    if r.remaining() != 0 {
        return Err(FrameError::new(FrameErrorKind::FrameSize, "FRAMESIZE", 2)
            .with_values((base + r.pos + 2) as u64, (base + body.len() + 2) as u64));
    }
    Ok(Config {
        kind: ConfigKind::Cfg3,
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

fn decode_pmu(r: &mut Reader<'_>, base: usize) -> Result<PmuConfig, FrameError> {
    let shift = |e: FrameError| e.shifted(base);
    let station = name8(r, "STN", base)?;
    let idcode = r.u16("IDCODE").map_err(shift)?;
    let mut global_pmu_id = [0u8; 16];
    global_pmu_id.copy_from_slice(r.bytes(16, "G_PMU_ID").map_err(shift)?);
    let format = Format(r.u16("FORMAT").map_err(shift)?);
    let ph_at = r.pos + base;
    let ph = usize::from(r.u16("PHNMR").map_err(shift)?);
    let an = usize::from(r.u16("ANNMR").map_err(shift)?);
    let dg = usize::from(r.u16("DGNMR").map_err(shift)?);
    // Each name takes at least its length byte.
    check_counts(
        [
            (ph, 13, "PHNMR", ph_at),
            (an, 9, "ANNMR", ph_at + 2),
            (dg, 20, "DGNMR", ph_at + 4),
        ],
        12 + 1 + 8 + 4,
        r.remaining(),
    )?;
    let mut names = |n: usize| -> Result<Vec<String>, FrameError> {
        (0..n).map(|_| name8(r, "CHNAM", base)).collect()
    };
    let phasor_names = names(ph)?;
    let analog_names = names(an)?;
    let digital_names = names(16 * dg)?;
    let mut phasor_scales = Vec::with_capacity(ph);
    for _ in 0..ph {
        phasor_scales.push(PhasorScale {
            flags: r.u16("PHSCALE").map_err(shift)?,
            phasor_type: r.u8("PHSCALE").map_err(shift)?,
            user: r.u8("PHSCALE").map_err(shift)?,
            scale: r.f32("PHSCALE").map_err(shift)?,
            angle_offset: r.f32("PHSCALE").map_err(shift)?,
        });
    }
    let mut analog_scales = Vec::with_capacity(an);
    for _ in 0..an {
        analog_scales.push(AnalogScale {
            scale: r.f32("ANSCALE").map_err(shift)?,
            offset: r.f32("ANSCALE").map_err(shift)?,
        });
    }
    let digital_units = (0..dg)
        .map(|_| r.u32("DIGUNIT").map_err(shift))
        .collect::<Result<_, _>>()?;
    let latitude = r.f32("PMU_LAT").map_err(shift)?;
    let longitude = r.f32("PMU_LON").map_err(shift)?;
    let elevation = r.f32("PMU_ELEV").map_err(shift)?;
    let svc_class = r.u8("SVC_CLASS").map_err(shift)?;
    let window = r.i32("WINDOW").map_err(shift)?;
    let group_delay = r.i32("GRP_DLY").map_err(shift)?;
    let fnom = r.u16("FNOM").map_err(shift)?;
    let cfgcnt = r.u16("CFGCNT").map_err(shift)?;
    // PHUNIT/ANUNIT are derived so that the config can also be sent as CFG-2.
    let phasor_units = phasor_scales
        .iter()
        .map(|s| {
            phunit(
                s.phasor_type & 0x08 != 0,
                (f64::from(s.scale) * 1e5).round().clamp(0.0, 16_777_215.0) as u32,
            )
        })
        .collect();
    let analog_units = analog_scales
        .iter()
        .map(|s| {
            super::config::anunit(
                0,
                f64::from(s.scale).round().clamp(-8_388_608.0, 8_388_607.0) as i32,
            )
        })
        .collect();
    Ok(PmuConfig {
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
        cfg3: Some(Cfg3Ext {
            global_pmu_id,
            phasor_scales,
            analog_scales,
            latitude,
            longitude,
            elevation,
            svc_class,
            window,
            group_delay,
        }),
    })
}

fn put_name8(out: &mut Vec<u8>, name: &str, field: &'static str) -> Result<(), FrameError> {
    let b = name.as_bytes();
    if b.len() > 255 {
        return Err(
            FrameError::new(FrameErrorKind::Encode, field, 0).with_values(255, b.len() as u64)
        );
    }
    out.push(b.len() as u8);
    out.extend_from_slice(b);
    Ok(())
}

/// The CFG-3 body (TIME_BASE .. DATA_RATE) of `cfg`. PMUs without CFG-3 fields get
/// scales derived from PHUNIT/ANUNIT.
pub fn encode_body(cfg: &Config) -> Result<Vec<u8>, FrameError> {
    cfg.validate()?;
    let mut out = Vec::new();
    out.extend_from_slice(&cfg.time_base.to_be_bytes());
    out.extend_from_slice(&(cfg.pmus.len() as u16).to_be_bytes());
    for p in &cfg.pmus {
        let derived;
        let ext = match &p.cfg3 {
            Some(x) if x.phasor_scales.len() == p.phnmr() && x.analog_scales.len() == p.annmr() => {
                x
            }
            _ => {
                derived = derive_ext(p);
                &derived
            }
        };
        put_name8(&mut out, &p.station, "STN")?;
        out.extend_from_slice(&p.idcode.to_be_bytes());
        out.extend_from_slice(&ext.global_pmu_id);
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
            put_name8(&mut out, n, "CHNAM")?;
        }
        for s in &ext.phasor_scales {
            out.extend_from_slice(&s.flags.to_be_bytes());
            out.push(s.phasor_type);
            out.push(s.user);
            out.extend_from_slice(&s.scale.to_be_bytes());
            out.extend_from_slice(&s.angle_offset.to_be_bytes());
        }
        for s in &ext.analog_scales {
            out.extend_from_slice(&s.scale.to_be_bytes());
            out.extend_from_slice(&s.offset.to_be_bytes());
        }
        for u in &p.digital_units {
            out.extend_from_slice(&u.to_be_bytes());
        }
        for f in [ext.latitude, ext.longitude, ext.elevation] {
            out.extend_from_slice(&f.to_be_bytes());
        }
        out.push(ext.svc_class);
        out.extend_from_slice(&ext.window.to_be_bytes());
        out.extend_from_slice(&ext.group_delay.to_be_bytes());
        out.extend_from_slice(&u16::from(p.fnom_50hz).to_be_bytes());
        out.extend_from_slice(&p.cfgcnt.to_be_bytes());
    }
    out.extend_from_slice(&cfg.data_rate.to_be_bytes());
    Ok(out)
}

fn derive_ext(p: &PmuConfig) -> Cfg3Ext {
    Cfg3Ext {
        phasor_scales: p
            .phasor_units
            .iter()
            .map(|&u| PhasorScale {
                phasor_type: if u >> 24 == 1 { 0x08 } else { 0 },
                scale: super::config::phunit_factor(u) as f32,
                ..Default::default()
            })
            .collect(),
        analog_scales: p
            .analog_units
            .iter()
            .map(|&u| AnalogScale {
                scale: super::config::anunit_factor(u) as f32,
                offset: 0.0,
            })
            .collect(),
        svc_class: b'M',
        ..Default::default()
    }
}
