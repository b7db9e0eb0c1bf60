//! `vpp._core.Ticker`: the periodic ticker of `vpp_rt::ticker`, waiting with the GIL released.
//!
//! The deadline schedule and the statistics sit behind separate locks, and the schedule's
//! constants are copied out, so that another Python thread can read any property or
//! `stats()` while the loop thread is blocked in `wait()` (which takes the schedule lock
//! only between its sleeps).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use vpp_rt::ticker::{self, RealtimeStatus, Schedule, Step, Tick, TickStats};

use crate::errors::{config_err, config_error, ticker_err};

const NS: f64 = 1e-9;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in this module panics while holding a lock; if something did, the data is
    // still consistent (plain counters), so keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Periodic ticker on absolute CLOCK_MONOTONIC deadlines: tick k is due at
/// ``start + k * period_s``. ``wait()`` sleeps (GIL released) until the next deadline and
/// returns how late it woke, in seconds. A tick whose deadline had already passed is
/// returned at once and counted in ``overruns``; deadlines missed after it are skipped
/// (``skipped``), never burst through.
///
/// ``spin_us`` busy-waits the last microseconds before each deadline. ``realtime=True``
/// asks for SCHED_FIFO at ``priority`` for the constructing thread (construct the ticker
/// in the thread that will wait) and for mlockall; what was granted is in
/// ``realtime_status`` and the ticker works either way.
#[pyclass(module = "vpp._core", name = "Ticker", frozen)]
pub struct PyTicker {
    schedule: Mutex<Schedule>,
    stats: Mutex<TickStats>,
    realtime: Option<RealtimeStatus>,
    start_ns: u64,
    period_ns: u64,
    spin_ns: u64,
    warmup_ns: u64,
    next_deadline_ns: AtomicU64,
    waiting: AtomicBool,
}

impl PyTicker {
    /// Drive the schedule step by step. Each sleep releases the GIL, and the GIL is taken
    /// back after every warm-up step and held through the final spin (at most `spin_us`).
    /// Why: on the development VM, retaking the GIL once after a whole period with it
    /// released stalled the thread 0.2-0.9 ms *after* the deadline; retaken every 200 us
    /// during the warm-up, that cost falls before the deadline (docs/ticker.md).
    fn wait_tick(&self, py: Python<'_>) -> PyResult<Tick> {
        if self.waiting.swap(true, Ordering::AcqRel) {
            return Err(PyRuntimeError::new_err(
                "Ticker.wait() is already running in another thread",
            ));
        }
        let _done = ClearOnDrop(&self.waiting);
        loop {
            let step = lock(&self.schedule).step();
            let tick = match step {
                Step::Sleep(until) => {
                    match py.detach(|| ticker::sleep_until_interruptible(until)) {
                        Ok(()) => continue,
                        // Run Python's signal handlers (KeyboardInterrupt); if none raises,
                        // resume the same deadline.
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                            if let Err(err) = py.check_signals() {
                                lock(&self.schedule).abort_wait();
                                return Err(err);
                            }
                            continue;
                        }
                        Err(e) => {
                            lock(&self.schedule).abort_wait();
                            return Err(ticker_err(py, format!("clock_nanosleep failed: {e}")));
                        }
                    }
                }
                Step::Spin(deadline) => lock(&self.schedule).spin_to(deadline),
                Step::Done(tick) => tick,
            };
            self.next_deadline_ns
                .store(lock(&self.schedule).next_deadline_ns(), Ordering::Relaxed);
            lock(&self.stats).record(&tick);
            return Ok(tick);
        }
    }
}

/// Clears the "a thread is in wait()" flag however `wait_tick` ends.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The literal default of `spin_us` below (a literal, so it shows in `__text_signature__`).
const DEFAULT_SPIN_US: u128 = 100;
const _: () = assert!(ticker::DEFAULT_SPIN.as_micros() == DEFAULT_SPIN_US);

#[pymethods]
impl PyTicker {
    #[new]
    #[pyo3(signature = (period_s = 0.1, spin_us = 100, realtime = false, priority = 50, warmup_us = None))]
    fn new(
        py: Python<'_>,
        period_s: f64,
        spin_us: i64,
        realtime: bool,
        priority: i32,
        warmup_us: Option<i64>,
    ) -> PyResult<Self> {
        let period =
            ticker::duration_from_secs("period_s", period_s).map_err(|e| config_err(py, &e))?;
        let spin = u64::try_from(spin_us)
            .map(Duration::from_micros)
            .map_err(|_| config_error(py, "spin_us", format!("must be >= 0, got {spin_us}")))?;
        let realtime = if realtime {
            Some(ticker::try_realtime(priority).map_err(|e| config_err(py, &e))?)
        } else {
            None
        };
        // Anchor the schedule after the (slow) realtime requests, so tick 1 is a full period away.
        let mut schedule = Schedule::new(period, spin).map_err(|e| config_err(py, &e))?;
        if let Some(us) = warmup_us {
            let warmup = u64::try_from(us)
                .map(Duration::from_micros)
                .map_err(|_| config_error(py, "warmup_us", format!("must be >= 0, got {us}")))?;
            schedule = schedule
                .with_warmup(warmup)
                .map_err(|e| config_err(py, &e))?;
        }
        Ok(Self {
            start_ns: schedule.start_ns(),
            period_ns: schedule.period_ns(),
            spin_ns: schedule.spin_ns(),
            warmup_ns: schedule.warmup_ns(),
            next_deadline_ns: AtomicU64::new(schedule.next_deadline_ns()),
            waiting: AtomicBool::new(false),
            schedule: Mutex::new(schedule),
            stats: Mutex::new(TickStats::default()),
            realtime,
        })
    }

    /// Sleep until the next deadline (GIL released) and return the lateness in seconds.
    fn wait(&self, py: Python<'_>) -> PyResult<f64> {
        Ok(self.wait_tick(py)?.lateness_ns as f64 * NS)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<f64> {
        self.wait(py)
    }

    /// Ticks returned by ``wait()`` since creation or ``reset_stats()``.
    #[getter]
    fn count(&self) -> u64 {
        lock(&self.stats).count
    }

    /// Ticks whose deadline had passed before ``wait()`` was called.
    #[getter]
    fn overruns(&self) -> u64 {
        lock(&self.stats).overruns
    }

    /// Deadlines skipped after overruns.
    #[getter]
    fn skipped(&self) -> u64 {
        lock(&self.stats).skipped
    }

    /// Largest lateness seen, seconds.
    #[getter]
    fn max_lateness(&self) -> f64 {
        lock(&self.stats).max_ns as f64 * NS
    }

    /// The period, seconds.
    #[getter]
    fn period(&self) -> f64 {
        self.period_ns as f64 * NS
    }

    /// The final busy-wait before each deadline, microseconds.
    #[getter]
    fn spin_us(&self) -> u64 {
        self.spin_ns / 1000
    }

    /// The warm-up before each deadline (short sleeps that keep the CPU out of deep idle),
    /// microseconds.
    #[getter]
    fn warmup_us(&self) -> u64 {
        self.warmup_ns / 1000
    }

    /// Anchor of the schedule, in ``time.monotonic()`` seconds (tick k is due at
    /// ``start + k * period``).
    #[getter]
    fn start(&self) -> f64 {
        self.start_ns as f64 * NS
    }

    /// Deadline the next ``wait()`` aims for, in ``time.monotonic()`` seconds.
    #[getter]
    fn next_deadline(&self) -> f64 {
        self.next_deadline_ns.load(Ordering::Relaxed) as f64 * NS
    }

    /// Lateness statistics in seconds: count, overruns, skipped, mean, p50, p99, p999, max.
    /// Percentiles come from a log-linear histogram: they may overstate by up to ~3 %.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = lock(&self.stats).clone();
        let d = PyDict::new(py);
        d.set_item("count", s.count)?;
        d.set_item("overruns", s.overruns)?;
        d.set_item("skipped", s.skipped)?;
        d.set_item("mean", s.mean_ns() * NS)?;
        d.set_item("p50", s.percentile_ns(0.5) as f64 * NS)?;
        d.set_item("p99", s.percentile_ns(0.99) as f64 * NS)?;
        d.set_item("p999", s.percentile_ns(0.999) as f64 * NS)?;
        d.set_item("max", s.max_ns as f64 * NS)?;
        Ok(d)
    }

    /// Forget the statistics (the schedule is unchanged).
    fn reset_stats(&self) {
        lock(&self.stats).reset();
    }

    /// What ``realtime=True`` obtained: requested, priority, sched_fifo and mlockall
    /// (granted or not), and the reason for each refusal (None when granted).
    #[getter]
    fn realtime_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("requested", self.realtime.is_some())?;
        let (prio, fifo, mlock) = match &self.realtime {
            Some(r) => (Some(r.priority), Some(&r.sched_fifo), Some(&r.mlockall)),
            None => (None, None, None),
        };
        d.set_item("priority", prio)?;
        for (key, res) in [("sched_fifo", fifo), ("mlockall", mlock)] {
            d.set_item(key, res.is_some_and(|r| r.is_ok()))?;
            let why = match res {
                Some(Err(e)) => Some(e.to_string()),
                Some(Ok(())) => None,
                None => Some("not requested".to_owned()),
            };
            d.set_item(format!("{key}_error"), why)?;
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let s = lock(&self.stats);
        format!(
            "Ticker(period_s={}, spin_us={}, warmup_us={}, count={}, overruns={})",
            self.period_ns as f64 * NS,
            self.spin_ns / 1000,
            self.warmup_ns / 1000,
            s.count,
            s.overruns
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTicker>()
}
