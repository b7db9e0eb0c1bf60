//! Sample configurations, data and frames of every type and FORMAT, for tests, the
//! mutation fuzzer and benchmarks (not for production use).

use super::command::{Command, CommandFrame};
use super::common::TimeQuality;
use super::config::{anunit, phunit, Config, ConfigKind, Format, PmuConfig};
use super::data::{encode_data, DataFrame, Phasor, PmuData, Stat};
use super::fragments::encode_cfg3_frames;
use super::header::HeaderFrame;
use super::{encode_config, header};

/// A PMU with `ph` phasors (first half voltages), `an` analogs and `dg` digital words.
pub fn pmu_config(
    idcode: u16,
    station: &str,
    format: Format,
    ph: usize,
    an: usize,
    dg: usize,
) -> PmuConfig {
    PmuConfig {
        station: station.to_owned(),
        idcode,
        format,
        phasor_names: (0..ph).map(|i| format!("PH{i}")).collect(),
        analog_names: (0..an).map(|i| format!("AN{i}")).collect(),
        digital_names: (0..16 * dg).map(|i| format!("D{i}")).collect(),
        phasor_units: (0..ph)
            .map(|i| {
                if i < ph.div_ceil(2) {
                    phunit(false, 915_527)
                } else {
                    phunit(true, 45_776)
                }
            })
            .collect(),
        analog_units: (0..an).map(|i| anunit(1, 1 + i as i32)).collect(),
        digital_units: (0..dg).map(|_| 0x0000_FFFF).collect(),
        fnom_50hz: true,
        cfgcnt: 1,
        cfg3: None,
    }
}

/// A configuration of the given kind over `pmus`.
pub fn config(kind: ConfigKind, version: u8, idcode: u16, pmus: Vec<PmuConfig>) -> Config {
    Config {
        kind,
        version: if kind == ConfigKind::Cfg3 { 2 } else { version },
        idcode,
        soc: 1_700_000_000,
        fraction: 0,
        time_quality: TimeQuality(0),
        time_base: 1_000_000,
        data_rate: 50,
        pmus,
    }
}

/// The common test shape: one PMU, 4 phasors, 3 analogs, 1 digital word.
pub fn one_pmu(format: Format) -> Config {
    config(
        ConfigKind::Cfg2,
        2,
        7,
        vec![pmu_config(7, "STATION A", format, 4, 3, 1)],
    )
}

/// Data values for `cfg` that every FORMAT can represent exactly (integer counts of
/// the scale factors), varying with `seed`.
pub fn data_for(cfg: &Config, seed: u32) -> DataFrame {
    let s = f64::from(seed % 97);
    let pmus = cfg
        .pmus
        .iter()
        .map(|p| PmuData {
            idcode: p.idcode,
            stat: Stat((seed % 4) as u16),
            phasors: (0..p.phnmr())
                .map(|i| {
                    let k = p.phasor_factor(i);
                    if p.format.polar() || p.format.phasors_float() {
                        Phasor {
                            magnitude: (20_000.0 + 10.0 * s) * k,
                            angle: (i as f64 * 2.0 - 3.0 + s * 1e-3) * 1.0,
                        }
                    } else {
                        Phasor::from_rect((10_000.0 + s) * k, (-5_000.0 - s) * k)
                    }
                })
                .map(|ph| {
                    if p.format.phasors_float() || !p.format.polar() {
                        ph
                    } else {
                        Phasor {
                            angle: (ph.angle * 1e4).round() * 1e-4,
                            ..ph
                        }
                    }
                })
                .collect(),
            freq: p.fnom() + (s - 40.0) * 1e-3,
            dfreq: (s - 50.0) * 1e-2,
            analogs: (0..p.annmr())
                .map(|i| (100.0 + s) * p.analog_factor(i).0)
                .collect(),
            digitals: (0..p.dgnmr())
                .map(|i| (seed as u16).wrapping_add(i as u16))
                .collect(),
        })
        .collect();
    DataFrame {
        version: cfg.version,
        idcode: cfg.idcode,
        soc: 1_700_000_000 + seed,
        fraction: (seed * 20_000) % cfg.time_base,
        time_quality: TimeQuality(0),
        time_base: cfg.time_base,
        pmus,
    }
}

/// Encoded data frame of `data_for(cfg, seed)`.
pub fn data_bytes(cfg: &Config, seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encode_data(&data_for(cfg, seed), cfg, &mut out).expect("sample data encodes");
    out
}

/// A configuration with two PMUs of different FORMATs.
pub fn two_pmus(kind: ConfigKind) -> Config {
    config(
        kind,
        2,
        21,
        vec![
            pmu_config(101, "PMU ONE", Format(0x0F), 2, 1, 1),
            pmu_config(102, "PMU TWO", Format(0x00), 3, 2, 2),
        ],
    )
}

/// Valid frames of every type (config frames precede the data frames that need them).
pub fn all_frames() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let push_cfg = |c: &Config, frames: &mut Vec<Vec<u8>>| {
        let mut out = Vec::new();
        encode_config(c, &mut out).expect("sample config encodes");
        frames.push(out);
    };
    for f in Format::all() {
        let c = one_pmu(f);
        push_cfg(&c, &mut frames);
        frames.push(data_bytes(&c, u32::from(f.0)));
    }
    for kind in [ConfigKind::Cfg1, ConfigKind::Cfg2, ConfigKind::Cfg3] {
        let c = two_pmus(kind);
        push_cfg(&c, &mut frames);
        frames.push(data_bytes(&c, 3));
    }
    let mut v1 = one_pmu(Format(0x0F));
    v1.version = 1;
    push_cfg(&v1, &mut frames);
    frames.push(data_bytes(&v1, 5));
    let mut big = two_pmus(ConfigKind::Cfg3);
    big.idcode = 33;
    frames.extend(encode_cfg3_frames(&big, 200).expect("fragments"));
    let mut out = Vec::new();
    let hf = HeaderFrame {
        version: 2,
        idcode: 7,
        soc: 1,
        fraction: 2,
        time_quality: TimeQuality(0),
        data: b"PMU header text".to_vec(),
    };
    header::encode_header(&hf, &mut out).expect("header");
    frames.push(out);
    for cmd in [
        Command::DataOff,
        Command::DataOn,
        Command::SendHeader,
        Command::SendCfg1,
        Command::SendCfg2,
        Command::SendCfg3,
        Command::Extended,
        Command::User(0x0123),
    ] {
        let mut c = CommandFrame::new(7, cmd);
        if cmd.has_payload() {
            c.extended = vec![1, 2, 3, 4];
        }
        let mut out = Vec::new();
        super::command::encode_command(&c, &mut out).expect("command");
        frames.push(out);
    }
    frames
}
