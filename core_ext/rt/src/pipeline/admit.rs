//! Admission: the one rule every measurement passes before it reaches the monitor, the
//! ROCOF estimator, the droop and the envelope, whichever way it came in (a raw frame,
//! a decoded frame's values, a buffer).
//!
//! A measurement is first *admitted* or *refused*. Refused (counted by kind, no decision,
//! no state touched): another stream's IDCODE, a time that is not a finite number, a time
//! too far from the controller's wall clock (when that check is configured), a duplicate,
//! a late or out-of-order frame, and a forward jump of the PMU time beyond the time that
//! really elapsed (plus `max_lead_s` of network jitter). So no clock ever moves
//! backwards, and the PMU's time can never run ahead of the controller's.
//!
//! A genuine change of the PMU's time base (a clock corrected after holdover, a
//! different PMU behind the same address) would otherwise be refused forever: when
//! refused frames keep arriving in order among themselves, consistent with each other by
//! the same rule, for `resync_after_s` of controller time, the next one is admitted as a
//! new time base (a *resync*, counted) and the time-dependent estimators restart.
//!
//! An admitted measurement is then *valid* or not (counted by reason): the PMU flagged a
//! data error (STAT bits 15-14), it lost time sync (STAT bit 13, unless
//! `accept_sync_lost`), the frequency is not finite, or it lies further than
//! `max_deviation_hz` from nominal. An invalid measurement still makes a decision: no
//! frequency, so the response ramps to zero, while the base power and the envelope go on.

use crate::clock::Clock;
use crate::error::ConfigError;

/// One frequency measurement, however it arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// PMU time (SOC + FRACSEC / TIME_BASE), UNIX s.
    pub t: f64,
    /// IDCODE of the stream it came from.
    pub idcode: u16,
    /// Frequency, Hz.
    pub freq: f64,
    /// The PMU's ROCOF, Hz/s (NaN if none).
    pub dfreq: f64,
    /// The PMU block's STAT word.
    pub stat: u16,
}

/// Why a measurement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    WrongIdcode,
    BadTime,
    TimeOffset,
    Duplicate,
    Late,
    TimeJump,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Self::WrongIdcode,
        Self::BadTime,
        Self::TimeOffset,
        Self::Duplicate,
        Self::Late,
        Self::TimeJump,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::WrongIdcode => "wrong_idcode",
            Self::BadTime => "bad_time",
            Self::TimeOffset => "time_offset",
            Self::Duplicate => "duplicate",
            Self::Late => "late",
            Self::TimeJump => "time_jump",
        }
    }
}

/// Why an admitted measurement is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invalid {
    DataError,
    SyncLost,
    NonFinite,
    Implausible,
}

impl Invalid {
    pub const ALL: [Invalid; 4] = [
        Self::DataError,
        Self::SyncLost,
        Self::NonFinite,
        Self::Implausible,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::DataError => "data_error",
            Self::SyncLost => "sync_lost",
            Self::NonFinite => "non_finite",
            Self::Implausible => "implausible",
        }
    }
}

/// The rule's parameters (part of `PipelineConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmitConfig {
    /// Only this stream's frames are used (None: any stream).
    pub idcode: Option<u16>,
    /// A frequency further than this from nominal (Hz) is a bad measurement, not a grid
    /// event (default 5 Hz).
    pub max_deviation_hz: f64,
    /// Use measurements whose PMU has lost time sync (default false: their times cannot
    /// be trusted for ROCOF or ordering, so they count as invalid).
    pub accept_sync_lost: bool,
    /// How far the PMU time may advance beyond the controller time elapsed between two
    /// admitted frames, s (default 0.5: network jitter and bursts).
    pub max_lead_s: f64,
    /// How long refused frames must agree on a new time base before it is taken, s of
    /// controller time (default 2).
    pub resync_after_s: f64,
    /// A frame time further than this from the wall clock is refused, s (default
    /// infinite: no check, as a replay needs; a live controller sets it).
    pub max_offset_s: f64,
}

impl Default for AdmitConfig {
    fn default() -> Self {
        Self {
            idcode: None,
            max_deviation_hz: 5.0,
            accept_sync_lost: false,
            max_lead_s: 0.5,
            resync_after_s: 2.0,
            max_offset_s: f64::INFINITY,
        }
    }
}

impl AdmitConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pos = |name: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::new(
                    name,
                    format!("must be a positive number of seconds or Hz, got {v}"),
                ))
            }
        };
        pos("max_deviation_hz", self.max_deviation_hz)?;
        pos("max_lead_s", self.max_lead_s)?;
        pos("resync_after_s", self.resync_after_s)?;
        if self.max_offset_s.is_nan() || self.max_offset_s <= 0.0 {
            return Err(ConfigError::new(
                "max_offset_s",
                format!("must be > 0 (inf: no check), got {}", self.max_offset_s),
            ));
        }
        Ok(())
    }
}

/// What the time rule says about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// In order and in time.
    Accept,
    /// The first frame of a new time base.
    Resync,
    Refuse(Refusal),
}

/// A time base: the newest PMU time and the controller time it arrived at.
#[derive(Debug, Clone, Copy)]
struct Base {
    t: f64,
    mono: f64,
}

impl Base {
    /// `t` at `mono` follows this base: later, and not ahead of the elapsed time by
    /// more than `lead`.
    fn follows(&self, t: f64, mono: f64, lead: f64) -> bool {
        t > self.t && t - self.t <= (mono - self.mono).max(0.0) + lead
    }
}

/// The time half of the rule (see the module docstring). Fixed size, no allocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeGate {
    base: Option<Base>,
    /// A candidate new time base: its newest frame, and when it was first seen.
    candidate: Option<(Base, f64)>,
}

impl TimeGate {
    /// Judge frame time `t` arriving at `clock`; an admitted time becomes the newest.
    pub fn admit(&mut self, t: f64, clock: Clock, cfg: &AdmitConfig) -> Admit {
        if !(t.is_finite() && clock.mono.is_finite()) {
            return Admit::Refuse(Refusal::BadTime);
        }
        let offset = (t - clock.wall).abs();
        if cfg.max_offset_s.is_finite() && (offset.is_nan() || offset > cfg.max_offset_s) {
            return Admit::Refuse(Refusal::TimeOffset);
        }
        let now = Base {
            t,
            mono: clock.mono,
        };
        let Some(base) = self.base else {
            self.base = Some(now);
            return Admit::Accept;
        };
        if t == base.t {
            return Admit::Refuse(Refusal::Duplicate);
        }
        if base.follows(t, clock.mono, cfg.max_lead_s) {
            self.base = Some(now);
            self.candidate = None;
            return Admit::Accept;
        }
        match self.candidate {
            Some((cand, since)) if cand.follows(t, clock.mono, cfg.max_lead_s) => {
                if clock.mono - since >= cfg.resync_after_s {
                    self.base = Some(now);
                    self.candidate = None;
                    return Admit::Resync;
                }
                self.candidate = Some((now, since));
            }
            _ => self.candidate = Some((now, clock.mono)),
        }
        Admit::Refuse(if t < base.t {
            Refusal::Late
        } else {
            Refusal::TimeJump
        })
    }

    /// The newest admitted PMU time (NaN before the first).
    pub fn newest(&self) -> f64 {
        self.base.map_or(f64::NAN, |b| b.t)
    }

    /// The controller time the newest admitted frame arrived at (NaN before the first).
    pub fn newest_mono(&self) -> f64 {
        self.base.map_or(f64::NAN, |b| b.mono)
    }
}

/// The validity half of the rule: None when the measurement is good.
pub fn invalid_reason(m: &Measurement, nominal_hz: f64, cfg: &AdmitConfig) -> Option<Invalid> {
    const DATA_ERROR: u16 = 0xC000;
    const SYNC_LOST: u16 = 0x2000;
    if m.stat & DATA_ERROR != 0 {
        Some(Invalid::DataError)
    } else if m.stat & SYNC_LOST != 0 && !cfg.accept_sync_lost {
        Some(Invalid::SyncLost)
    } else if !m.freq.is_finite() {
        Some(Invalid::NonFinite)
    } else if (m.freq - nominal_hz).abs() > cfg.max_deviation_hz {
        Some(Invalid::Implausible)
    } else {
        None
    }
}
