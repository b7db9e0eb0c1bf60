//! vpp-rt: the real-time core of the VPP controller, with no Python in it.
//!
//! A synchrophasor stream (IEEE C37.118) goes in; a safe battery setpoint comes out,
//! frame by frame, without heap allocation in steady state. The PyO3 binding lives
//! in the sibling crate `vpp-py`.

pub mod error;
pub mod ticker;

pub use error::{ConfigError, FrameError, FrameErrorKind};
pub use ticker::{Tick, TickStats, Ticker};
