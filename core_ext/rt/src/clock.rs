//! The controller's clocks: wall time for ages and offsets, monotonic time for rates.

use std::time::{SystemTime, UNIX_EPOCH};

/// The controller's two clocks at a decision, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    /// Wall clock, UNIX s: the telemetry's age, and how far a frame's time may be off.
    pub wall: f64,
    /// Monotonic clock: the real time that elapsed, for every rate and ramp.
    pub mono: f64,
}

impl Clock {
    /// The system's clocks now (`CLOCK_REALTIME`, `CLOCK_MONOTONIC`, as Python's
    /// `time.time()` and `time.monotonic()` read them).
    pub fn now() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(f64::NAN, |d| d.as_secs_f64());
        Self {
            wall,
            mono: monotonic_s(),
        }
    }

    /// A replay's clocks: the frame's own time is both (offline analysis, tests).
    pub fn replay(t: f64) -> Self {
        Self { wall: t, mono: t }
    }
}

/// `CLOCK_MONOTONIC` in seconds.
pub fn monotonic_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Move `clock` forward to `to`, never back: an earlier or non-finite `to` leaves it.
pub fn advance(clock: &mut f64, to: f64) {
    if to.is_finite() && (clock.is_nan() || to > *clock) {
        *clock = to;
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (0 if the clock cannot be read).
pub fn monotonic_ns() -> u64 {
    let s = monotonic_s();
    if s.is_finite() && s > 0.0 {
        (s * 1e9) as u64
    } else {
        0
    }
}
