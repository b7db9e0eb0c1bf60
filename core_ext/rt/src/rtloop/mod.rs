//! The real-time field loop: PMU stream in -> every unit's pipeline -> setpoint writes,
//! in one thread owned by the core, with no Python on the path.
//!
//! ```text
//!  PMU --C37.118 TCP/UDP--> [loop thread] decode once -> Pipeline::step per unit
//!                                |            -> Modbus TCP write (units with a target)
//!                                |            -> watchdog register every period
//!                                +--> Ring<Record> (bounded; Python drains)
//!  Python: pipelines shared behind a Mutex (telemetry, base, droop, anchor, reset: each
//!          a short Rust call with the GIL irrelevant), `UnitShared` atomics (writable,
//!          resync), `LoopShared` counters and the alive stamp.
//! ```
//!
//! The loop never waits on Python: the only lock it takes is a unit's pipeline mutex,
//! which Python-side code holds only inside a Rust method of a few microseconds (never
//! while running bytecode, so a GIL hog or a garbage-collection storm cannot hold it),
//! with priority inheritance (`PiMutex`), so a CPU hog cannot stretch those microseconds.
//! Connecting (the PMU, each inverter) happens in a connector thread, so a dead device
//! never stalls the loop; a write that is not answered within the write timeout resets
//! that connection only. An inverter on a serial line (Modbus RTU) is a tty the loop
//! opens (through the connector) and owns: the unit's Python driver polls it through
//! the loop (`exchange`), the setpoint and watchdog writes going first. Setpoints are the pipelines' decisions, already clamped to the
//! safety envelope and its ramp; a value the point cannot encode is not written.
//!
//! If the loop stops stepping (a stall, or the thread ended), the watchdog register it
//! refreshes stops changing and an inverter that has one falls back by itself; the
//! Python controller sees the alive stamp age and reports it (docs/realtime-loop.md).

mod connect;
pub mod exchange;
pub mod modbus;
mod pimutex;
mod pmu;
pub mod ring;
pub mod rtu;
mod run;
pub mod sched;
pub mod serial;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::thread::JoinHandle;

use crate::error::ConfigError;
use crate::pipeline::{Decision, Pipeline};

pub use modbus::{RegType, RegisterPoint};
pub use pimutex::{PiGuard, PiMutex};
pub use ring::Ring;
pub use serial::{Parity, SerialSpec};

/// How the loop reaches an inverter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP; the target's address is "host:port".
    Tcp,
    /// Modbus RTU on a serial line; the target's address is the tty's path.
    Rtu(SerialSpec),
}

/// Where the PMU stream comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PmuTransport {
    /// A TCP client: ask for CFG-2, then turn data on.
    Tcp,
    /// Data frames as UDP datagrams to `bind` ("host:port"); the configuration is
    /// fetched once over TCP from the PMU's address (or arrives in a datagram).
    Udp { bind: String },
}

/// The PMU source.
#[derive(Debug, Clone, PartialEq)]
pub struct PmuSpec {
    /// "host:port" of the PMU's TCP server.
    pub address: String,
    pub idcode: u16,
    pub transport: PmuTransport,
    /// Which PMU block of a data frame carries the frequency.
    pub pmu_index: usize,
    /// No byte for this long: the connection is dropped and made again.
    pub read_timeout_s: f64,
}

/// A unit's inverter reached by the loop over Modbus TCP or Modbus RTU.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusTarget {
    /// "host:port" (TCP), or the serial port's path (RTU).
    pub address: String,
    pub transport: Transport,
    pub unit_id: u8,
    /// The active power setpoint's point, from the register map file.
    pub setpoint: RegisterPoint,
    /// A watchdog counter register the loop writes every `watchdog_period_s`.
    pub watchdog: Option<RegisterPoint>,
    pub watchdog_period_s: f64,
    /// A watchdog timeout register written (with `watchdog_timeout_s`) on each connect.
    pub watchdog_timeout: Option<RegisterPoint>,
    pub watchdog_timeout_s: f64,
    /// A setpoint within this of the last one written is not written again.
    pub threshold_kw: f64,
    /// Words written in the same request just before the setpoint's registers (the
    /// request then starts at `setpoint.address - prefix.len()`): SunSpec 704's
    /// `WSetEna` and `WSetMod` before `WSet`, so that the device never runs a setpoint
    /// in another mode. Modbus TCP only; at most `MAX_PREFIX` words.
    pub prefix: Vec<u16>,
    /// Register runs read on each connect and compared with these words before anything
    /// is written (a SunSpec device's marker, model header and scale factor): a device
    /// that answers otherwise (another layout at the same address) is never written;
    /// the connection is dropped and tried again, counted in `layout_mismatches`.
    /// Modbus TCP only; at most `MAX_VERIFY` runs of 1-`MAX_VERIFY_WORDS` words.
    pub verify: Vec<(u16, Vec<u16>)>,
    /// Writes made on each connect once the layout check passed, before any setpoint,
    /// after the watchdog timeout (SunSpec 704's reversion: `WSetRvrt` = 0,
    /// `WSetEnaRvrt`, `WSetRvrtTms`). Modbus TCP only; at most `MAX_VERIFY` of
    /// 1-`MAX_WRITE_WORDS` words.
    pub init: Vec<(u16, Vec<u16>)>,
    /// 0: off. Else the last setpoint is written again when none was for this long,
    /// while the unit is writable: the heartbeat of a device whose setpoint reverts
    /// when not written in time (SunSpec's `WSetRvrtTms`), so that a stalled loop lets
    /// it fall back as a watchdog register would.
    pub refresh_s: f64,
}

/// Most words of `ModbusTarget::prefix`.
pub const MAX_PREFIX: usize = 6;
/// Most runs of `ModbusTarget::verify` (and writes of `init`), and words in one read.
pub const MAX_VERIFY: usize = 8;
pub const MAX_VERIFY_WORDS: usize = 16;

impl ModbusTarget {
    /// Check the points and settings (the loop refuses a target that fails).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.setpoint.validate("setpoint")?;
        if let Some(w) = &self.watchdog {
            w.validate("watchdog")?;
        }
        if let Some(w) = &self.watchdog_timeout {
            w.validate("watchdog_timeout")?;
        }
        if !(self.watchdog_period_s.is_finite() && self.watchdog_period_s > 0.0) {
            return Err(ConfigError::new("watchdog_period_s", "must be positive"));
        }
        if !(self.threshold_kw.is_finite() && self.threshold_kw >= 0.0) {
            return Err(ConfigError::new("threshold_kw", "must be 0 or more"));
        }
        let tcp = self.transport == Transport::Tcp;
        if !self.prefix.is_empty() {
            if !tcp {
                return Err(ConfigError::new("prefix", "is for Modbus TCP targets only"));
            }
            if self.prefix.len() > MAX_PREFIX {
                return Err(ConfigError::new(
                    "prefix",
                    format!("at most {MAX_PREFIX} words, got {}", self.prefix.len()),
                ));
            }
            if usize::from(self.setpoint.address) < self.prefix.len() {
                return Err(ConfigError::new(
                    "prefix",
                    format!(
                        "{} words do not fit before register {}",
                        self.prefix.len(),
                        self.setpoint.address
                    ),
                ));
            }
        }
        check_runs("verify", &self.verify, tcp, MAX_VERIFY_WORDS)?;
        check_runs("init", &self.init, tcp, modbus::MAX_WRITE_WORDS)?;
        if let Some(p) = &self.watchdog_timeout {
            // Written on each connect: a value the point cannot hold is a setting error.
            if p.encode(self.watchdog_timeout_s).is_none() {
                return Err(ConfigError::new(
                    "watchdog_timeout_s",
                    format!("{} does not fit the point", self.watchdog_timeout_s),
                ));
            }
        }
        if !(self.refresh_s.is_finite() && (self.refresh_s == 0.0 || self.refresh_s >= 0.01)) {
            return Err(ConfigError::new(
                "refresh_s",
                format!("must be 0 (off) or at least 0.01 s, got {}", self.refresh_s),
            ));
        }
        if let Transport::Rtu(serial) = &self.transport {
            serial.validate()?;
        }
        Ok(())
    }
}

/// Register runs `(address, words)` of a target (`verify` reads, `init` writes): Modbus
/// TCP only, at most `MAX_VERIFY` of 1-`max_words` words, inside the register space.
fn check_runs(
    field: &'static str,
    runs: &[(u16, Vec<u16>)],
    tcp: bool,
    max_words: usize,
) -> Result<(), ConfigError> {
    if !runs.is_empty() && !tcp {
        return Err(ConfigError::new(field, "is for Modbus TCP targets only"));
    }
    if runs.len() > MAX_VERIFY {
        return Err(ConfigError::new(
            field,
            format!("at most {MAX_VERIFY} runs, got {}", runs.len()),
        ));
    }
    for (address, words) in runs {
        if words.is_empty() || words.len() > max_words {
            return Err(ConfigError::new(
                field,
                format!("a run has 1-{max_words} words, got {}", words.len()),
            ));
        }
        if usize::from(*address) + words.len() > 0x1_0000 {
            return Err(ConfigError::new(
                field,
                format!("run at {address} goes past register 65535"),
            ));
        }
    }
    Ok(())
}

/// One unit of the loop.
pub struct UnitSpec {
    pub pipeline: Arc<PiMutex<Pipeline>>,
    /// None: the loop steps the unit and Python writes its setpoints from the ring.
    pub target: Option<ModbusTarget>,
}

/// Settings of the loop itself.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSpec {
    pub pmu: PmuSpec,
    /// No admitted frame for this long: the units step without a measurement...
    pub stale_s: f64,
    /// ...every this often.
    pub idle_period_s: f64,
    /// A write unanswered for this long resets the connection.
    pub write_timeout_s: f64,
    /// Records the ring holds.
    pub ring_size: usize,
    /// SCHED_FIFO priority (1-99) for the loop thread; 0: do not ask.
    pub priority: i32,
    /// Lock the process's memory (mlockall MCL_CURRENT) when the loop starts.
    pub lock_memory: bool,
    /// Busy-wait this long either side of the next frame's expected arrival (0: never),
    /// so that the CPU is awake when it comes: waking an idle CPU (a VM's vCPU above all)
    /// is what the tail of the frame-to-setpoint time is made of. Costs about twice this
    /// per frame period of one core.
    pub spin_s: f64,
    /// Reconnect backoff.
    pub backoff_initial_s: f64,
    pub backoff_max_s: f64,
}

impl LoopSpec {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pos = |name: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::new(name, format!("must be positive, got {v}")))
            }
        };
        pos("stale_s", self.stale_s)?;
        pos("idle_period_s", self.idle_period_s)?;
        pos("write_timeout_s", self.write_timeout_s)?;
        pos("read_timeout_s", self.pmu.read_timeout_s)?;
        pos("backoff_initial_s", self.backoff_initial_s)?;
        pos("backoff_max_s", self.backoff_max_s)?;
        if !(self.spin_s.is_finite() && (0.0..=0.005).contains(&self.spin_s)) {
            return Err(ConfigError::new(
                "spin_s",
                format!("must be within 0-0.005 s, got {}", self.spin_s),
            ));
        }
        if !(0..=99).contains(&self.priority) {
            return Err(ConfigError::new(
                "priority",
                format!("must be within 0-99, got {}", self.priority),
            ));
        }
        Ok(())
    }
}

/// Why a record was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// An admitted frame's decision.
    Frame = 0,
    /// A step without a measurement (no admitted frame for `stale_s`).
    Idle = 1,
}

/// One decision as the loop made (and maybe wrote) it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    pub unit: u16,
    pub kind: RecordKind,
    pub decision: Decision,
    /// Monotonic s when the frame's last byte was read (the idle tick for `Idle`).
    pub received: f64,
    /// The loop sends this setpoint to the inverter (it changed beyond the threshold
    /// and the unit is writable); false for a unit whose setpoints Python writes.
    pub written: bool,
}

/// Counters and state of one unit, shared with Python (all atomics).
#[derive(Default)]
pub struct UnitShared {
    /// Enabled, online and anchored: the loop may write (set by Python).
    pub writable: AtomicBool,
    /// Write the next setpoint whatever it is (set by Python; the loop clears it).
    pub resync: AtomicBool,
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub writes: AtomicU64,
    pub acks: AtomicU64,
    pub exceptions: AtomicU64,
    pub timeouts: AtomicU64,
    pub io_errors: AtomicU64,
    /// Serial line: replies with a wrong CRC, device id or function (the request failed).
    pub bad_replies: AtomicU64,
    /// Serial line: Python's transactions the loop sent (`exchange`).
    pub transactions: AtomicU64,
    pub unencodable: AtomicU64,
    pub watchdog_writes: AtomicU64,
    /// Writes not sent because one was still unanswered (the newest value waits).
    pub coalesced: AtomicU64,
    /// The last setpoint the device acknowledged (f64 bits; NaN before the first).
    pub acked_kw: AtomicU64,
    /// Sum and count of write round trips (ns), for the mean.
    pub rtt_ns_sum: AtomicU64,
    pub step_errors: AtomicU64,
    /// Python's requests to a serial line's device, carried by the loop.
    pub exchange: exchange::Exchange,
    /// The loop has a target for the unit (it writes its setpoints).
    pub has_target: AtomicBool,
    /// The connection's `verify` runs all matched (true at once without any).
    pub verified: AtomicBool,
    /// Connections whose `verify` read found other words (or an exception).
    pub layout_mismatches: AtomicU64,
    /// A target Python gave after start (`set_target`), waiting for the loop to take it:
    /// `Some(None)` takes the unit's target away. The loop only `try_lock`s it.
    new_target: Mutex<Option<Option<ModbusTarget>>>,
    target_changed: AtomicBool,
}

impl UnitShared {
    /// Give the loop `target` for this unit (None: it stops writing it), replacing the
    /// one it has: the old connection is closed and the new one verified before any
    /// write. Modbus TCP targets only (a serial line is the loop's from start to end).
    pub fn set_target(&self, target: Option<ModbusTarget>) -> Result<(), ConfigError> {
        if let Some(t) = &target {
            t.validate()?;
            if t.transport != Transport::Tcp {
                return Err(ConfigError::new(
                    "transport",
                    "only a Modbus TCP target can be given after start",
                ));
            }
        }
        *self.new_target.lock().unwrap_or_else(|e| e.into_inner()) = Some(target);
        self.target_changed.store(true, Ordering::Release);
        Ok(())
    }

    /// The target waiting, if any (never waits: a busy mailbox is looked at again on the
    /// next iteration).
    fn take_target(&self) -> Option<Option<ModbusTarget>> {
        if !self.target_changed.load(Ordering::Acquire) {
            return None;
        }
        let mut g = self.new_target.try_lock().ok()?;
        self.target_changed.store(false, Ordering::Release);
        g.take()
    }
}

/// Counters and state of the loop, shared with Python (all atomics).
pub struct LoopShared {
    pub stop: AtomicBool,
    pub running: AtomicBool,
    /// CLOCK_MONOTONIC ns at the loop's last iteration.
    pub alive_ns: AtomicU64,
    pub pmu_connected: AtomicBool,
    pub pmu_connects: AtomicU64,
    pub frames: AtomicU64,
    pub data_frames: AtomicU64,
    pub configs: AtomicU64,
    /// Data frames no unit admitted.
    pub refused: AtomicU64,
    pub frame_errors: [AtomicU64; crate::FrameErrorKind::ALL.len()],
    pub idle_steps: AtomicU64,
    /// Longest time from a frame's arrival to the last write it caused, ns.
    pub max_frame_ns: AtomicU64,
    /// Whether SCHED_FIFO and mlockall were granted (set once at start).
    pub realtime: AtomicBool,
    pub memory_locked: AtomicBool,
    /// Why the loop ended if it ended by itself (set once).
    pub ended: Mutex<Option<String>>,
    /// The most recent connection or protocol problem, for the status command.
    pub last_error: Mutex<String>,
    /// Fault injection (tests, commissioning): stall the loop this long once, in ms...
    pub inject_stall_ms: AtomicU64,
    /// ...or make it panic (the thread ends; Python takes the frame path over).
    pub inject_panic: AtomicBool,
    /// Iterations that came later than `RESYNC_GAP_S` after the one before (a stall):
    /// every unit's next setpoint is then written whatever it is.
    pub gaps: AtomicU64,
}

impl Default for LoopShared {
    fn default() -> Self {
        Self {
            stop: AtomicBool::new(false),
            running: AtomicBool::new(false),
            alive_ns: AtomicU64::new(0),
            pmu_connected: AtomicBool::new(false),
            pmu_connects: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            data_frames: AtomicU64::new(0),
            configs: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            frame_errors: Default::default(),
            idle_steps: AtomicU64::new(0),
            max_frame_ns: AtomicU64::new(0),
            realtime: AtomicBool::new(false),
            memory_locked: AtomicBool::new(false),
            ended: Mutex::new(None),
            last_error: Mutex::new(String::new()),
            inject_stall_ms: AtomicU64::new(0),
            inject_panic: AtomicBool::new(false),
            gaps: AtomicU64::new(0),
        }
    }
}

impl LoopShared {
    /// Note a problem for the status (never blocks the loop: skipped if contended).
    pub fn note(&self, msg: impl FnOnce() -> String) {
        if let Ok(mut g) = self.last_error.try_lock() {
            *g = msg();
        }
    }
}

/// The running loop: its thread, and what it shares.
pub struct RtLoop {
    pub shared: Arc<LoopShared>,
    pub units: Vec<Arc<UnitShared>>,
    pub ring: Arc<Ring<Record>>,
    /// Behind a mutex so that `stop` takes `&self`: Python may stop the loop while
    /// another thread waits in a transaction on it.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl RtLoop {
    /// Start the loop's thread (and its connector thread).
    pub fn start(spec: LoopSpec, units: Vec<UnitSpec>) -> Result<Self, ConfigError> {
        spec.validate()?;
        if units.is_empty() || units.len() > usize::from(u16::MAX) {
            return Err(ConfigError::new("units", "need 1 to 65535 units"));
        }
        for u in &units {
            if let Some(t) = &u.target {
                t.validate()?;
                if let Transport::Rtu(_) = &t.transport {
                    // One request in flight per line: two units on one port would need
                    // the line shared between their links (not done; see the docs).
                    let same = units.iter().filter_map(|v| v.target.as_ref()).filter(|v| {
                        matches!(v.transport, Transport::Rtu(_)) && v.address == t.address
                    });
                    if same.count() > 1 {
                        return Err(ConfigError::new(
                            "address",
                            format!("serial port {} is used by more than one unit", t.address),
                        ));
                    }
                }
            }
        }
        let fill = {
            let p = units[0].pipeline.lock();
            Record {
                unit: 0,
                kind: RecordKind::Idle,
                decision: *p.decision(),
                received: f64::NAN,
                written: false,
            }
        };
        let shared = Arc::new(LoopShared::default());
        let unit_shared: Vec<Arc<UnitShared>> = units
            .iter()
            .map(|spec| {
                let u = UnitShared::default();
                u.acked_kw.store(f64::NAN.to_bits(), Ordering::Relaxed);
                u.has_target.store(spec.target.is_some(), Ordering::Relaxed);
                Arc::new(u)
            })
            .collect();
        let ring = Arc::new(Ring::new(spec.ring_size + 1, fill));
        shared.running.store(true, Ordering::Release);
        shared
            .alive_ns
            .store(crate::clock::monotonic_ns(), Ordering::Release);
        let state = run::Loop::new(
            spec,
            units,
            Arc::clone(&shared),
            unit_shared.clone(),
            Arc::clone(&ring),
        );
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vpp-rt-loop".into())
            .spawn(move || run::run(state, ready_tx))
            .map_err(|e| ConfigError::new("thread", format!("cannot start: {e}")))?;
        // The real-time settings are applied (or refused) before `start` returns, so that
        // the caller can report them; a thread that dies first closes the channel.
        let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(2));
        Ok(Self {
            shared,
            units: unit_shared,
            ring,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Ask the loop to end and wait for it.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for RtLoop {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(setpoint_address: u16) -> ModbusTarget {
        ModbusTarget {
            address: "127.0.0.1:502".into(),
            transport: Transport::Tcp,
            unit_id: 1,
            setpoint: RegisterPoint {
                address: setpoint_address,
                kind: RegType::I32,
                scale: 0.001,
                negate: false,
                little_words: false,
            },
            watchdog: None,
            watchdog_period_s: 0.2,
            watchdog_timeout: None,
            watchdog_timeout_s: 2.0,
            threshold_kw: 0.0,
            prefix: vec![1, 1],
            verify: vec![(40000, vec![0x5375, 0x6E53]), (40100, vec![704, 57])],
            init: vec![(40114, vec![0, 0]), (40119, vec![0, 2])],
            refresh_s: 0.2,
        }
    }

    #[test]
    fn targets_with_a_prefix_and_checks_are_validated() {
        assert!(target(40112).validate().is_ok());
        let field = |t: ModbusTarget| t.validate().unwrap_err().field;
        let mut t = target(40112);
        t.prefix = vec![0; MAX_PREFIX + 1];
        assert_eq!(field(t), "prefix");
        assert_eq!(field(target(1)), "prefix"); // two words do not fit before register 1
        let mut t = target(40112);
        t.verify = vec![(65535, vec![1, 2])];
        assert_eq!(field(t), "verify");
        let mut t = target(40112);
        t.verify = vec![(0, vec![])];
        assert_eq!(field(t), "verify");
        let mut t = target(40112);
        t.verify = vec![(0, vec![1; MAX_VERIFY_WORDS + 1])];
        assert_eq!(field(t), "verify");
        let mut t = target(40112);
        t.verify = vec![(0, vec![1]); MAX_VERIFY + 1];
        assert_eq!(field(t), "verify");
        let mut t = target(40112);
        t.threshold_kw = f64::NAN;
        assert_eq!(field(t), "threshold_kw");
        let mut t = target(40112);
        t.init = vec![(0, vec![])];
        assert_eq!(field(t), "init");
        let mut t = target(40112);
        t.init = vec![(65535, vec![1, 2])];
        assert_eq!(field(t), "init");
        let mut t = target(40112);
        t.refresh_s = 0.001;
        assert_eq!(field(t), "refresh_s");
        let mut t = target(40112);
        t.transport = Transport::Rtu(SerialSpec {
            baudrate: 19200,
            parity: Parity::Even,
            stopbits: 1,
            bytesize: 8,
        });
        assert_eq!(field(t), "prefix"); // prefix and checks are Modbus TCP's only
    }

    #[test]
    fn a_watchdog_timeout_the_point_cannot_hold_is_refused() {
        let mut t = target(40112);
        t.watchdog_timeout = Some(RegisterPoint {
            address: 13,
            kind: RegType::U16,
            scale: 1.0,
            negate: false,
            little_words: false,
        });
        assert!(t.validate().is_ok());
        t.watchdog_timeout_s = 70_000.0;
        assert_eq!(t.validate().unwrap_err().field, "watchdog_timeout_s");
    }

    #[test]
    fn a_target_given_after_start_is_taken_once() {
        let u = UnitShared::default();
        assert!(u.take_target().is_none());
        u.set_target(Some(target(40112))).unwrap();
        let got = u.take_target().expect("a target waits");
        assert_eq!(got.map(|t| t.setpoint.address), Some(40112));
        assert!(u.take_target().is_none()); // taken once
        u.set_target(None).unwrap();
        assert_eq!(u.take_target().map(|t| t.is_none()), Some(true));
        // A bad target is refused at once; nothing waits.
        assert!(u.set_target(Some(target(0))).is_err());
        assert!(u.take_target().is_none());
        // The newest of two given between iterations wins.
        u.set_target(Some(target(40112))).unwrap();
        u.set_target(Some(target(40200))).unwrap();
        assert_eq!(
            u.take_target().flatten().map(|t| t.setpoint.address),
            Some(40200)
        );
    }
}
