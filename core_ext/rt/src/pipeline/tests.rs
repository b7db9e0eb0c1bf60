use super::*;
use crate::c37118::config::Format;
use crate::c37118::data::encode_data;
use crate::c37118::samples;
use crate::c37118::{encode_config, Config, Stat};
use crate::safety::{Action, SafetyReset, ViolationCode};
use crate::Band;

const T0: u32 = 1_700_000_000;

/// Telemetry of a healthy 16S LFP pack measured at `t` (also used by `tests_admit`).
pub(super) fn healthy(t: f64) -> Telemetry {
    Telemetry {
        timestamp: t,
        pack_voltage_v: 52.8,
        current_a: 0.0,
        cell_v_min: 3.30,
        cell_v_max: 3.31,
        temp_min_c: 24.0,
        temp_max_c: 25.0,
        soc_pct: 50.0,
        soh_pct: 100.0,
        bms_faults: 0,
        power_kw: 0.0,
        bms_timestamp: None,
    }
}

/// A replay's clock at frame time `t`.
fn at(t: f64) -> Clock {
    Clock::replay(t)
}

struct Source {
    cfg: Config,
    rate: u32,
    k: u32,
}

impl Source {
    fn new(format: Format, rate: u32) -> Self {
        let mut cfg = samples::one_pmu(format);
        cfg.data_rate = rate as i16;
        Self { cfg, rate, k: 0 }
    }
    fn config_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_config(&self.cfg, &mut out).unwrap();
        out
    }
    /// The next data frame, `rate` per second, carrying `f` Hz and STAT `stat`.
    fn frame(&mut self, f: f64, stat: u16) -> (f64, Vec<u8>) {
        let mut df = samples::data_for(&self.cfg, self.k);
        df.soc = T0 + self.k / self.rate;
        df.fraction = (self.k % self.rate) * (self.cfg.time_base / self.rate);
        df.pmus[0].freq = f;
        df.pmus[0].dfreq = 0.0;
        df.pmus[0].stat = Stat(stat);
        self.k += 1;
        let mut out = Vec::new();
        encode_data(&df, &self.cfg, &mut out).unwrap();
        (df.time(), out)
    }
}

fn pipeline_with_config(src: &Source) -> Pipeline {
    let mut p = Pipeline::with_defaults(5.0).unwrap();
    assert_eq!(
        p.process(&src.config_bytes(), at(0.0)).unwrap(),
        Outcome::Config(src.cfg.idcode)
    );
    p
}

#[test]
fn nominal_frequency_gives_the_base_schedule() {
    let mut src = Source::new(Format::new(true, true, true, true), 50);
    let mut p = pipeline_with_config(&src);
    p.set_base_kw(1.5).unwrap();
    for _ in 0..100 {
        let (t, bytes) = src.frame(50.0, 0);
        p.set_telemetry(healthy(t));
        assert_eq!(p.process(&bytes, at(t)).unwrap(), Outcome::Decision);
    }
    let d = p.decision();
    assert_eq!(d.band, Some(Band::Normal));
    assert!(d.freq_valid);
    assert_eq!(d.response_kw, 0.0);
    assert!((d.setpoint_kw - 1.5).abs() < 1e-9, "{}", d.setpoint_kw);
    assert_eq!(d.sequence, 100);
    assert_eq!(p.stats().decisions, 100);
}

#[test]
fn under_frequency_discharges_by_the_droop_slope_within_limits() {
    // Integer FREQ (mHz deviation) exercises the absolute-Hz conversion too.
    let mut src = Source::new(Format::new(true, false, false, false), 25);
    let mut p = pipeline_with_config(&src);
    for _ in 0..200 {
        let (t, bytes) = src.frame(49.80, 0);
        p.set_telemetry(healthy(t));
        p.process(&bytes, at(t)).unwrap();
    }
    let d = *p.decision();
    // 5 % droop on 5 kW, 0.10 Hz below the 49.90 Hz edge: 5 / 0.05 * 0.10 / 50 = 0.2 kW.
    assert!((d.freq - 49.80).abs() < 1e-9, "{}", d.freq);
    assert!((d.response_kw - 0.2).abs() < 1e-6, "{}", d.response_kw);
    assert!((d.setpoint_kw - 0.2).abs() < 1e-6);
    assert_eq!(d.band, Some(Band::Low));
    assert!(d.setpoint_kw <= d.safety.max_kw && d.setpoint_kw >= d.safety.min_kw);
}

#[test]
fn without_telemetry_the_battery_is_stopped() {
    let mut src = Source::new(Format::new(true, true, true, true), 50);
    let mut p = pipeline_with_config(&src);
    p.set_base_kw(3.0).unwrap();
    let (t, bytes) = src.frame(49.5, 0);
    p.process(&bytes, at(t)).unwrap();
    let d = p.decision();
    assert_eq!(d.setpoint_kw, 0.0);
    assert_eq!(d.safety.action, Action::Stop);
    assert!(d.safety.has(ViolationCode::StaleTelemetry));
}

#[test]
fn data_before_its_configuration_is_a_counted_error() {
    let mut src = Source::new(Format::new(true, true, true, true), 50);
    let mut p = Pipeline::with_defaults(5.0).unwrap();
    let (t, bytes) = src.frame(50.0, 0);
    let e = p.process(&bytes, at(t)).unwrap_err();
    assert_eq!(e.kind, FrameErrorKind::NoConfig);
    assert_eq!(e.field, "IDCODE");
    assert_eq!(p.stats().errors[FrameErrorKind::NoConfig as usize], 1);
    assert_eq!(p.decision().sequence, 0);
}

#[test]
fn a_corrupt_frame_changes_nothing_and_the_next_one_works() {
    let mut src = Source::new(Format::new(true, true, true, true), 50);
    let mut p = pipeline_with_config(&src);
    let (t, bytes) = src.frame(50.0, 0);
    p.set_telemetry(healthy(t));
    p.process(&bytes, at(t)).unwrap();
    let before = *p.decision();
    let (t2, mut bad) = src.frame(49.0, 0);
    let n = bad.len();
    bad[n - 1] ^= 0xFF;
    let e = p.process(&bad, at(t2)).unwrap_err();
    assert_eq!(e.kind, FrameErrorKind::Crc);
    // (rocof is still NaN here, so compare fields rather than the whole struct.)
    let after = p.decision();
    assert_eq!(
        (after.sequence, after.time, after.setpoint_kw),
        (before.sequence, before.time, before.setpoint_kw)
    );
    let (t3, good) = src.frame(50.0, 0);
    assert_eq!(p.process(&good, at(t3)).unwrap(), Outcome::Decision);
    assert_eq!(p.stats().error_total(), 1);
    assert_eq!(p.decision().sequence, 2);
}

#[test]
fn bad_or_implausible_measurements_ramp_the_response_to_zero() {
    let mut src = Source::new(Format::new(true, true, true, true), 50);
    let mut p = pipeline_with_config(&src);
    for _ in 0..100 {
        let (t, b) = src.frame(49.6, 0);
        p.set_telemetry(healthy(t));
        p.process(&b, at(t)).unwrap();
    }
    assert!(p.decision().response_kw > 0.5);
    // STAT data error bits set (PMU error): not a grid event.
    for _ in 0..100 {
        let (t, b) = src.frame(45.0, 0x4000);
        p.set_telemetry(healthy(t));
        p.process(&b, at(t)).unwrap();
        assert!(!p.decision().freq_valid);
    }
    assert_eq!(p.decision().response_kw, 0.0);
    // A good flag but an absurd value (20 Hz off nominal): also ignored.
    let (t, b) = src.frame(30.0, 0);
    p.set_telemetry(healthy(t));
    p.process(&b, at(t)).unwrap();
    assert!(!p.decision().freq_valid);
    assert_eq!(p.stats().invalid_measurements, 101);
}

#[test]
fn critical_temperature_stops_and_latches_until_reset() {
    let mut src = Source::new(Format::new(true, true, true, true), 50);
    let mut p = pipeline_with_config(&src);
    p.set_base_kw(2.0).unwrap();
    let (t, b) = src.frame(50.0, 0);
    let mut hot = healthy(t);
    hot.temp_max_c = 90.0;
    p.set_telemetry(hot);
    p.process(&b, at(t)).unwrap();
    assert_eq!(p.decision().safety.action, Action::EmergencyShutdown);
    assert_eq!(p.decision().setpoint_kw, 0.0);
    // Cooled down, but latched until an explicit reset.
    for _ in 0..10 {
        let (t, b) = src.frame(50.0, 0);
        p.set_telemetry(healthy(t));
        p.process(&b, at(t)).unwrap();
        assert_eq!(p.decision().setpoint_kw, 0.0);
    }
    assert_eq!(p.reset_safety(), SafetyReset::Cleared);
    for _ in 0..200 {
        let (t, b) = src.frame(50.0, 0);
        p.set_telemetry(healthy(t));
        p.process(&b, at(t)).unwrap();
    }
    assert!((p.decision().setpoint_kw - 2.0).abs() < 1e-9);
}

#[test]
fn frames_of_another_stream_are_refused_when_an_idcode_is_set() {
    let src = Source::new(Format::new(true, true, true, true), 50);
    let mut other = Source::new(Format::new(true, true, true, true), 50);
    other.cfg.idcode = 99;
    other.cfg.pmus[0].idcode = 99;
    let mut p = Pipeline::new(
        PipelineConfig {
            admit: AdmitConfig {
                idcode: Some(src.cfg.idcode),
                ..Default::default()
            },
            ..Default::default()
        },
        FrequencyMonitor::new(MonitorConfig::default()).unwrap(),
        RocofEstimator::new(RocofConfig::default()).unwrap(),
        DroopController::new(DroopConfig::new(5.0)).unwrap(),
        SafetyEnvelope::new(SafetyLimits::lfp_16s()).unwrap(),
    )
    .unwrap();
    p.process(&other.config_bytes(), at(0.0)).unwrap();
    let (t, b) = other.frame(49.0, 0);
    assert_eq!(
        p.process(&b, at(t)).unwrap(),
        Outcome::Refused(Refusal::WrongIdcode)
    );
    assert_eq!(p.stats().refused[Refusal::WrongIdcode as usize], 1);
    assert_eq!(p.decision().sequence, 0);
}

#[test]
fn invalid_parameters_are_config_errors() {
    let cfg = PipelineConfig {
        admit: AdmitConfig {
            max_deviation_hz: -1.0,
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(cfg.validate().unwrap_err().field, "max_deviation_hz");
    let mut p = Pipeline::with_defaults(5.0).unwrap();
    assert_eq!(p.set_base_kw(f64::NAN).unwrap_err().field, "base_kw");
}
