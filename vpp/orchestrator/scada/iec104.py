"""IEC 60870-5-104 outstation: serves the plant's points to the grid operator's SCADA
master and takes its commands (docs/scada-iec104.md).

- Admission: only peers whose IP is in ``masters``, at most ``max_connections`` at once;
  any other is closed at once, counted (``refused_peers``) and logged. The authority of
  a command is the admitted connection, never anything in the message.
- Redundancy: each connection gets data after its own STARTDT (a master that keeps a
  standby connection leaves it stopped). M_EI_NA_1 (end of initialisation) goes out
  after a connection's first STARTDT.
- General interrogation (C_IC_NA_1, QOI 20): ACTCON, every monitored point with cause 20
  (M_ME_NC_1, M_SP_NA_1, M_DP_NA_1), ACTTERM. Broadcast address 0xFFFF accepted.
- Clock synchronisation (C_CS_NA_1): confirmed with the time received; the system clock
  is not set, the offset (master - local) is kept in ``clock_offset_ms`` and logged.
- Spontaneous (cause 3): :meth:`update` sends points that changed beyond their deadband
  (floats) or changed (states, validity), time-tagged (M_ME_TF_1, M_SP_TB_1, M_DP_TB_1).
  Cyclic (cause 1): every ``cyclic_s`` the float points as M_ME_NC_1.
- Commands: :mod:`vpp.orchestrator.scada.iec104_commands`; the link layer:
  :mod:`vpp.orchestrator.scada.iec104_link`.

Points not in the image yet are sent with the IV (invalid) quality bit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable

from vpp._core import Iec104Apdu, iec104_encode_asdus, iec104_reply
from vpp.errors import BindError, ScadaError
from vpp.orchestrator.scada.iec104_commands import (
    C_CS_NA_1,
    C_IC_NA_1,
    COMMAND_TYPES,
    COT_ACT,
    COT_ACTCON,
    COT_ACTTERM,
    COT_DEACT,
    COT_DEACTCON,
    COT_UNKNOWN_CA,
    COT_UNKNOWN_CAUSE,
    M_EI_NA_1,
    Iec104Commands,
)
from vpp.orchestrator.scada.iec104_link import Iec104Link, LogThrottle
from vpp.orchestrator.scada.iec104_map import Iec104Config, Iec104PointMap, MonitorPoint
from vpp.orchestrator.scada.points import CommandSink, PointImage, PointValue

__all__ = ["Iec104Outstation"]

log = logging.getLogger(__name__)

IV = 0x80  # quality descriptor: invalid
BROADCAST_CA = 0xFFFF
COT_PERIODIC, COT_SPONT, COT_INIT, COT_INROGEN, COT_UNKNOWN_TYPE = 1, 3, 4, 20, 44
QOI_STATION = 20
#: Monitor type -> (type id without time, type id with CP56Time2a).
TYPE_IDS = {"float": (13, 36), "single": (1, 30), "double": (3, 31)}
#: CP56Time2a has a two-digit year: 2000..2099 (UNIX s).
TIME_RANGE = (946_684_800.0, 4_102_444_800.0)

#: (ioa, value, qualifier, select, time) as the encoder takes them.
_Obj = tuple[int, float | bool | int, int, bool, float | None]


def _element(p: MonitorPoint, pv: PointValue | None) -> tuple[float | bool | int, int]:
    """The value and quality descriptor of a point (IV when unknown or invalid)."""
    if pv is None:
        return (0.0 if p.type == "float" else False if p.type == "single" else 0), IV
    q = 0 if pv.valid else IV
    if p.type == "float":
        v = float(pv.value)
        return v, q if math.isfinite(v) else IV
    on = bool(pv.value)
    return (on if p.type == "single" else 2 if on else 1), q


def _changed(p: MonitorPoint, pv: PointValue, last: PointValue | None) -> bool:
    if last is None or pv.valid != last.valid:
        return True
    if p.type != "float":
        return bool(pv.value) != bool(last.value)
    a, b = float(pv.value), float(last.value)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) != math.isnan(b)
    return abs(a - b) > p.deadband


class Iec104Outstation:
    """The IEC 104 outstation of the plant (implements
    :class:`~vpp.orchestrator.scada.points.Outstation`). ``clock`` gives the wall time
    (UNIX s) for time tags, command ages and the clock offset."""

    def __init__(
        self,
        config: Iec104Config,
        point_map: Iec104PointMap,
        sink: CommandSink,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = config
        self._ca = config.common_address or point_map.common_address
        self._points = point_map.monitor
        self._clock = clock
        self._tz_s = config.time_zone_offset_h * 3600.0
        self._counters: Counter[str] = Counter()
        self._throttle = LogThrottle()
        self._commands = Iec104Commands(
            config, self._ca, point_map.commands, sink, self._counters, self._throttle, clock
        )
        self._image: dict[str, PointValue] = {}
        self._last: dict[str, PointValue] = {}
        self._links: set[Iec104Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._cyclic: asyncio.Task[None] | None = None
        self._clock_offset_ms = 0

    # -- Outstation ----------------------------------------------------------------

    async def start(self) -> None:
        """Bind ``host:port`` and serve; BindError when it cannot be bound."""
        address = f"{self._cfg.host}:{self._cfg.port}"
        try:
            self._server = await asyncio.start_server(self._serve, self._cfg.host, self._cfg.port)
        except OSError as exc:
            raise BindError(
                f"IEC 104 outstation cannot listen on {address}: {exc}", address=address
            ) from exc
        if self._cfg.cyclic_s > 0:
            self._cyclic = asyncio.create_task(self._cyclic_loop(), name="iec104 cyclic")
        log.info(
            "IEC 104 outstation listening on %s:%d (common address %d)",
            self._cfg.host,
            self.port,
            self._ca,
        )

    @property
    def port(self) -> int:
        """The port bound (after :meth:`start`; 0 before)."""
        if self._server is None or not self._server.sockets:
            return 0
        return int(self._server.sockets[0].getsockname()[1])

    def update(self, image: PointImage) -> None:
        """Take the plant's points now; send what changed to every started connection."""
        spont: dict[int, list[_Obj]] = {}
        for p in self._points:
            pv = image.get(p.name)
            if pv is None:
                continue
            self._image[p.name] = pv
            if not _changed(p, pv, self._last.get(p.name)):
                continue
            self._last[p.name] = pv
            value, q = _element(p, pv)
            t = pv.time + self._tz_s
            if not (math.isfinite(t) and TIME_RANGE[0] <= t < TIME_RANGE[1]):
                t, q = self._clock() + self._tz_s, IV
            spont.setdefault(TYPE_IDS[p.type][1], []).append((p.ioa, value, q, False, t))
        for type_id, objs in spont.items():
            self._broadcast(type_id, COT_SPONT, objs)

    def stats(self) -> dict[str, int]:
        """Counters: connections (open), active (started), refused_peers, frames_in,
        frames_out, points_sent, interrogations, commands, commands_refused,
        clock_offset_ms and ``error.<kind>``."""
        out = {
            k: 0
            for k in (
                "connections_total", "refused_peers", "frames_in", "frames_out",
                "points_sent", "interrogations", "commands", "commands_refused",
            )
        }  # fmt: skip
        out.update(self._counters)
        out["connections"] = sum(1 for link in self._links if not link.closed)
        out["active"] = sum(1 for link in self._links if link.started)
        out["clock_offset_ms"] = self._clock_offset_ms
        return out

    async def close(self) -> None:
        """Stop listening, close every connection and wait for their handlers."""
        if self._cyclic is not None:
            self._cyclic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cyclic
            self._cyclic = None
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- connections ---------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer = writer.get_extra_info("peername")
        ip, port = (str(peer[0]), int(peer[1])) if peer else ("?", 0)
        master = f"iec104 {ip}:{port}"
        try:
            refusal = None
            if ip not in self._cfg.masters:
                refusal = "not an admitted master"
            elif sum(1 for link in self._links if not link.closed) >= self._cfg.max_connections:
                refusal = f"already {self._cfg.max_connections} connections"
            if refusal is not None:
                self._counters["refused_peers"] += 1
                self._throttle.warning(f"{master}: connection refused: {refusal}")
                writer.transport.abort()
                return
            self._counters["connections_total"] += 1
            log.info("%s: connected", master)
            link = Iec104Link(
                reader, writer, self._cfg, master, self._counters, self._throttle,
                self._on_asdu, self._on_started,
            )  # fmt: skip
            self._links.add(link)
            try:
                await link.run()
            finally:
                self._links.discard(link)
                log.info("%s: disconnected", master)
        finally:
            writer.transport.abort()
            self._handlers.discard(task)

    def _on_started(self, link: Iec104Link) -> None:
        # COI 0: local power switched on (the outstation was not reset by the master).
        for asdu in iec104_encode_asdus(M_EI_NA_1, COT_INIT, self._ca, [(0, 0, 0, False, None)]):
            link.send_asdu(asdu)

    def _broadcast(
        self, type_id: int, cot: int, objs: list[_Obj], links: Iterable[Iec104Link] | None = None
    ) -> None:
        targets = [link for link in (self._links if links is None else links) if link.started]
        if not targets or not objs:
            return
        asdus = iec104_encode_asdus(type_id, cot, self._ca, objs)
        for link in targets:
            for asdu in asdus:
                link.send_asdu(asdu)
            self._counters["points_sent"] += len(objs)

    async def _cyclic_loop(self) -> None:
        floats = [p for p in self._points if p.type == "float"]
        while True:
            await asyncio.sleep(self._cfg.cyclic_s)
            objs = [(p.ioa, *_element(p, self._image.get(p.name)), False, None) for p in floats]
            self._broadcast(TYPE_IDS["float"][0], COT_PERIODIC, objs)  # type: ignore[arg-type]

    # -- ASDUs ---------------------------------------------------------------------

    async def _on_asdu(self, link: Iec104Link, apdu: Iec104Apdu, frame: bytes) -> None:
        t = apdu.type_id
        if t in COMMAND_TYPES:
            await self._commands.handle(link, apdu, frame)
        elif t == C_IC_NA_1:
            self._interrogation(link, apdu, frame)
        elif t == C_CS_NA_1:
            self._clock_sync(link, apdu, frame)
        else:
            self._refuse(link, frame, COT_UNKNOWN_TYPE, "type", f"type {t} is not served")

    def _refuse(self, link: Iec104Link, frame: bytes, cot: int, kind: str, message: str) -> None:
        self._counters[f"error.{kind}"] += 1
        self._throttle.warning(f"{ScadaError(message, kind=kind, where=link.master)}: refused")
        link.send_asdu(iec104_reply(frame, cot, True))

    def _station_checks(
        self, link: Iec104Link, apdu: Iec104Apdu, frame: bytes, causes: tuple[int, ...]
    ) -> bool:
        if apdu.cot not in causes:
            self._refuse(
                link, frame, COT_UNKNOWN_CAUSE, "cause", f"cause {apdu.cot} for type {apdu.type_id}"
            )
            return False
        if apdu.common_address not in (self._ca, BROADCAST_CA):
            self._refuse(
                link, frame, COT_UNKNOWN_CA, "address", f"common address {apdu.common_address}"
            )
            return False
        if len(apdu.objects) != 1:
            link.fail(
                ScadaError(f"{len(apdu.objects)} objects, not one", kind="asdu", where=link.master)
            )
            return False
        return True

    def _interrogation(self, link: Iec104Link, apdu: Iec104Apdu, frame: bytes) -> None:
        if not self._station_checks(link, apdu, frame, (COT_ACT, COT_DEACT)):
            return
        if apdu.cot == COT_DEACT:
            # An interrogation is answered at once: there is nothing left to stop.
            link.send_asdu(iec104_reply(frame, COT_DEACTCON, True))
            return
        if apdu.objects[0].value != QOI_STATION:
            self._refuse(
                link,
                frame,
                COT_ACTCON,
                "value",
                f"QOI {apdu.objects[0].value} (only 20, station, is served)",
            )
            return
        self._counters["interrogations"] += 1
        link.send_asdu(iec104_reply(frame, COT_ACTCON, False))
        groups: dict[int, list[_Obj]] = {}
        for p in self._points:
            value, q = _element(p, self._image.get(p.name))
            groups.setdefault(TYPE_IDS[p.type][0], []).append((p.ioa, value, q, False, None))
        for type_id, objs in groups.items():
            self._broadcast(type_id, COT_INROGEN, objs, [link])
        link.send_asdu(iec104_reply(frame, COT_ACTTERM, False))

    def _clock_sync(self, link: Iec104Link, apdu: Iec104Apdu, frame: bytes) -> None:
        if not self._station_checks(link, apdu, frame, (COT_ACT,)):
            return
        master_time = apdu.objects[0].time
        if master_time is None or apdu.objects[0].time_invalid:
            self._refuse(
                link, frame, COT_ACTCON, "time", "clock synchronisation with an invalid time"
            )
            return
        offset_s = master_time - self._tz_s - self._clock()
        self._clock_offset_ms = round(offset_s * 1000)
        log.info(
            "%s: clock synchronisation: master - local = %+.3f s (system clock not set)",
            link.master,
            offset_s,
        )
        link.send_asdu(iec104_reply(frame, COT_ACTCON, False))
