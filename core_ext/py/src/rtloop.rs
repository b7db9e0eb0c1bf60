//! Python face of the real-time field loop (`vpp_rt::rtloop`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pyo3::exceptions::{
    PyConnectionError, PyIndexError, PyRuntimeError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use vpp_rt::rtloop::exchange::TxError;
use vpp_rt::rtloop::rtu::{self, MAX_PDU};
use vpp_rt::rtloop::{
    LoopSpec, ModbusTarget, Parity, PmuSpec, PmuTransport, RegType, RegisterPoint, RtLoop,
    SerialSpec, Transport, UnitShared, UnitSpec,
};
use vpp_rt::FrameErrorKind;

use crate::errors::config_err;
use crate::pipeline::{PyDecision, PyPipeline};

/// A holding-register point as `(address, type, scale, negate, little_words)`.
type PointTuple = (u16, String, f64, bool, bool);

fn point(py: Python<'_>, what: &'static str, p: PointTuple) -> PyResult<RegisterPoint> {
    let (address, kind, scale, negate, little_words) = p;
    let kind = RegType::parse(&kind).ok_or_else(|| {
        config_err(
            py,
            &vpp_rt::ConfigError::new(what, format!("type must be a register type, got {kind:?}")),
        )
    })?;
    let p = RegisterPoint {
        address,
        kind,
        scale,
        negate,
        little_words,
    };
    p.validate(what).map_err(|e| config_err(py, &e))?;
    Ok(p)
}

/// Serial settings as `(baudrate, parity "N"/"E"/"O", stopbits, bytesize)`.
type SerialTuple = (u32, String, u8, u8);

fn serial_spec(py: Python<'_>, t: SerialTuple) -> PyResult<SerialSpec> {
    let (baudrate, parity, stopbits, bytesize) = t;
    let parity = Parity::parse(&parity).ok_or_else(|| {
        config_err(
            py,
            &vpp_rt::ConfigError::new("parity", format!("must be N, E or O, got {parity:?}")),
        )
    })?;
    let spec = SerialSpec {
        baudrate,
        parity,
        stopbits,
        bytesize,
    };
    spec.validate().map_err(|e| config_err(py, &e))?;
    Ok(spec)
}

/// A unit's inverter written by the loop over Modbus TCP (`address` "host:port") or,
/// with `serial` `(baudrate, parity, stopbits, bytesize)`, over Modbus RTU on the serial
/// port `address` (which the loop then owns: the unit's driver polls through
/// `RtLoop.transact`); the device's `unit_id`, the setpoint point and the optional
/// watchdog counter and timeout points, each `(address, type, scale, negate,
/// little_words)` as the register map file gives them. Modbus TCP only: `prefix`, words
/// written in the same request just before the setpoint's registers, and `verify`,
/// `(address, words)` runs read on each connect and compared before anything is
/// written (a device that answers otherwise is never written); `init`, `(address,
/// words)` writes made on each connect after the check, before any setpoint; and
/// `refresh_s` (0: off), the last setpoint written again when none was for that long
/// (the heartbeat of a device whose setpoint reverts, SunSpec's `WSetRvrtTms`).
#[pyclass(module = "vpp._core", name = "RtTarget", frozen)]
pub struct PyRtTarget {
    inner: ModbusTarget,
}

#[pymethods]
impl PyRtTarget {
    #[new]
    #[pyo3(signature = (address, unit_id, setpoint, *, watchdog=None, watchdog_period_s=0.2,
                        watchdog_timeout=None, watchdog_timeout_s=2.0, threshold_kw=0.0,
                        serial=None, prefix=Vec::new(), verify=Vec::new(), init=Vec::new(),
                        refresh_s=0.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        address: String,
        unit_id: u8,
        setpoint: PointTuple,
        watchdog: Option<PointTuple>,
        watchdog_period_s: f64,
        watchdog_timeout: Option<PointTuple>,
        watchdog_timeout_s: f64,
        threshold_kw: f64,
        serial: Option<SerialTuple>,
        prefix: Vec<u16>,
        verify: Vec<(u16, Vec<u16>)>,
        init: Vec<(u16, Vec<u16>)>,
        refresh_s: f64,
    ) -> PyResult<Self> {
        let transport = match serial {
            Some(t) => Transport::Rtu(serial_spec(py, t)?),
            None => Transport::Tcp,
        };
        let inner = ModbusTarget {
            address,
            transport,
            unit_id,
            setpoint: point(py, "setpoint", setpoint)?,
            watchdog: watchdog.map(|p| point(py, "watchdog", p)).transpose()?,
            watchdog_period_s,
            watchdog_timeout: watchdog_timeout
                .map(|p| point(py, "watchdog_timeout", p))
                .transpose()?,
            watchdog_timeout_s,
            threshold_kw,
            prefix,
            verify,
            init,
            refresh_s,
        };
        inner.validate().map_err(|e| config_err(py, &e))?;
        Ok(Self { inner })
    }

    #[getter]
    fn address(&self) -> String {
        self.inner.address.clone()
    }

    /// The serial settings of an RTU target (None: Modbus TCP).
    #[getter]
    fn serial(&self) -> Option<SerialTuple> {
        match self.inner.transport {
            Transport::Tcp => None,
            Transport::Rtu(s) => {
                let parity = match s.parity {
                    Parity::None => "N",
                    Parity::Even => "E",
                    Parity::Odd => "O",
                };
                Some((s.baudrate, parity.to_owned(), s.stopbits, s.bytesize))
            }
        }
    }
}

/// The per-frame path in a thread of the core: the PMU stream (TCP, or UDP with
/// `udp_bind`) -> each unit's `Pipeline` (shared: Python keeps setting telemetry, base,
/// droop on the same objects) -> setpoint writes to the units with an `RtTarget`.
/// `drain()` returns the decisions recorded since the last call, as
/// `(unit_index, idle, Decision, received_mono, written)`. The loop never takes the GIL.
#[pyclass(module = "vpp._core", name = "RtLoop")]
pub struct PyRtLoop {
    inner: RtLoop,
    /// Per unit: the loop owns its serial line (`transact` serves it).
    serial: Vec<bool>,
}

fn unit_stats<'py>(py: Python<'py>, u: &UnitShared) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    d.set_item("connected", u.connected.load(Ordering::Relaxed))?;
    d.set_item("writable", u.writable.load(Ordering::Relaxed))?;
    d.set_item("connects", n(&u.connects))?;
    d.set_item("writes", n(&u.writes))?;
    d.set_item("acks", n(&u.acks))?;
    d.set_item("exceptions", n(&u.exceptions))?;
    d.set_item("timeouts", n(&u.timeouts))?;
    d.set_item("io_errors", n(&u.io_errors))?;
    d.set_item("bad_replies", n(&u.bad_replies))?;
    d.set_item("transactions", n(&u.transactions))?;
    d.set_item("unencodable", n(&u.unencodable))?;
    d.set_item("watchdog_writes", n(&u.watchdog_writes))?;
    d.set_item("coalesced", n(&u.coalesced))?;
    d.set_item("has_target", u.has_target.load(Ordering::Relaxed))?;
    d.set_item("verified", u.verified.load(Ordering::Relaxed))?;
    d.set_item("layout_mismatches", n(&u.layout_mismatches))?;
    let acked = f64::from_bits(n(&u.acked_kw));
    d.set_item("acked_kw", acked.is_finite().then_some(acked))?;
    let acks = n(&u.acks).max(1);
    d.set_item("mean_rtt_ms", n(&u.rtt_ns_sum) as f64 / acks as f64 / 1e6)?;
    Ok(d)
}

impl PyRtLoop {
    fn unit(&self, i: usize) -> PyResult<&Arc<UnitShared>> {
        self.inner
            .units
            .get(i)
            .ok_or_else(|| PyIndexError::new_err(format!("no unit {i}")))
    }
}

#[pymethods]
impl PyRtLoop {
    #[new]
    #[pyo3(signature = (pmu_address, idcode, units, *, udp_bind=None, pmu_index=0,
                        read_timeout_s=2.0, stale_s=0.5, idle_period_s=0.1,
                        write_timeout_s=0.5, ring_size=2048, priority=0,
                        lock_memory=false, spin_s=0.0, backoff_initial_s=0.1,
                        backoff_max_s=2.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        pmu_address: String,
        idcode: u16,
        units: Vec<(PyRef<'_, PyPipeline>, Option<PyRef<'_, PyRtTarget>>)>,
        udp_bind: Option<String>,
        pmu_index: usize,
        read_timeout_s: f64,
        stale_s: f64,
        idle_period_s: f64,
        write_timeout_s: f64,
        ring_size: usize,
        priority: i32,
        lock_memory: bool,
        spin_s: f64,
        backoff_initial_s: f64,
        backoff_max_s: f64,
    ) -> PyResult<Self> {
        let spec = LoopSpec {
            pmu: PmuSpec {
                address: pmu_address,
                idcode,
                transport: match udp_bind {
                    Some(bind) => PmuTransport::Udp { bind },
                    None => PmuTransport::Tcp,
                },
                pmu_index,
                read_timeout_s,
            },
            stale_s,
            idle_period_s,
            write_timeout_s,
            ring_size,
            priority,
            lock_memory,
            spin_s,
            backoff_initial_s,
            backoff_max_s,
        };
        let serial = units
            .iter()
            .map(|(_, t)| {
                t.as_ref()
                    .is_some_and(|t| matches!(t.inner.transport, Transport::Rtu(_)))
            })
            .collect();
        let units = units
            .iter()
            .map(|(p, t)| UnitSpec {
                pipeline: Arc::clone(&p.inner),
                target: t.as_ref().map(|t| t.inner.clone()),
            })
            .collect();
        let inner = py
            .detach(|| RtLoop::start(spec, units))
            .map_err(|e| config_err(py, &e))?;
        Ok(Self { inner, serial })
    }

    /// One Modbus transaction with serial unit `i`'s device, carried by the loop (which
    /// owns the line): `pdu` is the request's function code and data (functions 1-6, 15,
    /// 16); returns the reply's (an exception reply included, function code | 0x80).
    /// Waits up to `timeout_s` with the GIL released. TimeoutError: no valid answer in
    /// time (silence, a bad CRC or another device's); ConnectionError: the line is not
    /// open (being reopened) or the loop has ended.
    fn transact<'py>(
        &self,
        py: Python<'py>,
        i: usize,
        pdu: &[u8],
        timeout_s: f64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let u = self.unit(i)?;
        if !self.serial[i] {
            return Err(PyValueError::new_err(format!(
                "unit {i} is not on a serial line of the loop"
            )));
        }
        if pdu.is_empty() || pdu.len() > MAX_PDU || !rtu::supported(pdu[0]) {
            return Err(PyValueError::new_err(
                "pdu must be 1-253 bytes of function 1-6, 15 or 16",
            ));
        }
        if !(timeout_s.is_finite() && timeout_s > 0.0 && timeout_s <= 60.0) {
            return Err(PyValueError::new_err("timeout_s must be within (0, 60]"));
        }
        let timeout = std::time::Duration::from_secs_f64(timeout_s);
        let running = &self.inner.shared.running;
        let mut reply = [0u8; MAX_PDU];
        let r = py.detach(|| u.exchange.transact(pdu, timeout, running, &mut reply));
        match r {
            Ok(n) => Ok(PyBytes::new(py, &reply[..n])),
            Err(TxError::Timeout) => Err(PyTimeoutError::new_err(format!(
                "no answer from unit {i} within {timeout_s} s"
            ))),
            Err(TxError::Closed) => Err(PyConnectionError::new_err(format!(
                "the serial line of unit {i} is not open"
            ))),
        }
    }

    /// The decisions recorded since the last call, oldest first.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut recs = Vec::with_capacity(self.inner.ring.len());
        self.inner.ring.drain(|r| recs.push(r));
        let out = PyList::empty(py);
        for r in recs {
            let t = PyTuple::new(
                py,
                [
                    r.unit.into_pyobject(py)?.into_any(),
                    pyo3::types::PyBool::new(py, r.kind == vpp_rt::rtloop::RecordKind::Idle)
                        .to_owned()
                        .into_any(),
                    Bound::new(py, PyDecision { d: r.decision })?.into_any(),
                    r.received.into_pyobject(py)?.into_any(),
                    pyo3::types::PyBool::new(py, r.written)
                        .to_owned()
                        .into_any(),
                ],
            )?;
            out.append(t)?;
        }
        Ok(out)
    }

    /// Whether the loop may write unit `i`'s setpoints (enabled, online, anchored).
    fn set_writable(&self, i: usize, writable: bool) -> PyResult<()> {
        let u = self.unit(i)?;
        if u.writable.swap(writable, Ordering::AcqRel) != writable && writable {
            u.resync.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Give the loop a Modbus TCP `target` for unit `i` (None: it stops writing the
    /// unit), replacing the one it has within an iteration (10 ms): the old connection
    /// is closed, the new one runs the target's `verify` reads before any write. For a
    /// device whose layout is known only after start (SunSpec discovery). A unit on a
    /// serial line of the loop keeps its line.
    fn set_target(
        &self,
        py: Python<'_>,
        i: usize,
        target: Option<PyRef<'_, PyRtTarget>>,
    ) -> PyResult<()> {
        let u = self.unit(i)?;
        if self.serial[i] {
            return Err(PyValueError::new_err(format!(
                "unit {i} is on a serial line of the loop: its target is fixed"
            )));
        }
        u.set_target(target.map(|t| t.inner.clone()))
            .map_err(|e| config_err(py, &e))
    }

    /// Connections to unit `i`'s device whose layout check (`RtTarget.verify`) failed:
    /// the loop wrote nothing on them. One atomic read, for a check every drain.
    fn layout_mismatches(&self, i: usize) -> PyResult<u64> {
        Ok(self.unit(i)?.layout_mismatches.load(Ordering::Relaxed))
    }

    /// Write unit `i`'s next setpoint whatever it is.
    fn resync(&self, i: usize) -> PyResult<()> {
        self.unit(i)?.resync.store(true, Ordering::Release);
        Ok(())
    }

    /// Seconds since the loop's last iteration (it iterates at least every 10 ms).
    #[getter]
    fn alive_age_s(&self) -> f64 {
        let ns = self.inner.shared.alive_ns.load(Ordering::Acquire);
        vpp_rt::clock::monotonic_s() - ns as f64 / 1e9
    }

    /// The thread runs.
    #[getter]
    fn running(&self) -> bool {
        self.inner.shared.running.load(Ordering::Acquire)
    }

    /// Why the loop ended by itself (None while it runs or after `stop`).
    #[getter]
    fn ended(&self) -> Option<String> {
        self.inner
            .shared
            .ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    #[getter]
    fn pmu_connected(&self) -> bool {
        self.inner.shared.pmu_connected.load(Ordering::Acquire)
    }

    /// Counters of the loop and, under `units`, of each unit.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.inner.shared;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let d = PyDict::new(py);
        d.set_item("running", s.running.load(Ordering::Relaxed))?;
        d.set_item("realtime", s.realtime.load(Ordering::Relaxed))?;
        d.set_item("memory_locked", s.memory_locked.load(Ordering::Relaxed))?;
        d.set_item("pmu_connected", s.pmu_connected.load(Ordering::Relaxed))?;
        d.set_item("pmu_connects", n(&s.pmu_connects))?;
        d.set_item("frames", n(&s.frames))?;
        d.set_item("data_frames", n(&s.data_frames))?;
        d.set_item("configs", n(&s.configs))?;
        d.set_item("refused", n(&s.refused))?;
        d.set_item("idle_steps", n(&s.idle_steps))?;
        d.set_item("gaps", n(&s.gaps))?;
        d.set_item("max_frame_ms", n(&s.max_frame_ns) as f64 / 1e6)?;
        d.set_item("ring_dropped", self.inner.ring.dropped())?;
        let errors = PyDict::new(py);
        for (k, a) in FrameErrorKind::ALL.iter().zip(&s.frame_errors) {
            errors.set_item(k.name(), n(a))?;
        }
        d.set_item("frame_errors", errors)?;
        d.set_item(
            "last_error",
            s.last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )?;
        let units = PyList::empty(py);
        for u in &self.inner.units {
            units.append(unit_stats(py, u)?)?;
        }
        d.set_item("units", units)?;
        Ok(d)
    }

    /// Fault injection, for tests and commissioning: `"stall"` stops the loop for
    /// `seconds` once (its watchdog writes stop too); `"panic"` makes the thread end.
    #[pyo3(signature = (fault, seconds=0.0))]
    fn inject(&self, fault: &str, seconds: f64) -> PyResult<()> {
        let s = &self.inner.shared;
        match fault {
            "stall" if seconds.is_finite() && seconds > 0.0 && seconds <= 60.0 => s
                .inject_stall_ms
                .store((seconds * 1e3) as u64, Ordering::Release),
            "panic" => s.inject_panic.store(true, Ordering::Release),
            _ => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "fault must be 'stall' (0 < seconds <= 60) or 'panic', got {fault:?}"
                )))
            }
        }
        Ok(())
    }

    /// Stop the thread and wait for it (the GIL is released meanwhile). Takes `&self`:
    /// a worker thread may be waiting in `transact` on this loop (it then returns
    /// ConnectionError).
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let inner = &self.inner;
        py.detach(|| inner.stop());
        if self.inner.shared.running.load(Ordering::Acquire) {
            return Err(PyRuntimeError::new_err("the real-time loop did not stop"));
        }
        Ok(())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRtTarget>()?;
    m.add_class::<PyRtLoop>()?;
    Ok(())
}
