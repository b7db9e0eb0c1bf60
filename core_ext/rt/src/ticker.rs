//! Periodic ticker for the control loop: absolute deadlines on `CLOCK_MONOTONIC`.
//!
//! Tick `k` is due at `start + k * period` (k = 1, 2, ...). Deadlines are computed from
//! the start, never by adding sleeps, so the schedule cannot drift however long each loop
//! body takes. Sleeping uses `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`, retried on
//! `EINTR` with the same absolute deadline; an optional final spin of `spin` nanoseconds
//! reads the clock in a busy loop up to the deadline.
//!
//! Overrun policy: when `wait()` is called and its deadline has already passed, the tick is
//! an overrun. It is returned at once (no sleep) with its true lateness, counted in
//! `overruns`, and every further deadline that has also passed is skipped (counted in
//! `skipped`): the next tick is the first grid point still in the future. A slow loop body
//! therefore never causes a burst of back-to-back catch-up ticks, and ticks stay on the
//! `start + k * period` grid.
//!
//! Statistics (count, overruns, skipped, max and a log-linear histogram for percentiles)
//! live in fixed-size arrays: `wait()` never allocates (`stats.rs`). Real-time privileges
//! (`SCHED_FIFO`, `mlockall`) are optional (`realtime.rs`).

use std::cell::Cell;
use std::io;
use std::time::Duration;

use crate::error::ConfigError;

mod realtime;
mod stats;

pub use realtime::{try_mlockall, try_realtime, try_sched_fifo, RealtimeStatus};
pub use stats::TickStats;

/// Shortest accepted period; below this the tick rate is dominated by syscall cost.
pub const MIN_PERIOD: Duration = Duration::from_micros(100);
/// Longest accepted period.
pub const MAX_PERIOD: Duration = Duration::from_secs(3600);
/// Longest accepted final spin (it burns a CPU core for that long every tick).
pub const MAX_SPIN: Duration = Duration::from_millis(1);
/// Default final spin. Measured on a 2-core VM (see docs/ticker.md): even with the timer
/// slack at 1 ns, `clock_nanosleep` wakes a median ~70 us late there; a 100 us spin takes
/// the median to ~10-30 us for 0.1 % of a core at 10 Hz. It does not help the p99, which
/// is set by preemption from other load.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);
/// Timer slack asked for the waiting thread. Linux's default of 50 us is added to every
/// sleep of a non-real-time thread; 1 ns turns it off.
pub const TIMER_SLACK_NS: u64 = 1;

/// Default warm-up before each deadline (capped at a quarter of the period).
pub const DEFAULT_WARMUP: Duration = Duration::from_millis(10);

/// Length of each short sleep during the warm-up.
pub const WARMUP_STEP: Duration = Duration::from_micros(200);

const NS_PER_S: u64 = 1_000_000_000;

/// Read `CLOCK_MONOTONIC` in nanoseconds (the same clock as Python's `time.monotonic()`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// Sleep until `deadline_ns`; a signal returns an `ErrorKind::Interrupted` error so the
/// caller can run its handlers (then call again: the deadline is absolute).
pub fn sleep_until_interruptible(deadline_ns: u64) -> io::Result<()> {
    sleep_until(deadline_ns, false)
}

/// Sleep until `deadline_ns`; on a signal either resume (`retry`) or return an
/// `ErrorKind::Interrupted` error so the caller can run its signal handlers.
fn sleep_until(deadline_ns: u64, retry: bool) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / NS_PER_S) as libc::time_t,
        tv_nsec: (deadline_ns % NS_PER_S) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec; a null remainder is allowed with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        match rc {
            0 => return Ok(()),
            // An absolute deadline makes the retry exact: nothing to recompute.
            libc::EINTR if retry => continue,
            err => return Err(io::Error::from_raw_os_error(err)),
        }
    }
}

thread_local! {
    static SLACK_SET: Cell<bool> = const { Cell::new(false) };
}

/// Set the calling thread's timer slack to `TIMER_SLACK_NS`, once per thread.
fn ensure_timer_slack() {
    SLACK_SET.with(|set| {
        if !set.get() {
            // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and affects this thread only.
            // A failure only leaves the default slack, so the result is not needed.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, TIMER_SLACK_NS as libc::c_ulong) };
            set.set(true);
        }
    });
}

/// Convert a period or duration in seconds to a `Duration`, refusing NaN, infinities and
/// values that are not positive.
pub fn duration_from_secs(field: &'static str, secs: f64) -> Result<Duration, ConfigError> {
    if !secs.is_finite() || secs <= 0.0 {
        return Err(ConfigError::new(
            field,
            format!("must be a positive finite number of seconds, got {secs}"),
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| ConfigError::new(field, format!("{secs} s: {e}")))
}

/// One tick, as returned by [`Ticker::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Index `k` of the deadline this tick answered (`deadline_ns = start + k * period`).
    pub index: u64,
    /// The deadline, `CLOCK_MONOTONIC` nanoseconds.
    pub deadline_ns: u64,
    /// How long after the deadline `wait()` returned, in nanoseconds.
    pub lateness_ns: u64,
    /// The deadline had already passed when `wait()` was called.
    pub overrun: bool,
    /// Deadlines skipped after this one because they had passed too.
    pub skipped: u64,
}

/// The deadline grid and the sleeping, without statistics. [`Ticker`] pairs it with
/// [`TickStats`]; the binding keeps them apart so that statistics can be read while a
/// thread is blocked in `wait()`.
#[derive(Debug, Clone)]
pub struct Schedule {
    start_ns: u64,
    period_ns: u64,
    spin_ns: u64,
    /// Warm-up before the deadline, spent in `WARMUP_STEP` sleeps (>= `spin_ns`).
    warmup_ns: u64,
    /// Index of the next deadline.
    next: u64,
    /// A wait is under way (between its first `step` and its tick): a deadline passed
    /// by then is a late wake-up, not an overrun.
    in_wait: bool,
}

/// What to do next in a wait, from [`Schedule::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Sleep until this `CLOCK_MONOTONIC` time (ns), then call `step` again.
    Sleep(u64),
    /// Busy-wait to this deadline with [`Schedule::spin_to`], which returns the tick.
    Spin(u64),
    /// The deadline had already passed when the wait began: this is the (overrun) tick.
    Done(Tick),
}

impl Schedule {
    /// A schedule anchored now: the first deadline is one period from now.
    pub fn new(period: Duration, spin: Duration) -> Result<Self, ConfigError> {
        Self::starting_at(monotonic_ns(), period, spin)
    }

    /// A schedule anchored at `start_ns` (`CLOCK_MONOTONIC` nanoseconds).
    pub fn starting_at(
        start_ns: u64,
        period: Duration,
        spin: Duration,
    ) -> Result<Self, ConfigError> {
        if !(MIN_PERIOD..=MAX_PERIOD).contains(&period) {
            return Err(ConfigError::new(
                "period_s",
                format!("{period:?} is outside {MIN_PERIOD:?}..={MAX_PERIOD:?}"),
            ));
        }
        if spin > MAX_SPIN || spin >= period {
            return Err(ConfigError::new(
                "spin_us",
                format!(
                    "{spin:?} must be at most {MAX_SPIN:?} and shorter than the period {period:?}"
                ),
            ));
        }
        let warmup = DEFAULT_WARMUP.min(period / 4).max(spin);
        Ok(Self {
            start_ns,
            period_ns: period.as_nanos() as u64,
            spin_ns: spin.as_nanos() as u64,
            warmup_ns: warmup.as_nanos() as u64,
            next: 1,
            in_wait: false,
        })
    }

    /// The same schedule with a warm-up of `warmup` before each deadline (zero: none).
    ///
    /// A CPU that has been idle for most of a period wakes slowly: deep C-state exit on
    /// bare metal, a descheduled vCPU in a VM (measured here: about 0.3 ms late from a
    /// 100 ms sleep and a further ~0.6 ms stall in the next few milliseconds). During the
    /// warm-up the thread sleeps in `WARMUP_STEP` steps, so the slow wake-up happens
    /// before the deadline instead of on it; each step costs one short wake-up, not CPU.
    pub fn with_warmup(mut self, warmup: Duration) -> Result<Self, ConfigError> {
        let ns = warmup.as_nanos() as u64;
        if ns >= self.period_ns / 2 {
            return Err(ConfigError::new(
                "warmup_us",
                format!("{warmup:?} must be shorter than half the period"),
            ));
        }
        self.warmup_ns = ns.max(self.spin_ns);
        Ok(self)
    }

    /// The anchor, `CLOCK_MONOTONIC` nanoseconds (deadline 0; tick 1 is one period later).
    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// The period, nanoseconds.
    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }

    /// The final busy-wait before each deadline, nanoseconds.
    pub fn spin_ns(&self) -> u64 {
        self.spin_ns
    }

    /// The warm-up before each deadline, nanoseconds (never shorter than the spin).
    pub fn warmup_ns(&self) -> u64 {
        self.warmup_ns
    }

    /// Deadline of tick `k`.
    pub fn deadline_ns(&self, k: u64) -> u64 {
        self.start_ns + k * self.period_ns
    }

    /// Deadline the next `wait()` will aim for.
    pub fn next_deadline_ns(&self) -> u64 {
        self.deadline_ns(self.next)
    }

    /// Block until the next deadline and return the tick (see the module docs for the
    /// overrun policy). Errors only if the clock cannot be slept on.
    pub fn wait(&mut self) -> io::Result<Tick> {
        loop {
            match self.step() {
                Step::Sleep(until) => {
                    // Signals are retried inside; any other error abandons this wait.
                    if let Err(e) = sleep_until(until, true) {
                        self.abort_wait();
                        return Err(e);
                    }
                }
                Step::Spin(deadline) => return Ok(self.spin_to(deadline)),
                Step::Done(tick) => return Ok(tick),
            }
        }
    }

    /// One step of a wait, for callers that do their own sleeping between steps (the
    /// Python binding retakes the GIL after every warm-up sleep: see docs/ticker.md).
    /// Call it until it returns `Spin` or `Done`; `wait` is exactly that loop.
    pub fn step(&mut self) -> Step {
        let k = self.next;
        let deadline = self.deadline_ns(k);
        let now = monotonic_ns();
        if !self.in_wait && now >= deadline {
            // Overrun: return at once, realign on the first grid point still ahead.
            let next = (now - self.start_ns) / self.period_ns + 1;
            self.next = next;
            return Step::Done(Tick {
                index: k,
                deadline_ns: deadline,
                lateness_ns: now - deadline,
                overrun: true,
                skipped: next - k - 1,
            });
        }
        if !self.in_wait {
            ensure_timer_slack();
            self.in_wait = true;
        }
        let spin_from = deadline - self.spin_ns;
        let warm_from = deadline - self.warmup_ns;
        if now < warm_from {
            return Step::Sleep(warm_from);
        }
        // Warm-up: short sleeps up to the spin, so that a slow wake-up from a long idle
        // (see `with_warmup`) is absorbed before the deadline.
        if now < spin_from {
            return Step::Sleep((now + WARMUP_STEP.as_nanos() as u64).min(spin_from));
        }
        Step::Spin(deadline)
    }

    /// Give up a wait begun with `step` (the caller's sleep was interrupted and it will
    /// not resume): the next `step` starts afresh, overrun check included.
    pub fn abort_wait(&mut self) {
        self.in_wait = false;
    }

    /// Busy-wait to `deadline` (from `Step::Spin`) and return the tick.
    pub fn spin_to(&mut self, deadline: u64) -> Tick {
        let mut now = monotonic_ns();
        while now < deadline {
            std::hint::spin_loop();
            now = monotonic_ns();
        }
        let k = self.next;
        self.next = k + 1;
        self.in_wait = false;
        Tick {
            index: k,
            deadline_ns: deadline,
            lateness_ns: now - deadline,
            overrun: false,
            skipped: 0,
        }
    }
}

/// A periodic ticker with running statistics.
#[derive(Debug, Clone)]
pub struct Ticker {
    pub schedule: Schedule,
    pub stats: TickStats,
}

impl Ticker {
    /// A ticker whose first deadline is one `period` from now, with a final busy-wait of
    /// `spin` before each deadline (`Duration::ZERO` for none).
    pub fn new(period: Duration, spin: Duration) -> Result<Self, ConfigError> {
        Ok(Self {
            schedule: Schedule::new(period, spin)?,
            stats: TickStats::default(),
        })
    }

    /// Block until the next deadline; record and return the tick.
    pub fn wait(&mut self) -> io::Result<Tick> {
        let tick = self.schedule.wait()?;
        self.stats.record(&tick);
        Ok(tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn busy(d: Duration) {
        let end = monotonic_ns() + d.as_nanos() as u64;
        while monotonic_ns() < end {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn deadlines_are_absolute_and_do_not_drift() {
        // 10 ms: long enough that a shared VM's multi-millisecond wake-ups rarely overrun.
        let period = 10 * MS;
        let mut t = Ticker::new(period, Duration::ZERO).unwrap();
        let start = t.schedule.start_ns();
        let n = 100u64;
        let mut k = 0;
        while k < n {
            // A loop body of varying length must not shift later deadlines.
            busy(Duration::from_micros(100 + (k % 7) * 100));
            let tick = t.wait().unwrap();
            assert_eq!(
                tick.deadline_ns,
                start + tick.index * period.as_nanos() as u64
            );
            k = tick.index + tick.skipped;
        }
        let now = monotonic_ns();
        let expected = start + n * period.as_nanos() as u64;
        // Sleeping one period after each body would drift by the body time plus the
        // wake-up error every tick (~400 us * 100 = 40 ms by now); absolute deadlines
        // keep the 100th tick within one tick's jitter of start + 100 * period (the bound
        // is loose for loaded CI machines).
        assert!(now >= expected, "returned before the deadline");
        assert!(
            now - expected < 20 * MS.as_nanos() as u64,
            "100th tick {} ns late",
            now - expected
        );
        assert!(t.stats.overruns < n / 4, "{:?}", t.stats);
    }

    #[test]
    fn a_deadline_passed_during_a_wait_is_late_not_an_overrun() {
        let mut s = Schedule::new(2 * MS, Duration::ZERO).unwrap();
        let Step::Sleep(_) = s.step() else {
            panic!("a fresh schedule sleeps first")
        };
        busy(3 * MS); // the caller's sleep overshot the deadline
        let Step::Spin(deadline) = s.step() else {
            panic!("inside a wait a passed deadline is spun to, not an overrun")
        };
        let tick = s.spin_to(deadline);
        assert!(!tick.overrun && tick.lateness_ns >= MS.as_nanos() as u64);
        // Abandoned waits start afresh: now the passed deadline is an overrun.
        let Step::Sleep(_) = s.step() else {
            panic!("next deadline is ahead")
        };
        s.abort_wait();
        busy(3 * MS);
        let Step::Done(late) = s.step() else {
            panic!("after abort_wait a passed deadline is an overrun")
        };
        assert!(late.overrun);
    }

    #[test]
    fn warmup_defaults_and_limits() {
        let s = Schedule::new(100 * MS, Duration::from_micros(100)).unwrap();
        assert_eq!(s.warmup_ns(), DEFAULT_WARMUP.as_nanos() as u64);
        let short = Schedule::new(8 * MS, Duration::from_micros(100)).unwrap();
        assert_eq!(short.warmup_ns(), 2_000_000, "capped at a quarter period");
        let none = short.clone().with_warmup(Duration::ZERO).unwrap();
        assert_eq!(none.warmup_ns(), 100_000, "never shorter than the spin");
        assert_eq!(
            Schedule::new(8 * MS, Duration::ZERO)
                .unwrap()
                .with_warmup(4 * MS)
                .unwrap_err()
                .field,
            "warmup_us"
        );
    }

    #[test]
    fn warmup_keeps_the_deadline_grid() {
        let s = Schedule::new(4 * MS, Duration::from_micros(50)).unwrap();
        let mut s = s.with_warmup(Duration::from_micros(1500)).unwrap();
        let start = s.start_ns();
        for k in 1..=10 {
            let tick = s.wait().unwrap();
            assert!(monotonic_ns() >= tick.deadline_ns);
            assert_eq!(tick.deadline_ns, start + tick.index * 4_000_000);
            assert!(tick.index >= k);
        }
    }

    #[test]
    fn deadline_grid_is_start_plus_k_period() {
        let s = Schedule::starting_at(1_000, 10 * MS, Duration::ZERO).unwrap();
        assert_eq!(s.next_deadline_ns(), 1_000 + 10_000_000);
        assert_eq!(s.deadline_ns(1_000_000), 1_000 + 1_000_000 * 10_000_000);
    }

    #[test]
    fn overrun_is_counted_and_missed_deadlines_skipped() {
        // 20 ms periods leave a 10 ms margin before the realigned deadline below, so a
        // loaded machine does not turn the on-time tick into an overrun.
        let period = 20 * MS;
        let mut t = Ticker::new(period, Duration::ZERO).unwrap();
        let first = t.wait().unwrap();
        // Work for 2.5 periods: the next deadline is returned late, the one after skipped.
        busy(period * 5 / 2);
        let late = t.wait().unwrap();
        assert!(late.overrun);
        assert_eq!(late.index, first.index + 1);
        assert!(late.lateness_ns >= period.as_nanos() as u64, "{late:?}");
        assert!(late.skipped >= 1, "{late:?}");
        assert_eq!(t.stats.overruns, 1 + u64::from(first.overrun));
        // Next tick is back on the grid and on time: no burst.
        let next = t.wait().unwrap();
        assert!(!next.overrun);
        assert_eq!(next.index, late.index + late.skipped + 1);
        assert_eq!(
            next.deadline_ns,
            t.schedule.start_ns() + next.index * period.as_nanos() as u64
        );
    }

    #[test]
    fn invalid_period_and_spin_are_config_errors() {
        assert_eq!(
            Ticker::new(Duration::ZERO, Duration::ZERO)
                .unwrap_err()
                .field,
            "period_s"
        );
        assert_eq!(
            Ticker::new(Duration::from_micros(10), Duration::ZERO)
                .unwrap_err()
                .field,
            "period_s"
        );
        assert_eq!(
            Ticker::new(Duration::from_secs(7200), Duration::ZERO)
                .unwrap_err()
                .field,
            "period_s"
        );
        assert_eq!(Ticker::new(MS, MS).unwrap_err().field, "spin_us");
        assert_eq!(
            duration_from_secs("period", f64::NAN).unwrap_err().field,
            "period"
        );
        assert!(duration_from_secs("period", -0.1).is_err());
        assert!(duration_from_secs("period", f64::INFINITY).is_err());
        assert_eq!(
            duration_from_secs("period", 0.1).unwrap(),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn spin_never_returns_before_the_deadline() {
        // How late a wake-up is depends on the machine (a shared VM can be milliseconds
        // late), so this checks what the code guarantees: with a final spin, wait()
        // returns at or after the deadline and reports the lateness it measured there.
        let mut t = Ticker::new(2 * MS, Duration::from_micros(200)).unwrap();
        for _ in 0..20 {
            let tick = t.wait().unwrap();
            let after = monotonic_ns();
            assert!(after >= tick.deadline_ns);
            assert!(tick.lateness_ns <= after - tick.deadline_ns);
        }
    }
}
