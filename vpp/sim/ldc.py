"""A simulated load despatch centre: an IEC 60870-5-104 master that steers the plant.

:class:`Iec104Master` is a small controlling station on the project's own codec
(``vpp._core.iec104_*``): it connects, starts data transfer, keeps every monitored
point it receives (interrogated, spontaneous or cyclic) by address, acknowledges as the
link layer asks (S-frame after ``w`` I-frames or ``t2``), answers TESTFR, and sends
commands, waiting for their confirmation and termination.

:func:`run_ldc` is what a despatch centre does with it: an interrogation and a clock
synchronisation at start, an AGC set-point every ``cycle_s`` (a slow regulation signal,
:func:`agc_signal`), an interrogation every ``interrogate_s``, and one line a cycle on
what it asked and what the plant reports back. ``vpp sim scada`` runs it against a site;
the default site runs it as its ``ldc`` process (``simulation.ldc``), so the whole chain
(master -> outstation -> campus -> units -> telemetry -> points) can be watched.

A test tool and a demonstration, not a production master: one connection, no
redundancy group, commands one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from vpp._core import (
    Iec104Apdu,
    iec104_decode,
    iec104_encode_asdus,
    iec104_encode_i,
    iec104_encode_s,
    iec104_encode_u,
)
from vpp.config.models import SiteConfig
from vpp.errors import ScadaError, VppError
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.scada.iec104_commands import (
    C_CS_NA_1,
    C_IC_NA_1,
    COMMAND_TYPES,
    COT_ACT,
    COT_ACTCON,
    COT_ACTTERM,
)
from vpp.orchestrator.scada.iec104_map import Iec104PointMap

__all__ = ["Iec104Master", "LdcSettings", "agc_signal", "run_ldc", "serve"]

log = logging.getLogger(__name__)

#: The type id of each command type without a time tag (the despatch centre sends none).
_COMMAND_TYPES = {kind: tid for tid, (kind, timed) in COMMAND_TYPES.items() if not timed}
C_SE_NC_1 = _COMMAND_TYPES["setpoint_float"]
_SEQ = 1 << 15


@dataclass(frozen=True)
class Received:
    """A monitored point as last received: value, quality bits, time tag, cause."""

    value: bool | int | float | None
    quality: int
    time: float | None
    cot: int


class Iec104Master:
    """One connection to an outstation (see the module docstring)."""

    def __init__(self, host: str, port: int, *, common_address: int = 1, w: int = 8,
                 t2_s: float = 1.0, timeout_s: float = 10.0) -> None:  # fmt: skip
        self.host, self.port, self.ca = host, port, common_address
        self.w, self.t2_s, self.timeout_s = w, t2_s, timeout_s
        self.points: dict[int, Received] = {}
        self.received = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._send_seq = self._recv_seq = self._unacked = 0
        self._ack_due: float | None = None
        self._waiting: dict[tuple[int, int, int], asyncio.Future[bool]] = {}
        self._started = asyncio.Event()
        self.closed = asyncio.Event()

    async def connect(self) -> None:
        """Open the connection and start data transfer (OSError, TimeoutError)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.timeout_s)  # fmt: skip
        self._reader, self._writer = reader, writer
        self._task = asyncio.create_task(self._read(), name="ldc-read")
        writer.write(iec104_encode_u("startdt_act"))
        await asyncio.wait_for(self._started.wait(), self.timeout_s)

    async def close(self) -> None:
        """Close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self.closed.set()

    # ---- requests ----

    async def interrogate(self) -> int:
        """A general interrogation; the number of points received with it."""
        before = self.received
        await self._request(C_IC_NA_1, 0, 20, terminated=True)
        return self.received - before

    async def clock_sync(self, now: float | None = None) -> bool:
        """Clock synchronisation with ``now`` (default: this host's clock)."""
        return await self._request(C_CS_NA_1, 0, None, when=time.time() if now is None else now)

    async def command(self, type_id: int, ioa: int, value: bool | int | float,
                      *, select: bool = False) -> bool:  # fmt: skip
        """One command (set-point, single or double); True when confirmed. A select is
        confirmed only; an execute is waited for until its termination as well."""
        return await self._request(type_id, ioa, value, select=select, terminated=not select)

    async def _request(self, type_id: int, ioa: int, value: bool | int | float | None, *,
                       select: bool = False, terminated: bool = False,
                       when: float | None = None) -> bool:  # fmt: skip
        loop = asyncio.get_running_loop()
        con: asyncio.Future[bool] = loop.create_future()
        term: asyncio.Future[bool] | None = loop.create_future() if terminated else None
        self._waiting[(type_id, ioa, COT_ACTCON)] = con
        if term is not None:
            self._waiting[(type_id, ioa, COT_ACTTERM)] = term
        try:
            for asdu in iec104_encode_asdus(type_id, COT_ACT, self.ca,
                                            [(ioa, value, 0, select, when)]):  # fmt: skip
                self._send_i(asdu)
            ok = await asyncio.wait_for(con, self.timeout_s)
            if ok and term is not None:
                await asyncio.wait_for(term, self.timeout_s)
            return ok
        finally:
            self._waiting.pop((type_id, ioa, COT_ACTCON), None)
            self._waiting.pop((type_id, ioa, COT_ACTTERM), None)

    # ---- link layer ----

    def _send_i(self, asdu: bytes) -> None:
        assert self._writer is not None
        self._writer.write(iec104_encode_i(self._send_seq, self._recv_seq, asdu))
        self._send_seq = (self._send_seq + 1) % _SEQ
        self._unacked, self._ack_due = 0, None  # an I-frame acknowledges too

    async def _read(self) -> None:
        assert self._reader is not None and self._writer is not None
        buf = b""
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(self._reader.read(4096), self.t2_s)
                except TimeoutError:
                    chunk = None
                if chunk == b"":
                    return
                if chunk:
                    buf += chunk
                    while True:
                        used, apdu = iec104_decode(buf)
                        if apdu is None:
                            break
                        buf = buf[used:]
                        self._take(apdu)
                if self._unacked and (self._unacked >= self.w or (
                        self._ack_due is not None and time.monotonic() >= self._ack_due)):
                    self._writer.write(iec104_encode_s(self._recv_seq))
                    self._unacked, self._ack_due = 0, None
        except (OSError, ScadaError) as exc:
            log.warning("ldc: connection to %s:%d lost: %s", self.host, self.port, exc)
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))
            self.closed.set()

    def _take(self, apdu: Iec104Apdu) -> None:
        assert self._writer is not None
        if apdu.format == "U":
            if apdu.u_function == "startdt_con":
                self._started.set()
            elif apdu.u_function == "testfr_act":
                self._writer.write(iec104_encode_u("testfr_con"))
            return
        if apdu.format == "S":
            return
        self._recv_seq = (self._recv_seq + 1) % _SEQ
        self._unacked += 1
        if self._ack_due is None:
            self._ack_due = time.monotonic() + self.t2_s
        tid = apdu.type_id
        if tid < 45:  # monitored information
            for o in apdu.objects:
                self.points[o.ioa] = Received(o.value, o.qualifier, o.time, apdu.cot)
                self.received += 1
            return
        for o in apdu.objects:
            fut = self._waiting.get((tid, o.ioa, apdu.cot))
            if fut is not None and not fut.done():
                fut.set_result(not apdu.negative)


def agc_signal(t: float, amplitude_mw: float, period_s: float) -> float:
    """A slow regulation signal (MW): a sine of ``period_s`` with a third of a faster
    one on top, rounded to 10 kW as despatch centres send whole numbers of their unit."""
    x = math.sin(2 * math.pi * t / period_s) + math.sin(2 * math.pi * 3.3 * t / period_s) / 3
    return round(amplitude_mw * x / (4 / 3), 2)


@dataclass(frozen=True)
class LdcSettings:
    """What the simulated despatch centre does (``simulation.ldc``, ``vpp sim scada``)."""

    cycle_s: float = 4.0
    amplitude_mw: float = 0.2
    period_s: float = 120.0
    interrogate_s: float = 60.0


def _point(pmap: Iec104PointMap, name: str) -> int:
    for m in pmap.monitor:
        if m.name == name:
            return m.ioa
    raise ScadaError(f"the point map has no monitored point {name}", kind="address")


def _command(pmap: Iec104PointMap, name: str) -> tuple[int, int]:
    for c in pmap.commands:
        if c.name == name and c.type == "setpoint_float" and not c.select:
            return _COMMAND_TYPES[c.type], c.ioa
    raise ScadaError(f"the point map has no direct-execute set-point {name}", kind="address")


async def run_ldc(
    master: Iec104Master, pmap: Iec104PointMap, settings: LdcSettings,
    report: Callable[[str], None], stop: asyncio.Event,
) -> None:  # fmt: skip
    """Steer the plant until ``stop`` (or the connection closes): see the module
    docstring. ``report`` takes one line a cycle."""
    type_id, agc_ioa = _command(pmap, "agc.setpoint_mw")
    p_ioa, off_ioa = _point(pmap, "plant.p_mw"), _point(pmap, "agc.offset_mw")
    n = await master.interrogate()
    synced = await master.clock_sync()
    report(f"ldc: interrogation: {n} points; clock sync {'confirmed' if synced else 'refused'}")
    t0 = time.monotonic()
    next_gi = t0 + settings.interrogate_s
    while not stop.is_set() and not master.closed.is_set():
        t = time.monotonic() - t0
        mw = agc_signal(t, settings.amplitude_mw, settings.period_s)
        ok = await master.command(type_id, agc_ioa, mw)
        p, off = master.points.get(p_ioa), master.points.get(off_ioa)
        report(f"ldc: t={t:5.0f} s AGC set-point {mw:+.2f} MW {'accepted' if ok else 'REFUSED'}; "
               f"plant {_show(p)} MW, AGC offset {_show(off)} MW")  # fmt: skip
        if time.monotonic() >= next_gi:
            next_gi += settings.interrogate_s
            await master.interrogate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.cycle_s)


def _show(r: Received | None) -> str:
    if r is None or not isinstance(r.value, int | float):
        return "?"
    return f"{r.value:+.3f}" + (" (invalid)" if r.quality & 0x80 else "")


async def serve(site: SiteConfig, topo: Topology, name: str, stop: asyncio.Event) -> None:
    """The default site's ``ldc`` process: the despatch centre against the site's own
    IEC 104 outstation, reconnecting until ``stop``."""
    cfg, sim = site.scada.iec104, site.simulation.ldc
    units = [u.id for u in site.units()]
    pmap = Iec104PointMap.load(cfg.point_map, units)
    settings = LdcSettings(sim.cycle_s, sim.amplitude_mw, sim.period_s, sim.interrogate_s)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), sim.start_s)
    while not stop.is_set():
        master = Iec104Master(cfg.host, cfg.port, common_address=cfg.common_address
                              or pmap.common_address)  # fmt: skip
        try:
            await master.connect()
            await run_ldc(master, pmap, settings, log.info, stop)
        except (OSError, TimeoutError, ConnectionError, VppError) as exc:
            log.warning("ldc: %s:%d: %s; again in 2 s", cfg.host, cfg.port, exc)
        finally:
            await master.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)
