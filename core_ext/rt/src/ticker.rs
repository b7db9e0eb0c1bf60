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
//! live in fixed-size arrays: `wait()` never allocates.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use crate::error::ConfigError;

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

const NS_PER_S: u64 = 1_000_000_000;

/// Read `CLOCK_MONOTONIC` in nanoseconds (the same clock as Python's `time.monotonic()`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * NS_PER_S + ts.tv_nsec as u64
}

/// Sleep until `CLOCK_MONOTONIC` reaches `deadline_ns`, resuming after signals.
pub fn sleep_until_ns(deadline_ns: u64) -> io::Result<()> {
    sleep_until(deadline_ns, true)
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
            libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut())
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
        return Err(ConfigError::new(field, format!("must be a positive finite number of seconds, got {secs}")));
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

/// Sub-buckets per power of two of the histogram: 2^5 = 32, so a percentile is exact to
/// within 1/32 (about 3 %) of its value.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for every `u64` nanosecond value, so nothing is ever clamped.
const BUCKETS: usize = ((64 - SUB_BITS as usize) * SUB as usize) + SUB as usize;

fn bucket_of(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    (u64::from(shift) * SUB + (v >> shift)) as usize
}

/// Largest value that falls into `bucket`.
fn bucket_upper(bucket: usize) -> u64 {
    let b = bucket as u64;
    if b < 2 * SUB {
        return b;
    }
    let shift = b / SUB - 1;
    let sub = b - shift * SUB;
    // u128: the top bucket's edge is 2^64 - 1.
    (((u128::from(sub) + 1) << shift) - 1) as u64
}

/// Running lateness statistics, fixed size, updated without allocation.
#[derive(Clone)]
pub struct TickStats {
    /// Ticks recorded.
    pub count: u64,
    /// Ticks whose deadline had passed before `wait()` was called.
    pub overruns: u64,
    /// Deadlines skipped after overruns (no tick was returned for them).
    pub skipped: u64,
    /// Largest lateness seen, nanoseconds.
    pub max_ns: u64,
    /// Sum of lateness, nanoseconds (for the mean).
    pub sum_ns: u128,
    hist: [u64; BUCKETS],
}

impl Default for TickStats {
    fn default() -> Self {
        Self { count: 0, overruns: 0, skipped: 0, max_ns: 0, sum_ns: 0, hist: [0; BUCKETS] }
    }
}

impl std::fmt::Debug for TickStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickStats")
            .field("count", &self.count)
            .field("overruns", &self.overruns)
            .field("skipped", &self.skipped)
            .field("max_ns", &self.max_ns)
            .field("p50_ns", &self.percentile_ns(0.5))
            .field("p99_ns", &self.percentile_ns(0.99))
            .finish()
    }
}

impl TickStats {
    /// Add one tick.
    pub fn record(&mut self, tick: &Tick) {
        self.count += 1;
        self.overruns += u64::from(tick.overrun);
        self.skipped += tick.skipped;
        self.max_ns = self.max_ns.max(tick.lateness_ns);
        self.sum_ns += u128::from(tick.lateness_ns);
        self.hist[bucket_of(tick.lateness_ns)] += 1;
    }

    /// Lateness at quantile `q` (0..=1), nanoseconds: the upper edge of the histogram
    /// bucket holding the `ceil(q * count)`-th smallest value, capped at the maximum seen
    /// (so it may overstate by up to ~3 %, never understate). 0 when nothing was recorded.
    pub fn percentile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (bucket, &n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_upper(bucket).min(self.max_ns);
            }
        }
        self.max_ns
    }

    /// Mean lateness, nanoseconds (0 when nothing was recorded).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum_ns as f64 / self.count as f64 }
    }

    /// Forget everything recorded.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The deadline grid and the sleeping, without statistics. [`Ticker`] pairs it with
/// [`TickStats`]; the binding keeps them apart so that statistics can be read while a
/// thread is blocked in `wait()`.
#[derive(Debug, Clone)]
pub struct Schedule {
    start_ns: u64,
    period_ns: u64,
    spin_ns: u64,
    /// Index of the next deadline.
    next: u64,
}

impl Schedule {
    /// A schedule anchored now: the first deadline is one period from now.
    pub fn new(period: Duration, spin: Duration) -> Result<Self, ConfigError> {
        Self::starting_at(monotonic_ns(), period, spin)
    }

    /// A schedule anchored at `start_ns` (`CLOCK_MONOTONIC` nanoseconds).
    pub fn starting_at(start_ns: u64, period: Duration, spin: Duration) -> Result<Self, ConfigError> {
        if !(MIN_PERIOD..=MAX_PERIOD).contains(&period) {
            return Err(ConfigError::new(
                "period_s",
                format!("{period:?} is outside {MIN_PERIOD:?}..={MAX_PERIOD:?}"),
            ));
        }
        if spin > MAX_SPIN || spin >= period {
            return Err(ConfigError::new(
                "spin_us",
                format!("{spin:?} must be at most {MAX_SPIN:?} and shorter than the period {period:?}"),
            ));
        }
        Ok(Self { start_ns, period_ns: period.as_nanos() as u64, spin_ns: spin.as_nanos() as u64, next: 1 })
    }

    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }

    pub fn spin_ns(&self) -> u64 {
        self.spin_ns
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
        self.wait_inner(true)
    }

    /// As [`wait`](Self::wait), but a signal arriving during the sleep returns an
    /// `ErrorKind::Interrupted` error with the schedule unchanged, so the caller can run
    /// its signal handlers (Python's KeyboardInterrupt) and call again for the same tick.
    pub fn wait_interruptible(&mut self) -> io::Result<Tick> {
        self.wait_inner(false)
    }

    fn wait_inner(&mut self, retry: bool) -> io::Result<Tick> {
        let k = self.next;
        let deadline = self.deadline_ns(k);
        let now = monotonic_ns();
        if now >= deadline {
            // Overrun: return at once, realign on the first grid point still ahead.
            let next = (now - self.start_ns) / self.period_ns + 1;
            self.next = next;
            return Ok(Tick { index: k, deadline_ns: deadline, lateness_ns: now - deadline, overrun: true, skipped: next - k - 1 });
        }
        ensure_timer_slack();
        let wake = deadline - self.spin_ns;
        if now < wake {
            sleep_until(wake, retry)?;
        }
        let mut now = monotonic_ns();
        while now < deadline {
            std::hint::spin_loop();
            now = monotonic_ns();
        }
        self.next = k + 1;
        Ok(Tick { index: k, deadline_ns: deadline, lateness_ns: now - deadline, overrun: false, skipped: 0 })
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
        Ok(Self { schedule: Schedule::new(period, spin)?, stats: TickStats::default() })
    }

    /// Block until the next deadline; record and return the tick.
    pub fn wait(&mut self) -> io::Result<Tick> {
        let tick = self.schedule.wait()?;
        self.stats.record(&tick);
        Ok(tick)
    }
}

/// What [`try_realtime`] obtained. Each field is `Ok(())` when granted, or the OS error.
#[derive(Debug)]
pub struct RealtimeStatus {
    /// `SCHED_FIFO` at `priority` for the calling thread.
    pub sched_fifo: Result<(), io::Error>,
    /// `mlockall(MCL_CURRENT | MCL_FUTURE)` for the whole process.
    pub mlockall: Result<(), io::Error>,
    /// The priority asked for.
    pub priority: i32,
}

/// Effective capability bit of the process (from /proc/self/status), false if unknown.
fn has_capability(bit: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

const CAP_IPC_LOCK: u32 = 14;

/// Ask for `SCHED_FIFO` at `priority` (1..=99 on Linux) for the calling thread only.
/// Refused without `CAP_SYS_NICE` or a sufficient `RLIMIT_RTPRIO`.
pub fn try_sched_fifo(priority: i32) -> Result<io::Result<()>, ConfigError> {
    // SAFETY: plain queries of constants.
    let (lo, hi) = unsafe {
        (libc::sched_get_priority_min(libc::SCHED_FIFO), libc::sched_get_priority_max(libc::SCHED_FIFO))
    };
    if !(lo..=hi).contains(&priority) {
        return Err(ConfigError::new("priority", format!("{priority} is outside the SCHED_FIFO range {lo}..={hi}")));
    }
    let param = libc::sched_param { sched_priority: priority };
    // SAFETY: `param` is valid; pthread_self() is the calling thread.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    Ok(if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) })
}

/// Lock all current and future pages of the process in RAM.
///
/// Attempted only when `RLIMIT_MEMLOCK` is unlimited or the process holds `CAP_IPC_LOCK`:
/// under a finite limit, `MCL_FUTURE` makes every later allocation beyond the limit fail,
/// which would turn a latency nicety into out-of-memory errors.
pub fn try_mlockall() -> io::Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    let unlimited = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0
        && lim.rlim_cur == libc::RLIM_INFINITY;
    if !unlimited && !has_capability(CAP_IPC_LOCK) {
        return Err(io::Error::other(format!(
            "not attempted: RLIMIT_MEMLOCK is {} bytes and CAP_IPC_LOCK is missing",
            lim.rlim_cur
        )));
    }
    // SAFETY: mlockall has no memory-safety preconditions.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Ask for `SCHED_FIFO` at `priority` for the calling thread and lock the process's
/// memory ([`try_sched_fifo`], [`try_mlockall`]). Either may be refused (non-root,
/// containers); the ticker works without them, only with more jitter. Errors only for a
/// priority outside the `SCHED_FIFO` range.
pub fn try_realtime(priority: i32) -> Result<RealtimeStatus, ConfigError> {
    let sched_fifo = try_sched_fifo(priority)?;
    Ok(RealtimeStatus { sched_fifo, mlockall: try_mlockall(), priority })
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
        let period = 2 * MS;
        let mut t = Ticker::new(period, Duration::ZERO).unwrap();
        let start = t.schedule.start_ns();
        let n = 200u64;
        let mut k = 0;
        while k < n {
            // A loop body of varying length must not shift later deadlines.
            busy(Duration::from_micros(100 + (k % 7) * 100));
            let tick = t.wait().unwrap();
            assert_eq!(tick.deadline_ns, start + tick.index * period.as_nanos() as u64);
            k = tick.index + tick.skipped;
        }
        let now = monotonic_ns();
        let expected = start + n * period.as_nanos() as u64;
        // Sleeping one period after each body would drift by the body time plus the
        // wake-up error every tick (>= 100 us * 200 = 20 ms by now); absolute deadlines
        // keep the 200th tick within one tick's jitter of start + 200 * period.
        assert!(now >= expected, "returned before the deadline");
        assert!(now - expected < 5 * MS.as_nanos() as u64, "200th tick {} ns late", now - expected);
        assert!(t.stats.overruns < n / 10, "{:?}", t.stats);
    }

    #[test]
    fn deadline_grid_is_start_plus_k_period() {
        let s = Schedule::starting_at(1_000, 10 * MS, Duration::ZERO).unwrap();
        assert_eq!(s.next_deadline_ns(), 1_000 + 10_000_000);
        assert_eq!(s.deadline_ns(1_000_000), 1_000 + 1_000_000 * 10_000_000);
    }

    #[test]
    fn overrun_is_counted_and_missed_deadlines_skipped() {
        let period = 5 * MS;
        let mut t = Ticker::new(period, Duration::ZERO).unwrap();
        t.wait().unwrap();
        // Work for 2.5 periods: deadlines 2 and 3 pass; 2 is returned late, 3 skipped.
        busy(period * 5 / 2);
        let late = t.wait().unwrap();
        assert!(late.overrun);
        assert_eq!(late.index, 2);
        assert!(late.lateness_ns >= period.as_nanos() as u64, "{late:?}");
        assert!(late.skipped >= 1, "{late:?}");
        assert_eq!(t.stats.overruns, 1);
        // Next tick is back on the grid and on time: no burst.
        let next = t.wait().unwrap();
        assert!(!next.overrun);
        assert_eq!(next.index, late.index + late.skipped + 1);
        assert_eq!(next.deadline_ns, t.schedule.start_ns() + next.index * period.as_nanos() as u64);
    }

    #[test]
    fn invalid_period_and_spin_are_config_errors() {
        assert_eq!(Ticker::new(Duration::ZERO, Duration::ZERO).unwrap_err().field, "period_s");
        assert_eq!(Ticker::new(Duration::from_micros(10), Duration::ZERO).unwrap_err().field, "period_s");
        assert_eq!(Ticker::new(Duration::from_secs(7200), Duration::ZERO).unwrap_err().field, "period_s");
        assert_eq!(Ticker::new(MS, MS).unwrap_err().field, "spin_us");
        assert_eq!(duration_from_secs("period", f64::NAN).unwrap_err().field, "period");
        assert!(duration_from_secs("period", -0.1).is_err());
        assert!(duration_from_secs("period", f64::INFINITY).is_err());
        assert_eq!(duration_from_secs("period", 0.1).unwrap(), Duration::from_millis(100));
    }

    #[test]
    fn spin_lands_on_the_deadline() {
        let mut t = Ticker::new(2 * MS, Duration::from_micros(200)).unwrap();
        for _ in 0..20 {
            let tick = t.wait().unwrap();
            assert!(tick.lateness_ns < 2 * MS.as_nanos() as u64);
        }
    }

    #[test]
    fn histogram_buckets_are_contiguous_and_percentiles_close() {
        let mut prev = 0;
        for v in [0u64, 1, 63, 64, 65, 127, 128, 1_000, 123_456, 10_000_000_000, u64::MAX] {
            let b = bucket_of(v);
            assert!(b >= prev && b < BUCKETS);
            assert!(bucket_upper(b) >= v, "{v}");
            if b > 0 {
                assert!(bucket_upper(b - 1) < v, "{v}");
            }
            prev = b;
        }
        let mut s = TickStats::default();
        for i in 1..=1000u64 {
            s.record(&Tick { index: i, deadline_ns: 0, lateness_ns: i * 1000, overrun: false, skipped: 0 });
        }
        let p50 = s.percentile_ns(0.5);
        assert!((500_000..=500_000 + 500_000 / 32).contains(&p50), "{p50}");
        assert_eq!(s.percentile_ns(1.0), 1_000_000);
        assert_eq!(s.max_ns, 1_000_000);
        s.reset();
        assert_eq!((s.count, s.percentile_ns(0.99)), (0, 0));
    }

    #[test]
    fn sched_fifo_answers_without_failing() {
        assert_eq!(try_sched_fifo(0).unwrap_err().field, "priority");
        assert!(try_realtime(100).is_err());
        // Granted or not depends on the host; it must answer either way. A throwaway
        // thread keeps SCHED_FIFO out of the test harness (mlockall is not tried here: it
        // would lock the whole test process).
        let granted = std::thread::spawn(|| try_sched_fifo(1).unwrap()).join().unwrap();
        if let Err(e) = granted {
            assert!(e.raw_os_error().is_some(), "{e}");
        }
    }
}
