//! Encoding data frames: engineering values back to the integer or float fields the
//! configuration's FORMAT asks for, refusing values out of range. Polar phasors are
//! written in the standard's ranges whatever the caller gives: magnitude >= 0, angle in
//! (-pi, pi] (the same phasor, so nothing is lost).

use super::common::{begin_frame, check_header_for_encode, finish_frame, HEADER_LEN};
use super::config::Config;
use super::data::{DataFrame, Phasor};
use crate::error::{FrameError, FrameErrorKind};
use std::f64::consts::{PI, TAU};

fn to_int<T: TryFrom<i64>>(v: f64, field: &'static str, at: usize) -> Result<T, FrameError> {
    let r = v.round();
    if !r.is_finite() || r.abs() > 1e15 {
        return Err(FrameError::new(FrameErrorKind::Encode, field, at));
    }
    T::try_from(r as i64)
        .map_err(|_| FrameError::new(FrameErrorKind::Encode, field, at).with_found(r as i64 as u64))
}

/// Wrap an angle to (-pi, pi], the range C37.118.2 gives phasor angles (and the one
/// the int16 x 1e-4 encoding can hold).
fn wrap_angle(a: f64) -> f64 {
    let w = a.rem_euclid(TAU);
    if w > PI {
        w - TAU
    } else {
        w
    }
}

/// A polar phasor as C37.118.2 ranges it: magnitude >= 0 (a negative one is the same
/// phasor turned by pi) and angle in (-pi, pi]. NaN (absent data) stays NaN.
fn polar_in_range(p: &Phasor) -> (f64, f64) {
    if p.magnitude < 0.0 {
        (-p.magnitude, wrap_angle(p.angle + PI))
    } else {
        (p.magnitude, wrap_angle(p.angle))
    }
}

/// The largest float32 below pi: the float32 nearest pi lies above it.
const BELOW_PI_F32: f32 = f32::from_bits(std::f32::consts::PI.to_bits() - 1);

/// An angle in (-pi, pi] as float32, still in (-pi, pi] once read back (rounding to
/// float32 could otherwise carry pi just above pi, or a value near -pi onto -pi).
fn angle_f32(a: f64) -> f32 {
    let x = a as f32;
    if f64::from(x) > PI {
        BELOW_PI_F32
    } else if f64::from(x) <= -PI {
        -BELOW_PI_F32
    } else {
        x
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
                    let (m, angle) = polar_in_range(p);
                    (m as f32, angle_f32(angle))
                } else {
                    (p.real() as f32, p.imag() as f32)
                };
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&b.to_be_bytes());
            } else {
                let k = pc.phasor_factor(i);
                if k <= 0.0 {
                    return Err(enc("PHUNIT", at));
                }
                if f.polar() {
                    let (m, angle) = polar_in_range(p);
                    let m: u16 = to_int(m / k, "PHASORS", at)?;
                    let a: i16 = to_int(angle * 1e4, "PHASORS", at)?;
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
