//! Encoding data frames: engineering values back to the integer or float fields the
//! configuration's FORMAT asks for, refusing values out of range.

use super::common::{begin_frame, check_header_for_encode, finish_frame, HEADER_LEN};
use super::config::Config;
use super::data::DataFrame;
use crate::error::{FrameError, FrameErrorKind};

fn to_int<T: TryFrom<i64>>(v: f64, field: &'static str, at: usize) -> Result<T, FrameError> {
    let r = v.round();
    if !r.is_finite() || r.abs() > 1e15 {
        return Err(FrameError::new(FrameErrorKind::Encode, field, at));
    }
    T::try_from(r as i64)
        .map_err(|_| FrameError::new(FrameErrorKind::Encode, field, at).with_found(r as i64 as u64))
}

/// Wrap an angle to [-pi, pi] so that it fits the int16 x 1e-4 encoding.
fn wrap_angle(a: f64) -> f64 {
    let w = a.rem_euclid(std::f64::consts::TAU);
    if w > std::f64::consts::PI {
        w - std::f64::consts::TAU
    } else {
        w
    }
}

/// Append a data frame of `df`'s values in the formats of `cfg` to `out`.
pub fn encode_data(df: &DataFrame, cfg: &Config, out: &mut Vec<u8>) -> Result<(), FrameError> {
    check_header_for_encode(&df.header())?;
    let start = out.len();
    let r = encode_body(df, cfg, out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn encode_body(df: &DataFrame, cfg: &Config, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let enc = |field, at: usize| FrameError::new(FrameErrorKind::Encode, field, at);
    if df.pmus.len() != cfg.pmus.len() {
        return Err(
            enc("NUM_PMU", HEADER_LEN).with_values(cfg.pmus.len() as u64, df.pmus.len() as u64)
        );
    }
    let mut h = df.header();
    h.idcode = cfg.idcode;
    let start = begin_frame(out, &h);
    for (pc, pd) in cfg.pmus.iter().zip(&df.pmus) {
        let f = pc.format;
        if pd.phasors.len() != pc.phnmr() {
            return Err(enc("PHASORS", out.len() - start)
                .with_values(pc.phnmr() as u64, pd.phasors.len() as u64));
        }
        if pd.analogs.len() != pc.annmr() {
            return Err(enc("ANALOG", out.len() - start)
                .with_values(pc.annmr() as u64, pd.analogs.len() as u64));
        }
        if pd.digitals.len() != pc.dgnmr() {
            return Err(enc("DIGITAL", out.len() - start)
                .with_values(pc.dgnmr() as u64, pd.digitals.len() as u64));
        }
        out.extend_from_slice(&pd.stat.0.to_be_bytes());
        for (i, p) in pd.phasors.iter().enumerate() {
            let at = out.len() - start;
            if f.phasors_float() {
                let (a, b) = if f.polar() {
                    (p.magnitude, p.angle)
                } else {
                    (p.real(), p.imag())
                };
                out.extend_from_slice(&(a as f32).to_be_bytes());
                out.extend_from_slice(&(b as f32).to_be_bytes());
            } else {
                let k = pc.phasor_factor(i);
                if k <= 0.0 {
                    return Err(enc("PHUNIT", at));
                }
                if f.polar() {
                    let m: u16 = to_int(p.magnitude / k, "PHASORS", at)?;
                    let a: i16 = to_int(wrap_angle(p.angle) * 1e4, "PHASORS", at)?;
                    out.extend_from_slice(&m.to_be_bytes());
                    out.extend_from_slice(&a.to_be_bytes());
                } else {
                    let re: i16 = to_int(p.real() / k, "PHASORS", at)?;
                    let im: i16 = to_int(p.imag() / k, "PHASORS", at)?;
                    out.extend_from_slice(&re.to_be_bytes());
                    out.extend_from_slice(&im.to_be_bytes());
                }
            }
        }
        let at = out.len() - start;
        if f.freq_float() {
            out.extend_from_slice(&(pd.freq as f32).to_be_bytes());
            out.extend_from_slice(&(pd.dfreq as f32).to_be_bytes());
        } else {
            let fr: i16 = to_int((pd.freq - pc.fnom()) * 1e3, "FREQ", at)?;
            let df: i16 = to_int(pd.dfreq * 1e2, "DFREQ", at + 2)?;
            out.extend_from_slice(&fr.to_be_bytes());
            out.extend_from_slice(&df.to_be_bytes());
        }
        for (i, &v) in pd.analogs.iter().enumerate() {
            let at = out.len() - start;
            if f.analogs_float() {
                out.extend_from_slice(&(v as f32).to_be_bytes());
            } else {
                let (k, off) = pc.analog_factor(i);
                if k == 0.0 {
                    return Err(enc("ANUNIT", at));
                }
                let raw: i16 = to_int((v - off) / k, "ANALOG", at)?;
                out.extend_from_slice(&raw.to_be_bytes());
            }
        }
        for d in &pd.digitals {
            out.extend_from_slice(&d.to_be_bytes());
        }
    }
    finish_frame(out, start)
}
