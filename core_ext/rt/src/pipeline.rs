//! The per-frame pipeline: one call per PMU frame turns bytes into a safe setpoint.
//!
//! decode -> frequency band -> ROCOF -> droop -> + base schedule -> safety clamp.
//!
//! Configuration frames update the config store (and may allocate: they are rare);
//! data frames are decoded into a reused `DataFrame`, and everything after that works
//! on fixed-size state, so steady-state processing allocates nothing (see
//! `tests/no_alloc_pipeline.rs`). Every error is counted by kind and returned; the
//! pipeline's state is untouched by a bad frame, so the caller's loop simply goes on.

use crate::c37118::{self, Cfg3Assembler, ConfigStore, DataFrame, Frame, FrameType};
use crate::clock::Clock;
use crate::error::{ConfigError, FrameError, FrameErrorKind};
use crate::monitor::{Band, FrequencyMonitor, MonitorConfig, Transition};
use crate::rocof::{RocofConfig, RocofEstimator};
use crate::safety::{SafetyEnvelope, SafetyLimits, SafetyReset, SafetyStatus, Telemetry};
use crate::{DroopConfig, DroopController};

mod admit;
pub use admit::{invalid_reason, Admit, AdmitConfig, Invalid, Measurement, Refusal, TimeGate};

/// Which measurement drives the response, and the admission rule (see `admit`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PipelineConfig {
    /// Which PMU block of the data frame carries the frequency (0 = first).
    pub pmu_index: usize,
    pub admit: AdmitConfig,
}

impl PipelineConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.admit.validate()?;
        if self.pmu_index > 255 {
            return Err(ConfigError::new(
                "pmu_index",
                format!("must be below 256, got {}", self.pmu_index),
            ));
        }
        Ok(())
    }
}

/// What the pipeline decided for one data frame. `Copy` and fixed size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Frame time (SOC + FRACSEC / TIME_BASE), UNIX seconds.
    pub time: f64,
    /// IDCODE of the stream the frame came from.
    pub idcode: u16,
    /// Measured frequency, Hz (NaN when the frame carried none).
    pub freq: f64,
    /// False when the PMU flagged its data as bad or the value is implausible.
    pub freq_valid: bool,
    /// ROCOF, Hz/s (NaN until the estimator's window holds two samples).
    pub rocof: f64,
    /// Frequency band after hysteresis (None before the first valid sample).
    pub band: Option<Band>,
    /// A band change that happened on this frame.
    pub transition: Option<Transition>,
    /// Frequency response (droop + inertia, derated and ramped), kW.
    pub response_kw: f64,
    /// Base schedule, kW.
    pub base_kw: f64,
    /// base + response before the safety envelope, kW.
    pub requested_kw: f64,
    /// What the battery is commanded: always inside the safety envelope, kW.
    pub setpoint_kw: f64,
    /// The safety envelope's verdict (allowed range, action, violations).
    pub safety: SafetyStatus,
    /// Number of decisions made so far (1 for the first).
    pub sequence: u64,
}

/// What was measured for one decision (none of it for an idle one).
struct Measured {
    time: f64,
    idcode: u16,
    freq: f64,
    freq_valid: bool,
    rocof: f64,
    transition: Option<Transition>,
}

/// What one call to `process` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A data frame produced a decision (read it with `Pipeline::decision`).
    Decision,
    /// A configuration frame was stored for this IDCODE.
    Config(u16),
    /// One fragment of a CFG-3 arrived; the configuration is not complete yet.
    Fragment(u16),
    /// A frame that carries no measurement (header, command).
    Ignored(FrameType),
    /// A data frame refused by the admission rule (counted; no decision).
    Refused(Refusal),
}

/// Counters of what the pipeline has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PipelineStats {
    pub frames: u64,
    pub decisions: u64,
    pub configs: u64,
    pub ignored: u64,
    /// Measurements refused, by kind (indexed by `Refusal::ALL` order).
    pub refused: [u64; Refusal::ALL.len()],
    /// Admitted measurements that were not valid, by reason (`Invalid::ALL` order).
    pub invalid: [u64; Invalid::ALL.len()],
    /// Admitted measurements that were not valid, in all.
    pub invalid_measurements: u64,
    /// New PMU time bases taken (see `admit`).
    pub resyncs: u64,
    /// Decisions made without a measurement (`idle`).
    pub idle: u64,
    /// Measurements from `step` (decoded values), admitted or not.
    pub steps: u64,
    /// Errors by kind, indexed by `kind as usize` (the order of `FrameErrorKind::ALL`).
    pub errors: [u64; FrameErrorKind::ALL.len()],
}

impl PipelineStats {
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}

/// Frame-by-frame frequency response with a safety envelope.
pub struct Pipeline {
    cfg: PipelineConfig,
    configs: ConfigStore,
    cfg3: Cfg3Assembler,
    frame: DataFrame,
    monitor: FrequencyMonitor,
    rocof: RocofEstimator,
    droop: DroopController,
    safety: SafetyEnvelope,
    telemetry: Telemetry,
    base_kw: f64,
    gate: TimeGate,
    decision: Decision,
    stats: PipelineStats,
}

impl Pipeline {
    /// A pipeline from its parts (each already validated by its own constructor).
    pub fn new(
        cfg: PipelineConfig,
        monitor: FrequencyMonitor,
        rocof: RocofEstimator,
        droop: DroopController,
        safety: SafetyEnvelope,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let decision = Decision {
            time: f64::NAN,
            idcode: 0,
            freq: f64::NAN,
            freq_valid: false,
            rocof: f64::NAN,
            band: None,
            transition: None,
            response_kw: 0.0,
            base_kw: 0.0,
            requested_kw: 0.0,
            setpoint_kw: 0.0,
            safety: *safety.status(),
            sequence: 0,
        };
        Ok(Self {
            cfg,
            configs: ConfigStore::new(),
            cfg3: Cfg3Assembler::new(),
            frame: DataFrame::default(),
            monitor,
            rocof,
            droop,
            safety,
            telemetry: Telemetry::missing(),
            base_kw: 0.0,
            gate: TimeGate::default(),
            decision,
            stats: PipelineStats::default(),
        })
    }

    /// Defaults: IEGC bands, the default ROCOF estimator (0.1 s window), 5 % droop with
    /// the 49.90-50.05 Hz deadband on a pack of `p_max_kw`, and the 16S LFP safety limits.
    pub fn with_defaults(p_max_kw: f64) -> Result<Self, ConfigError> {
        let mut limits = SafetyLimits::lfp_16s();
        limits.max_charge_kw = p_max_kw;
        limits.max_discharge_kw = p_max_kw;
        Self::new(
            PipelineConfig::default(),
            FrequencyMonitor::new(MonitorConfig::default())?,
            RocofEstimator::new(RocofConfig::default())?,
            DroopController::new(DroopConfig::new(p_max_kw))?,
            SafetyEnvelope::new(limits)?,
        )
    }

    /// Feed one whole frame at `clock`. Data frames go through the admission rule and
    /// produce a decision (`Outcome::Decision`, then read `decision()`) or a refusal;
    /// configuration frames are stored. Errors are counted by kind.
    pub fn process(&mut self, buf: &[u8], clock: Clock) -> Result<Outcome, FrameError> {
        self.process_with(buf, Some(clock))
    }

    /// `process` on the frame's own time as both clocks: a replay of a capture (offline
    /// analysis, `process_buffer`), where no real clock applies.
    pub fn process_replay(&mut self, buf: &[u8]) -> Result<Outcome, FrameError> {
        self.process_with(buf, None)
    }

    fn process_with(&mut self, buf: &[u8], clock: Option<Clock>) -> Result<Outcome, FrameError> {
        self.stats.frames += 1;
        let r = self.process_inner(buf, clock);
        match r {
            Ok(Outcome::Decision) => self.stats.decisions += 1,
            Ok(Outcome::Config(_)) => self.stats.configs += 1,
            Ok(Outcome::Ignored(_)) => self.stats.ignored += 1,
            Ok(Outcome::Fragment(_) | Outcome::Refused(_)) => {}
            Err(e) => self.stats.errors[e.kind as usize] += 1,
        }
        r
    }

    fn process_inner(&mut self, buf: &[u8], clock: Option<Clock>) -> Result<Outcome, FrameError> {
        let h = c37118::check_frame(buf)?;
        if h.frame_type == FrameType::Data {
            if self.cfg.admit.idcode.is_some_and(|id| id != h.idcode) {
                // Refused before decoding: another stream's frame is not even parsed.
                return Ok(Outcome::Refused(self.refuse(Refusal::WrongIdcode)));
            }
            let cfg = self.configs.get(h.idcode).ok_or_else(|| {
                FrameError::new(FrameErrorKind::NoConfig, "IDCODE", 4)
                    .with_found(u64::from(h.idcode))
            })?;
            c37118::data::decode_checked(buf, &h, cfg, &mut self.frame)?;
            let Some(pmu) = self.frame.pmus.get(self.cfg.pmu_index) else {
                return Err(FrameError::new(FrameErrorKind::Mismatch, "NUM_PMU", 14)
                    .with_values(self.cfg.pmu_index as u64 + 1, self.frame.pmus.len() as u64));
            };
            let m = Measurement {
                t: self.frame.time(),
                idcode: h.idcode,
                freq: pmu.freq,
                dfreq: pmu.dfreq,
                stat: pmu.stat.0,
            };
            let clock = clock.unwrap_or(Clock::replay(m.t));
            return Ok(match self.decide(m, clock) {
                Ok(()) => Outcome::Decision,
                Err(r) => Outcome::Refused(r),
            });
        }
        match c37118::decode_checked(buf, &h, &self.configs)? {
            Frame::Config(c) => Ok(self.store_config(c)),
            Frame::Cfg3Fragment(frag) => {
                let id = frag.idcode;
                match self.cfg3.push(frag)? {
                    Some(c) => Ok(self.store_config(c)),
                    None => Ok(Outcome::Fragment(id)),
                }
            }
            other => Ok(Outcome::Ignored(other.frame_type())),
        }
    }

    fn store_config(&mut self, c: c37118::Config) -> Outcome {
        let id = c.idcode;
        // Size the reused data frame for the new configuration now, so that data frames
        // decode without growing it.
        if self.cfg.admit.idcode.is_none_or(|want| want == id) {
            self.frame = DataFrame::with_capacity_for(&c);
        }
        self.configs.insert(c);
        Outcome::Config(id)
    }

    /// One measurement from a decoded frame or another source, at `clock`: the same
    /// admission rule and counters as `process`. The decision, or why it was refused.
    pub fn step(&mut self, m: Measurement, clock: Clock) -> Result<&Decision, Refusal> {
        self.stats.steps += 1;
        self.decide(m, clock)?;
        self.stats.decisions += 1;
        Ok(&self.decision)
    }

    fn decide(&mut self, m: Measurement, clock: Clock) -> Result<(), Refusal> {
        if self.cfg.admit.idcode.is_some_and(|id| id != m.idcode) {
            return Err(self.refuse(Refusal::WrongIdcode));
        }
        match self.gate.admit(m.t, clock, &self.cfg.admit) {
            Admit::Accept => {}
            Admit::Resync => {
                // A new time base: the estimators that work on PMU time start over.
                self.stats.resyncs += 1;
                self.rocof.reset();
                self.droop.restart_clock();
            }
            Admit::Refuse(r) => return Err(self.refuse(r)),
        }
        let nominal = self.droop.config().nominal_hz;
        let reason = invalid_reason(&m, nominal, &self.cfg.admit);
        if let Some(r) = reason {
            self.stats.invalid[r as usize] += 1;
            self.stats.invalid_measurements += 1;
        }
        let valid = reason.is_none();
        let f_used = if valid { m.freq } else { f64::NAN };
        let transition = self.monitor.update(m.t, f_used);
        let rocof = if valid {
            self.rocof.update(m.t, f_used, m.dfreq)
        } else {
            self.rocof.value()
        };
        let tel = &self.telemetry;
        let out = self.droop.update(
            m.t,
            f_used,
            rocof.unwrap_or(0.0),
            tel.soc_pct,
            tel.temp_max_c,
        );
        let measured = Measured {
            time: m.t,
            idcode: m.idcode,
            freq: m.freq,
            freq_valid: valid,
            rocof: rocof.unwrap_or(f64::NAN),
            transition,
        };
        self.conclude(measured, out.output_kw, clock);
        Ok(())
    }

    /// Count a refusal; returns it.
    fn refuse(&mut self, r: Refusal) -> Refusal {
        self.stats.refused[r as usize] += 1;
        r
    }

    /// A decision without a measurement (the PMU stream is lost or refused): the
    /// response ramps toward zero over the controller time elapsed, and the base power
    /// and the safety envelope go on. The decision's `time` is the wall clock.
    pub fn idle(&mut self, clock: Clock) -> &Decision {
        // The envelope's clock is the time of the latest decision (or anchor).
        let last = self.safety.last_mono();
        let dt = if clock.mono > last {
            clock.mono - last
        } else {
            0.0
        };
        self.droop.decay(dt);
        self.stats.idle += 1;
        let measured = Measured {
            time: clock.wall,
            idcode: self.decision.idcode,
            freq: f64::NAN,
            freq_valid: false,
            rocof: f64::NAN,
            transition: None,
        };
        self.conclude(measured, self.droop.output_kw(), clock);
        &self.decision
    }

    /// Base + response through the safety envelope at `clock`: the decision.
    fn conclude(&mut self, m: Measured, response_kw: f64, clock: Clock) {
        let requested = self.base_kw + response_kw;
        let safety = *self
            .safety
            .evaluate_at(&self.telemetry, clock.wall, clock.mono);
        let setpoint = self.safety.clamp(requested);
        self.decision = Decision {
            time: m.time,
            idcode: m.idcode,
            freq: m.freq,
            freq_valid: m.freq_valid,
            rocof: m.rocof,
            band: self.monitor.band(),
            transition: m.transition,
            response_kw,
            base_kw: self.base_kw,
            requested_kw: requested,
            setpoint_kw: setpoint,
            safety,
            sequence: self.decision.sequence + 1,
        };
    }

    /// The inverter runs at `power_kw` now and the ramp goes on from there (see
    /// `SafetyEnvelope::anchor`): for a controller that starts, or takes a unit back.
    pub fn anchor(&mut self, power_kw: f64, clock: Clock) {
        self.safety.anchor(power_kw, clock.mono);
    }

    /// New droop settings (share, droop, deadband, ramp...) in place: the response and
    /// the envelope's ramp carry over, so the setpoint moves on continuously.
    pub fn set_droop(&mut self, cfg: DroopConfig) -> Result<(), ConfigError> {
        self.droop.reconfigure(cfg)
    }

    /// The latest decision.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Latest battery telemetry, used by the safety envelope and the droop derating.
    /// Until it is set (and whenever it is older than the stale limit) the envelope
    /// stops the battery.
    pub fn set_telemetry(&mut self, telemetry: Telemetry) {
        self.telemetry = telemetry;
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Base schedule (kW, positive = discharge) the frequency response is added to.
    /// A non-finite value is refused and the previous schedule kept.
    pub fn set_base_kw(&mut self, kw: f64) -> Result<(), ConfigError> {
        if !kw.is_finite() {
            return Err(ConfigError::new(
                "base_kw",
                format!("must be finite, got {kw}"),
            ));
        }
        self.base_kw = kw;
        Ok(())
    }

    pub fn base_kw(&self) -> f64 {
        self.base_kw
    }

    /// Clear a latched emergency shutdown if the envelope allows it (see
    /// `SafetyEnvelope::reset`).
    pub fn reset_safety(&mut self) -> SafetyReset {
        self.safety.reset()
    }

    /// The admission rule's time state.
    pub fn time_gate(&self) -> &TimeGate {
        &self.gate
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    pub fn configs(&self) -> &ConfigStore {
        &self.configs
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    pub fn monitor(&self) -> &FrequencyMonitor {
        &self.monitor
    }

    pub fn rocof(&self) -> &RocofEstimator {
        &self.rocof
    }

    pub fn droop(&self) -> &DroopController {
        &self.droop
    }

    pub fn safety(&self) -> &SafetyEnvelope {
        &self.safety
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_admit;
