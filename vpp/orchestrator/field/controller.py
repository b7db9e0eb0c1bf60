"""The field controller process: PMU frames -> core pipeline per unit -> inverter setpoints.

Frame path (docs/orchestrator.md, "Field controller"): a :class:`~vpp.drivers.pmu.PdcClient`
yields each decoded C37.118 data frame; every unit's :class:`~vpp.orchestrator.field.unit.
FieldUnit` steps its core pipeline with the frame's time and frequency; the setpoint goes
to the unit's :class:`~vpp.orchestrator.field.writer.SetpointWriter`, which returns at
once. Nothing on this path waits for ZeroMQ: publishing is a non-blocking PUB send that
drops when the broker is gone, so the response and the safety envelope go on alone.

Every measurement passes the core's admission rule (docs/pipeline.md): frames from
another IDCODE, late, duplicate or jumped frames are refused and counted, and only
admitted frames keep the PMU "live". A unit whose step fails is stopped through its
envelope (:meth:`FieldUnit.fail_safe`) while the others go on.

Around it: inverter (and BMS) polling feeds the pipelines' telemetry; a watch loop turns
the communicators' online flags and the BMS data's age into ``device`` events and steps
the units without a measurement when no frame is admitted; heartbeats (the field and
each online unit) and telemetry are published on their intervals; commands arrive on the
controller's ROUTER (:mod:`vpp.orchestrator.field.commands`). Every loop is supervised:
a loop that raises is logged, counted in ``loop_failures`` and restarted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import zmq

from vpp import c37118 as c
from vpp.aio import Backoff, Startable, cancel_and_wait, start_supervised
from vpp.config.field import FieldConfig
from vpp.core import Decision, RtLoop
from vpp.drivers.communicator import ResourceCommunicator
from vpp.drivers.pmu import PdcClient
from vpp.errors import CommandError, ConfigError, VppError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.auth import Authorizer
from vpp.orchestrator.bus.commands import DEFAULT_MAX_MESSAGE_BYTES, AuditRecord, audit_event
from vpp.orchestrator.bus.curve import ClientCurve, ServerCurve
from vpp.orchestrator.bus.pubsub import Publisher, Server
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.field import messages as m
from vpp.orchestrator.field.commands import FieldCommands, Params
from vpp.orchestrator.field.realtime import (
    serial_units,
    start_loop,
    sunspec_target,
    sunspec_units,
)
from vpp.orchestrator.field.unit import SEVERITY, FieldUnit
from vpp.orchestrator.field.writer import SetpointWriter

if TYPE_CHECKING:
    from vpp.config.field import FieldSite
    from vpp.config.models import SiteConfig
    from vpp.drivers.modbus_rtu import ModbusRtuProtocol
    from vpp.drivers.sunspec import SunSpecProtocol, SunSpecSetpoint

__all__ = ["FieldController", "serve"]

log = logging.getLogger(__name__)

#: How often the controller takes the core loop's decisions (one frame at 50 frames/s).
RT_DRAIN_S = 0.02


class FieldController(FieldCommands, Startable):
    """One field controller (see the module docstring); ``async with`` runs it.

    ``events_in``: where to publish (None: nothing is published), as ``publish_curve``
    (the controller's keys, the broker's public key) when given; ``command_endpoint``: the
    ROUTER to bind (None: commands only through :meth:`command`), which asks
    ``authorizer`` (None: every command runs) and audits every command as an event.
    """

    def __init__(
        self,
        field: FieldConfig,
        *,
        events_in: str | None = None,
        command_endpoint: str | None = None,
        curve: ServerCurve | None = None,
        insecure: bool = False,
        authorizer: Authorizer | None = None,
        publish_curve: ClientCurve | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        write_timeout_s: float = 1.0,
        pmu_backoff: Backoff | None = None,
        pmu_read_timeout_s: float = 2.0,
        pmu_stale_s: float = 0.5,
        realtime: bool | None = None,
        realtime_settings: bool = False,
    ) -> None:
        self.field = field
        self.id = field.id
        self.limits = field.commands
        self.units = {u.id: FieldUnit(u, field.pmu) for u in field.units}
        self.comms: dict[str, ResourceCommunicator] = {}
        self.bms_comms: dict[str, ResourceCommunicator] = {}
        self.writers: dict[str, SetpointWriter] = {}
        for u in field.units:
            comm = ResourceCommunicator(poll_interval=u.inverter.poll_interval_s)
            comm.add_resource(u.id, u.inverter.protocol, u.inverter.config, u.inverter.secondary)
            self.comms[u.id] = comm
            self.writers[u.id] = SetpointWriter(
                comm, u.id, threshold_kw=u.write_threshold_kw, timeout_s=write_timeout_s
            )
            if u.bms is not None:
                bms = ResourceCommunicator(poll_interval=u.bms.poll_interval_s)
                bms.add_resource(u.id, u.bms.protocol, u.bms.config, u.bms.secondary)
                self.bms_comms[u.id] = bms
        pmu = field.pmu
        self.pdc = PdcClient(
            pmu.host,
            pmu.port,
            pmu.idcode,
            read_timeout=pmu_read_timeout_s,
            backoff=pmu_backoff or Backoff(initial=0.1, maximum=2.0),
        )
        self.events_in = events_in
        self.command_endpoint = command_endpoint
        self.curve, self.insecure = curve, insecure
        self.authorizer, self.publish_curve = authorizer, publish_curve
        self.max_message_bytes = max_message_bytes
        self.publisher: Publisher | None = None
        self.server: Server | None = None
        self.frames = 0
        self.pmu_stale_s = pmu_stale_s
        self.pmu_live = False
        """Frames were admitted within ``pmu_stale_s``."""
        self.steps_without_pmu = 0
        """Steps made by the watch loop while no frame came (response ramping to 0)."""
        self._last_frame = self._started = time.monotonic()
        self.frame_errors = 0
        self.frames_refused = 0
        """Data frames no unit admitted (another IDCODE, late, duplicate, jumped...)."""
        self.publish_errors = 0
        self.loop_failures = 0
        """Background loops that raised (each was logged and restarted)."""
        # What the frame path walks, looked up once rather than per unit per frame.
        self._frame_units = [(u.id, self.units[u.id], self.writers[u.id]) for u in field.units]
        self._tasks: list[asyncio.Task[None]] = []
        self.use_realtime = field.realtime.enabled if realtime is None else realtime
        """The frame path runs in the core's loop (docs/realtime-loop.md)."""
        self.realtime_settings = realtime_settings
        self.pmu_read_timeout_s = pmu_read_timeout_s
        self.rt: RtLoop | None = None
        self._rt_written: list[bool] = []
        self._rt_serial: list[int] = []
        """Units whose serial line the loop owns (their drivers poll through it)."""
        self._rt_sunspec: dict[int, SunSpecProtocol] = {}
        """SunSpec units the loop may write, and their drivers."""
        self._rt_layouts: dict[int, SunSpecSetpoint | None] = {}
        """The driver's layout the loop has for each (None: none, the driver writes)."""
        self._rt_mismatches: dict[int, int] = {}
        self._rt_alarmed: set[int] = set()
        """SunSpec units whose layout mismatch was reported (once until a new target)."""
        self._rt_stalled = False
        self._rt_last_t = math.nan
        self.rt_fallbacks = 0
        """Times the core's loop ended and the asyncio path took the frames over."""

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the bus sockets and start polling, the frame loop and the periodic loops."""
        self._started = time.monotonic()
        if self.events_in is not None:
            self.publisher = Publisher(self.events_in, bind=False, curve=self.publish_curve)
        if self.use_realtime:
            # Before any polling starts: a serial unit's driver must never open the port
            # the loop owns (its polls go through the loop).
            self._start_rt()
        # Never unsubscribed: stop() closes the communicators, which ends their polling.
        for uid, comm in self.comms.items():
            comm.subscribe_to_resource(uid, self._status_cb(self.units[uid]))
        for uid, bms in self.bms_comms.items():
            bms.subscribe_to_resource(uid, self.units[uid].on_bms_status)
        if self.command_endpoint is not None:
            handlers = {name: self._server_handler(name) for name in self.command_table()}
            self.server = Server(
                self.command_endpoint,
                handlers,
                name=self.id,
                curve=self.curve,
                insecure=self.insecure,
                authorizer=self.authorizer,
                audit=self._audit,
                max_message_bytes=self.max_message_bytes,
            )
            await self.server.__aenter__()
        frames = (self._frame_loop, "frames")
        if self.rt is not None:
            frames = (self._rt_loop, "realtime")
        for fn, name in (
            frames,
            (self._watch_loop, "watch"),
            (self._telemetry_loop, "telemetry"),
            (self._heartbeat_loop, "heartbeat"),
        ):
            what = f"field {self.id}: {name}"
            self._tasks.append(start_supervised(fn, what, on_failure=self._loop_failed))

    async def stop(self) -> None:
        """Stop every loop and close every connection and socket."""
        # Closed first: the PDC loop then ends by itself even if a cancellation is lost in
        # a connect attempt (asyncio.wait_for of Python 3.11 can swallow one).
        await self.pdc.close()
        if self.rt is not None:
            self.rt.stop()
            self.rt = None
        for task in await cancel_and_wait(self._tasks):
            log.error("field %s: task %s ended with %r", self.id, task.get_name(), task.exception())
        self._tasks.clear()
        if self.server is not None:
            await self.server.aclose()
            self.server = None
        for writer in self.writers.values():
            await writer.close()
        for comm in (*self.comms.values(), *self.bms_comms.values()):
            await comm.close()
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None

    def _loop_failed(self, exc: BaseException) -> None:
        self.loop_failures += 1

    # --- publishing (never blocks) -------------------------------------------------------

    def publish(self, body: Any | Callable[[], Any]) -> None:
        """Send one message (a body, or a function that builds it) if a publisher is open.
        A failure, building the body included (a value the schema refuses, such as a NaN
        read from a device), is counted in ``publish_errors`` and logged, never raised:
        publishing must not stop the frame path or a loop."""
        if self.publisher is None:
            return
        try:
            msg = body() if callable(body) else body
            # Always as the controller: that is the identity the broker authenticates.
            self.publisher.send_now(s.make(msg, self.id))
        except (zmq.ZMQError, ValueError, VppError) as exc:
            self.publish_errors += 1
            log.warning("field %s: not published: %s", self.id, exc)

    def event(
        self,
        kind: str,
        text: str,
        *,
        unit: str = "",
        severity: str = "info",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Publish an event."""
        self.publish(
            lambda: s.Event(
                kind=kind,
                severity=severity,  # type: ignore[arg-type]  # one of SEVERITY's values
                text=text,
                unit=unit,
                data=data or {},
            )
        )

    # --- frame path ------------------------------------------------------------------------

    async def _frame_loop(self) -> None:
        async for frame in self.pdc:
            if isinstance(frame, c.DataFrame):
                try:
                    self.on_frame(frame)
                except Exception:
                    # A bug on one frame must not end the response: counted, logged, next.
                    self.frame_errors += 1
                    log.exception("field %s: frame failed", self.id)

    def on_frame(self, frame: c.DataFrame) -> None:
        """Step every unit with one data frame and offer the setpoints (never awaits)."""
        pmu = frame.pmus[0]
        self.frames += 1
        decimate = self.frames % self.field.decisions_every == 0
        if not self.step(frame.time, pmu.freq, pmu.dfreq, pmu.stat, frame.idcode, decimate):
            self.frames_refused += 1
            return
        self._stream_alive()

    def _stream_alive(self) -> None:
        # Only an admitted frame shows the stream is alive: a flood of refused frames
        # must not keep the units from stepping without a measurement.
        self._last_frame = time.monotonic()
        if not self.pmu_live:
            self.pmu_live = True
            self.event("device", "PMU stream up", data={"device": "pmu", "online": True})

    def _frame_events(self, first: Decision, t: float, f: float, publish: bool) -> None:
        """What one admitted frame publishes once, whatever the units: a band change, and
        (when due) the frequency."""
        if first.transition is not None:
            transition = first.transition
            self.publish(lambda: m.band_event(transition, f))
        if publish and math.isfinite(f) and f > 0:
            self.publish(lambda: m.frequency(t, f, first))

    @property
    def pmu_reconnects(self) -> int:
        """Times the PMU connection was made again after the first."""
        if self.rt is not None:
            return max(0, int(self.rt.stats()["pmu_connects"]) - 1)
        return self.pdc.health.reconnects

    @property
    def last_decision(self) -> dict[str, Decision]:
        """Each unit's last decision."""
        return {uid: u.decision for uid, u in self.units.items() if u.decision is not None}

    def step(self, t: float, f: float, dfreq: float, stat: int, idcode: int, publish: bool) -> bool:
        """Step every unit with one measurement, offer the setpoints, publish what is
        due; False when no unit admitted it."""
        publish = publish and self.publisher is not None
        first: Decision | None = None
        for _uid, unit, writer in self._frame_units:
            try:
                d = unit.on_frame(t, f, dfreq, stat, idcode)
            except Exception as exc:
                d = self._unit_failed(unit, exc)
            if d is None:
                continue
            first = first or d
            self._offer(unit, writer, d, publish)
        if first is None:
            return False
        self._frame_events(first, t, f, publish)
        return True

    def _unit_failed(self, unit: FieldUnit, exc: Exception) -> Decision:
        """Stepping ``unit`` raised: it alone is stopped safely, with an alarm; the other
        units go on."""
        self.event("unit", f"step failed: {exc!r}; base power set to 0",
                   unit=unit.id, severity="alarm")  # fmt: skip
        return unit.fail_safe(exc)

    def _offer(
        self,
        unit: FieldUnit,
        writer: SetpointWriter,
        d: Decision,
        publish: bool,
        write: bool = True,
    ) -> None:
        if write and unit.writable:
            writer.offer(d.setpoint_kw)
        if d.violations or unit.has_violations:
            for rec in unit.violations(d):
                sev = SEVERITY.get(rec["action"], "warning")
                self.event("safety", rec["detail"], unit=unit.id, severity=sev, data=rec)
        if publish:
            self.publish(lambda: m.decision(unit.id, d.time, d.freq, d))

    # --- the core's real-time loop -------------------------------------------------------

    def _start_rt(self) -> None:
        units = [unit for _uid, unit, _writer in self._frame_units]
        self.rt, self._rt_written = start_loop(
            self.field,
            units,
            read_timeout_s=self.pmu_read_timeout_s,
            stale_s=self.pmu_stale_s,
            idle_period_s=self._watch_period_s,
            realtime_settings=self.realtime_settings,
        )
        for i, (_uid, _unit, writer) in enumerate(self._frame_units):
            if self._rt_written[i]:
                writer.hand_to(self.rt, i)
        self._rt_serial = serial_units(units, self._rt_written)
        self._rt_sunspec = self._sunspec_drivers(sunspec_units(self.field))
        self._rt_layouts = dict.fromkeys(self._rt_sunspec)
        for i in self._rt_serial:
            driver = self._driver(i)
            if driver is not None:
                driver.use_loop(partial(self.rt.transact, i))
        st = self.rt.stats()
        log.info("field %s: real-time loop started for %d of %d units (SCHED_FIFO %s, "
                 "memory locked %s)", self.id, sum(self._rt_written), len(units),
                 "granted" if st["realtime"] else "not granted",
                 "yes" if st["memory_locked"] else "no")  # fmt: skip

    async def _rt_loop(self) -> None:
        """Feed the loop what changes slowly (schedule blocks, who may be written) and
        take its decisions: events, published decisions, and the writes of the units the
        loop does not write itself. Hands the frames to the asyncio path if it ends."""
        rt = self.rt
        while rt is not None:
            await asyncio.sleep(RT_DRAIN_S)
            now = time.time()
            for i, (_uid, unit, writer) in enumerate(self._frame_units):
                unit.apply_schedule(now)
                if i in self._rt_sunspec:
                    self._rt_adopt(rt, i, unit, writer, self._rt_sunspec[i])
                if self._rt_written[i]:
                    self._rt_sync(rt, i, unit, writer)
            if self._rt_sunspec:
                self._rt_layout_check(rt)
            self._rt_records(rt.drain())
            if not self._rt_check(rt):
                return

    def _rt_sync(self, rt: RtLoop, i: int, unit: FieldUnit, writer: SetpointWriter) -> None:
        want = unit.writable
        if want and writer.needs_init:
            writer.start_init()  # enable and power-control mode first, through the driver
            want = False
        rt.set_writable(i, want)

    def _rt_adopt(self, rt: RtLoop, i: int, unit: FieldUnit, writer: SetpointWriter,
                  driver: SunSpecProtocol) -> None:  # fmt: skip
        """SunSpec unit ``i``: give the loop the setpoint layout its driver discovered,
        or take the unit back to the Python path when the driver has none; only while
        the driver's writer has no write in flight, so that the two never overlap."""
        layout = driver.setpoint_layout
        if layout == self._rt_layouts[i] or writer.busy:
            return
        target = None if layout is None else sunspec_target(unit.cfg, layout, self.field.realtime)
        rt.set_target(i, target)
        self._rt_layouts[i] = layout
        self._rt_alarmed.discard(i)
        loop_writes = target is not None
        if loop_writes != self._rt_written[i]:
            self._rt_written[i] = loop_writes
            rt.set_writable(i, False)  # `_rt_sync` says when, from now on
            writer.hand_to(rt if loop_writes else None, i)
        log.info("unit %s: SunSpec setpoints written by %s", unit.id,
                 f"the real-time loop ({layout})" if loop_writes else "the driver")  # fmt: skip

    def _rt_layout_check(self, rt: RtLoop) -> None:
        """A SunSpec device whose registers no longer match the discovered layout (the
        loop checks them on each connect and writes nothing then): the driver walks the
        model chain again, and an alarm says so once (the loop tries again after its
        backoff, each try counted) until a new layout replaces the loop's target."""
        for i, driver in self._rt_sunspec.items():
            n = rt.layout_mismatches(i)
            if n <= self._rt_mismatches.get(i, 0):
                continue
            self._rt_mismatches[i] = n
            driver.rediscover()
            if i not in self._rt_alarmed:
                self._rt_alarmed.add(i)
                uid = self._frame_units[i][0]
                self.event("realtime", "the inverter's SunSpec registers differ from the "
                           "layout discovered; the real-time loop does not write it until "
                           "the driver discovers it again", unit=uid, severity="alarm",
                           data={"layout_mismatches": n})  # fmt: skip

    def _rt_records(self, records: list[tuple[int, bool, Decision, float, bool]]) -> None:
        for i, idle, d, _received, _written in records:
            _uid, unit, writer = self._frame_units[i]
            publish = False
            if idle:
                if i == 0:
                    self.steps_without_pmu += 1
            else:
                if d.time != self._rt_last_t:
                    # The first record of a new frame: what `on_frame` and `step` do once.
                    self._rt_last_t = d.time
                    self.frames += 1
                    self._stream_alive()
                    due = self.frames % self.field.decisions_every == 0
                    self._frame_events(d, d.time, d.freq, due and self.publisher is not None)
                publish = self.frames % self.field.decisions_every == 0
            self._offer(unit, writer, d, publish and self.publisher is not None,
                        write=not self._rt_written[i])  # fmt: skip

    def _rt_check(self, rt: RtLoop) -> bool:
        """Report a stalled or ended loop; False once the asyncio path took over."""
        if not rt.running:
            why = rt.ended or "stopped"
            self.event("realtime", f"real-time loop ended ({why}); the asyncio frame path "
                       "takes over", severity="critical", data={"ended": why})  # fmt: skip
            self._rt_fallback()
            return False
        age = rt.alive_age_s
        stall = self.field.realtime.stall_after_s
        if age > stall and not self._rt_stalled:
            self._rt_stalled = True
            self.event("realtime", f"real-time loop stalled: no iteration for {age:.2f} s",
                       severity="alarm", data={"stalled_s": age})  # fmt: skip
        elif age <= stall and self._rt_stalled:
            self._rt_stalled = False
            self.event("realtime", "real-time loop running again")
        return True

    def _driver(self, i: int) -> ModbusRtuProtocol | None:
        """Unit ``i``'s Modbus RTU driver (None if it has another protocol)."""
        # Imported here: at module level it would load pymodbus with the controller's
        # role module (the import contracts); the communicator created the driver, so
        # the module is loaded by now.
        from vpp.drivers.modbus_rtu import ModbusRtuProtocol

        uid = self._frame_units[i][0]
        driver = self.comms[uid].protocol(uid)
        return driver if isinstance(driver, ModbusRtuProtocol) else None

    def _sunspec_drivers(self, units: list[int]) -> dict[int, SunSpecProtocol]:
        """The SunSpec drivers of ``units``, by index (looked up once, at start)."""
        if not units:
            return {}
        from vpp.drivers.sunspec import SunSpecProtocol  # as in `_driver`

        out = {}
        for i in units:
            uid = self._frame_units[i][0]
            driver = self.comms[uid].protocol(uid)
            if isinstance(driver, SunSpecProtocol):
                out[i] = driver
        return out

    def _rt_fallback(self) -> None:
        self.rt_fallbacks += 1
        self.rt = None
        for _uid, _unit, writer in self._frame_units:
            writer.hand_to(None, 0)
        # The loop closed its serial ports before it said it ended: the drivers open
        # them again themselves.
        for i in self._rt_serial:
            driver = self._driver(i)
            if driver is not None:
                driver.use_loop(None)
        self._rt_serial = []
        what = f"field {self.id}: frames"
        self._tasks.append(start_supervised(self._frame_loop, what, on_failure=self._loop_failed))

    def realtime_status(self) -> dict[str, Any] | None:
        """The core loop's counters (None on the asyncio path)."""
        if self.rt is None:
            return None
        st = self.rt.stats()
        st["alive_age_s"] = self.rt.alive_age_s
        st["stalled"] = self._rt_stalled
        for i, u in enumerate(st["units"]):
            u["unit"] = self._frame_units[i][0]
            u["loop_writes"] = self._rt_written[i]
        return st

    # --- devices -------------------------------------------------------------------------

    def _status_cb(self, unit: FieldUnit) -> Any:
        def on_status(status: Mapping[str, float | bool | str]) -> None:
            if unit.online is not True:
                # Whatever the inverter did while away, the ramp starts from its power now.
                unit.resume()
            unit.on_status(status)
            if unit.online is not True:
                self._online(unit, True, "")

        return on_status

    def _online(self, unit: FieldUnit, online: bool, reason: str) -> None:
        was, unit.online = unit.online, online
        if online:
            # Whatever the inverter did while away, enable it and write the setpoint anew.
            self.writers[unit.id].invalidate(init=True)
            text = "inverter online" + (" again" if was is False else "")
            self.event("device", text, unit=unit.id, data={"online": True})
        else:
            self.writers[unit.id].drop()
            self.event(
                "device",
                f"inverter offline: {reason}",
                unit=unit.id,
                severity="alarm",
                data={"online": False, "reason": reason},
            )

    @property
    def _watch_period_s(self) -> float:
        """How often devices are watched, and the units stepped while no frame comes."""
        return min(u.inverter.poll_interval_s for u in self.field.units) / 2

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self._watch_period_s)
            if time.monotonic() - self._last_frame > self.pmu_stale_s:
                self._without_pmu()
            for uid, comm in self.comms.items():
                st = comm.status()[uid]
                unit = self.units[uid]
                if st["online"] is False and unit.online is not False:
                    self._online(unit, False, st["last_error"] or "no answer")
            self._watch_bms()

    def _without_pmu(self) -> None:
        # No admitted frame: each unit steps without a measurement, its response ramping
        # to zero while the base power and the safety envelope go on.
        if self.pmu_live:
            self.pmu_live = False
            self.event("device", f"PMU stream lost (no frame for {self.pmu_stale_s:g} s)",
                       severity="alarm", data={"device": "pmu", "online": False})  # fmt: skip
        if self.rt is not None:
            return  # the core's loop steps the units without a measurement itself
        self.steps_without_pmu += 1
        for _uid, unit, writer in self._frame_units:
            try:
                d = unit.idle()
            except Exception as exc:
                d = self._unit_failed(unit, exc)
            self._offer(unit, writer, d, False)

    def _watch_bms(self) -> None:
        now = time.time()
        for uid in self.bms_comms:
            unit = self.units[uid]
            limit = unit.limits["bms_stale_after_s"]
            seen = unit.bms_time()
            age = math.inf if seen is None else now - seen
            if age <= limit:
                if unit.bms_online is not True:
                    again = unit.bms_online is False
                    unit.bms_online = True
                    self.event("device", "BMS online" + (" again" if again else ""), unit=uid,
                               data={"device": "bms", "online": True})  # fmt: skip
            elif unit.bms_online is True or (
                # Never heard: offline once it had as long as a stale limit to speak up.
                unit.bms_online is None and time.monotonic() - self._started > limit
            ):
                unit.bms_online = False
                self.event("device", f"BMS offline: no data for {age:.1f} s", unit=uid,
                           severity="alarm", data={"device": "bms", "online": False})  # fmt: skip

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.field.telemetry_interval_s)
            for unit in self.units.values():
                if unit.online and unit.status is not None:
                    self.publish(lambda u=unit: m.telemetry(u))  # type: ignore[misc]

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        interval = self.field.heartbeat_interval_s
        endpoint = self.command_endpoint or ""
        if self.server is not None:
            endpoint = self.server.endpoint
        while True:
            self.publish(s.Heartbeat(role="field", id=self.id, endpoint=endpoint))
            for unit in self.units.values():
                if unit.online:
                    self.publish(m.unit_heartbeat(unit, self.id, endpoint))
            n += 1
            # On a fixed grid, so a slow round does not stretch the interval.
            await asyncio.sleep(max(0.0, start + n * interval - loop.time()))

    # --- commands ----------------------------------------------------------------------------

    async def command(
        self, name: str, params: Params | None = None, identity: str = "local"
    ) -> Any:
        """Run command ``name`` as the server would, without the bus and without asking
        the authorizer (the caller is this process); audited as ``identity`` with the
        role ``local``. Raises what a not-ok ack would carry."""
        params = dict(params or {})
        try:
            result = await self._execute(name, params)
        except Exception as exc:
            refused = "invalid" if isinstance(exc, (CommandError, KeyError)) else "failed"
            self._audit(AuditRecord(identity, "local", name, params, False, refused,
                                    f"{type(exc).__name__}: {exc}"))  # fmt: skip
            raise
        self._audit(AuditRecord(identity, "local", name, params, True, None,
                                result if isinstance(result, dict) else "", result))  # fmt: skip
        return result

    async def _execute(self, name: str, params: Params) -> Any:
        table = self.command_table()
        if name not in table:
            raise KeyError(f"unknown command {name!r}")
        return await table[name](params)

    def _audit(self, record: AuditRecord) -> None:
        # Every command, run or refused, with who sent it as the transport says.
        self.publish(lambda: audit_event(record, self.id, self.units))

    def _server_handler(self, name: str) -> Any:
        async def handle(msg: s.CommandMsg) -> Any:
            return await self._execute(name, msg.body.params)

        return handle


async def serve(
    site: SiteConfig | FieldSite, topo: Topology, name: str, stop: asyncio.Event
) -> None:
    """Run field controller ``name`` (a ``site.field[i].id``) until ``stop`` is set; the
    launcher gives it a :class:`~vpp.config.field.FieldSite`, tests may give the site."""
    field = next((f for f in site.field if f.id == name), None)
    if field is None:
        err = ConfigError(f"no field controller {name!r}; known: {[f.id for f in site.field]}")
        err.field = "field"
        raise err
    ctl = FieldController(
        field,
        events_in=topo.events_in,
        command_endpoint=topo.commands[name],
        curve=topo.server_curve(name),
        insecure=topo.bus.insecure,
        authorizer=topo.authorizer(name),
        publish_curve=topo.client_curve(name, "broker"),
        max_message_bytes=topo.security.max_message_bytes,
        # A process of its own: ask for SCHED_FIFO and locked memory where allowed.
        realtime_settings=True,
    )
    async with ctl:
        await stop.wait()
