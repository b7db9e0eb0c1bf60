"""The field controller process: PMU frames -> core pipeline per unit -> inverter setpoints.

Frame path (docs/orchestrator.md, "Field controller"): a :class:`~vpp.drivers.pmu.PdcClient`
yields each decoded C37.118 data frame; every unit's :class:`~vpp.orchestrator.field_unit.
FieldUnit` steps its core pipeline with the frame's time and frequency; the setpoint goes
to the unit's :class:`~vpp.orchestrator.field_writer.SetpointWriter`, which returns at
once. Nothing on this path waits for ZeroMQ: publishing is a non-blocking PUB send that
drops when the broker is gone, so the response and the safety envelope go on alone.

Around it: inverter (and BMS) polling feeds the pipelines' telemetry; a watch loop turns
the communicators' online flags into ``device`` events; heartbeats (the field and each
online unit) and telemetry are published on their intervals; commands arrive on the
controller's ROUTER (:mod:`vpp.orchestrator.field_commands`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from typing import Any

import zmq

from vpp import c37118 as c
from vpp.config.models import FieldConfig, SiteConfig
from vpp.core import Decision
from vpp.drivers.communicator import ResourceCommunicator
from vpp.drivers.pmu import Backoff, PdcClient
from vpp.errors import ConfigError
from vpp.orchestrator import schema as s
from vpp.orchestrator.bus import Publisher, Server
from vpp.orchestrator.curve import ServerCurve
from vpp.orchestrator.field_commands import FieldCommands, Params
from vpp.orchestrator.field_unit import SEVERITY, FieldUnit
from vpp.orchestrator.field_writer import SetpointWriter
from vpp.orchestrator.topology import Topology

__all__ = ["FieldController", "serve"]

log = logging.getLogger(__name__)


class FieldController(FieldCommands):
    """One field controller (see the module docstring); ``async with`` runs it.

    ``events_in``: where to publish (None: nothing is published); ``command_endpoint``:
    the ROUTER to bind (None: commands only through :meth:`command`).
    """

    def __init__(
        self,
        field: FieldConfig,
        *,
        events_in: str | None = None,
        command_endpoint: str | None = None,
        curve: ServerCurve | None = None,
        insecure: bool = False,
        write_timeout_s: float = 1.0,
        pmu_backoff: Backoff | None = None,
        pmu_read_timeout_s: float = 2.0,
    ) -> None:
        self.field = field
        self.id = field.id
        self.units = {u.id: FieldUnit(u) for u in field.units}
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
        self.publisher: Publisher | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self.server: Server | None = None
        self.frames = 0
        self.frame_errors = 0
        self.publish_errors = 0
        self.last_decision: dict[str, Decision] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: list[Any] = []

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the bus sockets and start polling, the frame loop and the periodic loops."""
        if self.events_in is not None:
            self.publisher = Publisher(self.events_in, bind=False)
            # A plain (not asyncio) view of the PUB socket: a send that cannot suspend.
            self._pub = zmq.Socket.shadow(self.publisher.sock.underlying)
        for uid, comm in self.comms.items():
            unit = self.units[uid]
            self._unsubscribe.append(comm.subscribe_to_resource(uid, self._status_cb(unit)))
        for uid, bms in self.bms_comms.items():
            self._unsubscribe.append(bms.subscribe_to_resource(uid, self.units[uid].on_bms_status))
        if self.command_endpoint is not None:
            handlers = {name: self._server_handler(name) for name in self.command_table()}
            self.server = Server(
                self.command_endpoint,
                handlers,
                name=self.id,
                curve=self.curve,
                insecure=self.insecure,
            )
            await self.server.__aenter__()
        for coro, name in (
            (self._frame_loop(), "frames"),
            (self._watch_loop(), "watch"),
            (self._telemetry_loop(), "telemetry"),
            (self._heartbeat_loop(), "heartbeat"),
        ):
            self._tasks.append(asyncio.create_task(coro, name=f"field {self.id}: {name}"))

    async def close(self) -> None:
        """Stop every loop and close every connection and socket."""
        # Closed first: the PDC loop then ends by itself even if a cancellation is lost in
        # a connect attempt (asyncio.wait_for of Python 3.11 can swallow one).
        await self.pdc.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.server is not None:
            await self.server.aclose()
            self.server = None
        for writer in self.writers.values():
            await writer.close()
        for comm in (*self.comms.values(), *self.bms_comms.values()):
            await comm.close()
        if self.publisher is not None:
            self._pub = None
            self.publisher.close()
            self.publisher = None

    async def __aenter__(self) -> FieldController:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- publishing (never blocks) -------------------------------------------------------

    def publish(self, body: Any, sender: str | None = None) -> None:
        """Send one message if a publisher is open; a failure is counted, never raised."""
        if self._pub is None:
            return
        try:
            msg = s.make(body, sender or self.id)
            self._pub.send_multipart((msg.topic, s.encode(msg)), zmq.NOBLOCK)
        except (zmq.ZMQError, ValueError) as exc:
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
            s.Event(
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
        t, f, dfreq = frame.time, pmu.freq, pmu.dfreq
        valid = pmu.data_error == 0
        self.frames += 1
        decimate = self.frames % self.field.decisions_every == 0
        first: Decision | None = None
        for uid, unit in self.units.items():
            d = unit.on_frame(t, f, dfreq, valid)
            first = first or d
            self.last_decision[uid] = d
            if unit.enabled and unit.online is not False:
                self.writers[uid].offer(d.setpoint_kw)
            if d.violations or unit._active:
                for rec in unit.violations(d):
                    sev = SEVERITY.get(rec["action"], "warning")
                    self.event("safety", rec["detail"], unit=uid, severity=sev, data=rec)
            if decimate and self.publisher is not None:
                self.publish(
                    s.Decision(
                        unit=uid,
                        t=t,
                        hz=f,
                        rocof=d.rocof,
                        band=d.band.label if d.band is not None else "",
                        response_kw=d.response_kw,
                        base_kw=d.base_kw,
                        setpoint_kw=d.setpoint_kw,
                        action=d.action.label,
                    )
                )
        if first is None:
            return
        tr = first.transition
        if tr is not None:
            self.event(
                "band",
                f"{tr.from_band.label} -> {tr.to_band.label} at {f:.3f} Hz",
                severity="info" if tr.to_band.label == "normal" else "warning",
                data={"from": tr.from_band.label, "to": tr.to_band.label, "t": tr.time, "hz": f},
            )
        if decimate and math.isfinite(f) and f > 0:
            self.publish(
                s.Frequency(
                    hz=f,
                    rocof=first.rocof or 0.0,
                    t=t,
                    band=first.band.label if first.band is not None else "",
                )
            )

    # --- devices -------------------------------------------------------------------------

    def _status_cb(self, unit: FieldUnit) -> Any:
        def on_status(status: Mapping[str, float | bool]) -> None:
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

    async def _watch_loop(self) -> None:
        period = min(u.inverter.poll_interval_s for u in self.field.units) / 2
        while True:
            await asyncio.sleep(period)
            for uid, comm in self.comms.items():
                st = comm.status()[uid]
                unit = self.units[uid]
                if st["online"] is False and unit.online is not False:
                    self._online(unit, False, st["last_error"] or "no answer")

    async def _telemetry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.field.telemetry_interval_s)
            for unit in self.units.values():
                if unit.online and unit.status is not None:
                    self.publish(self._telemetry(unit))

    def _telemetry(self, unit: FieldUnit) -> s.Telemetry:
        st, cfg = unit.status or {}, unit.cfg
        d = unit.pipeline.decision
        safety = d.safety if d is not None else None
        limits = s.Limits(
            p_min_kw=-safety.max_charge_kw if safety is not None else 0.0,
            p_max_kw=safety.max_discharge_kw if safety is not None else 0.0,
        )
        return s.Telemetry(
            unit=unit.id,
            p_kw=float(st.get("active_power", 0.0)),
            q_kvar=float(st.get("reactive_power", 0.0)),
            soc_pct=min(100.0, max(0.0, float(st.get("soc", 0.0)))),
            soh_pct=min(100.0, max(0.0, float(st.get("soh", 100.0)))),
            temp_c=float(st.get("temperature_max", 0.0)),
            limits=limits,
            safety=d.action.label if d is not None else "none",  # type: ignore[arg-type]
            location="/".join(cfg.location.path()),
        )

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        interval = self.field.heartbeat_interval_s
        endpoint = self.command_endpoint or ""
        if self.server is not None:
            endpoint = self.server.endpoint
        while True:
            self.publish(s.Heartbeat(role="field", id=self.id, endpoint=endpoint))
            for uid, unit in self.units.items():
                if unit.online:
                    cfg = unit.cfg
                    caps = s.Capabilities(
                        rated_kw=cfg.rated_power_kw, rated_kwh=cfg.capacity_kwh, services=("fcr",)
                    )
                    hb = s.Heartbeat(
                        role="unit",
                        id=uid,
                        owner=self.id,
                        endpoint=endpoint,
                        location="/".join(cfg.location.path()),
                        capabilities=caps,
                    )
                    self.publish(hb, sender=uid)
            n += 1
            # On a fixed grid, so a slow round does not stretch the interval.
            await asyncio.sleep(max(0.0, start + n * interval - loop.time()))

    # --- commands ----------------------------------------------------------------------------

    async def command(self, name: str, params: Params | None = None, issued_by: str = "") -> Any:
        """Run command ``name`` as the server would (raises what a not-ok ack would carry)."""
        table = self.command_table()
        if name not in table:
            raise KeyError(f"unknown command {name!r}")
        params = dict(params or {})
        target = params.get("unit", self.id)
        data: dict[str, Any] = {
            "target": target,
            "command": name,
            "params": params,
            "issued_by": issued_by,
        }
        try:
            result = await table[name](params)
        except Exception as exc:
            data.update(ok=False, detail=f"{type(exc).__name__}: {exc}")
            self.event(
                "command",
                f"{name} {target}: refused: {exc}",
                severity="warning",
                unit=target if target in self.units else "",
                data=data,
            )
            raise
        data.update(ok=True, detail=result if isinstance(result, dict) else "")
        self.event(
            "command",
            f"{name} {target}: done",
            unit=target if target in self.units else "",
            data=data,
        )
        return result

    def _server_handler(self, name: str) -> Any:
        async def handle(msg: s.CommandMsg) -> Any:
            return await self.command(name, msg.body.params, msg.body.issued_by or msg.sender)

        return handle


async def serve(site: SiteConfig, topo: Topology, name: str, stop: asyncio.Event) -> None:
    """Run field controller ``name`` (a ``site.field[i].id``) until ``stop`` is set."""
    field = next((f for f in site.field if f.id == name), None)
    if field is None:
        err = ConfigError(f"no field controller {name!r}; known: {[f.id for f in site.field]}")
        err.field = "field"
        raise err
    bc = topo.bus_config(name)
    ctl = FieldController(
        field,
        events_in=topo.events_in,
        command_endpoint=topo.commands[name],
        curve=bc.server_curve(),
        insecure=topo.bus.insecure,
    )
    async with ctl:
        await stop.wait()
