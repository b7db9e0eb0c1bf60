//! vpp-rt: the real-time core of the VPP controller, with no Python in it.
//!
//! A synchrophasor stream (IEEE C37.118) goes in; a safe battery setpoint comes out,
//! frame by frame, without heap allocation in steady state. The PyO3 binding lives
//! in the sibling crate `vpp-py`.

pub mod alloc_count;
pub mod c37118;
pub mod clock;
pub mod error;
pub mod iec104;
pub mod ticker;

pub use error::{ConfigError, FrameError, FrameErrorKind};
pub mod droop;
pub mod monitor;
pub mod pipeline;
pub mod rate;
pub mod rocof;
pub mod rtloop;
pub mod safety;

pub use clock::Clock;
pub use droop::{DroopConfig, DroopController, DroopOutput};
pub use monitor::{Band, BandEdges, FrequencyMonitor, MonitorConfig, Transition};
pub use pipeline::{
    AdmitConfig, Decision, Invalid, Measurement, Outcome, Pipeline, PipelineConfig, PipelineStats,
    Refusal,
};
pub use rocof::{RocofConfig, RocofEstimator, RocofSource};
pub use safety::{
    Action, SafetyEnvelope, SafetyLimits, SafetyReset, SafetyStatus, Telemetry, Violation,
    ViolationCode,
};
pub use ticker::{Tick, TickStats, Ticker};
