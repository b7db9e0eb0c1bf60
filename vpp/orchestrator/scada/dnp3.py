"""DNP3 outstation (IEEE 1815, MESA-DER style point map) serving the plant's points to the
utility's SCADA master and taking its commands (docs/scada-dnp3.md).

Built on dnp3py's outstation (its database, request handling and select-before-operate
rules), with our own TCP server and link layer around it: admission by the master's IP
address, link address checks, every malformed frame counted, events sent with time and
unsolicited when the master enabled them.

Threads: everything runs on the event loop except a control request (SELECT, OPERATE,
DIRECT_OPERATE), which dnp3py handles synchronously: it runs in one worker thread whose
handler hands each command to the async :class:`~vpp.orchestrator.scada.points.CommandSink`
on the loop and waits for its answer (``command_timeout_s``) before the response is
built. While the worker holds dnp3py's outstation, the loop leaves it alone: an image given
to :meth:`Dnp3Outstation.update` then is applied when the worker is done.

Authority is the transport only: a connection from an address of ``masters`` whose
frames carry the configured link addresses. A master that goes silent changes nothing in
the plant: after ``keepalive_s`` it is logged as lost and its connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from dnp3.core.flags import AnalogQuality, BinaryQuality
from dnp3.core.timestamp import DNP3Timestamp
from dnp3.database import (
    AnalogInputConfig,
    BinaryInputConfig,
    BinaryOutputConfig,
    Database,
    DatabaseConfig,
    EventBufferConfig,
    EventClass,
)
from dnp3.database.point import AnalogOutputConfig
from dnp3.outstation import OutstationConfig, UnsolicitedConfig

from vpp.errors import BindError, ScadaError
from vpp.orchestrator.scada._dnp3_conn import Connection
from vpp.orchestrator.scada._dnp3_engine import CommandBridge, LogThrottle, TimedOutstation
from vpp.orchestrator.scada.dnp3_map import Dnp3Config, Dnp3PointMap
from vpp.orchestrator.scada.points import CommandSink, PointImage, PointValue

__all__ = ["Dnp3Outstation"]

_COUNTERS = (
    "connections", "refused_peers", "frames_in", "frames_out", "points_sent", "polls",
    "commands", "commands_refused", "unsolicited_sent", "masters_lost", "clock_offset_ms",
)  # fmt: skip


class Dnp3Outstation:
    """The plant's DNP3 outstation (implements :class:`~vpp.orchestrator.scada.points.Outstation`).

    ``point_map`` gives every logical point its DNP3 address; ``sink`` carries out (or
    refuses) the masters' commands; ``clock`` (UNIX s) is what a master's time
    synchronisation is compared with (the offset is recorded, the clock never set).
    """

    def __init__(
        self,
        config: Dnp3Config,
        point_map: Dnp3PointMap,
        sink: CommandSink,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.point_map = point_map
        self._sink = sink
        self._clock = clock
        self._stats: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._throttle = LogThrottle()
        self._admitted = {_ip(m) for m in config.masters}
        self.engine = _build_engine(config, point_map, self._on_time)
        self._lock = asyncio.Lock()
        self._pending: PointImage | None = None
        self._server: asyncio.Server | None = None
        self._port = 0
        self._conns: dict[asyncio.Task[None], Connection] = {}
        self._unsol_conn: Connection | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._bridge: CommandBridge | None = None

    # --- the Outstation protocol ------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host:port``; BindError when the address cannot be bound."""
        loop = asyncio.get_running_loop()
        self._bridge = CommandBridge(
            self.point_map, self._sink, loop, self.config.command_timeout_s
        )
        self.engine.handler = self._bridge
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnp3-command")
        address = f"{self.config.host}:{self.config.port}"
        try:
            self._server = await asyncio.start_server(
                self._on_connect, self.config.host, self.config.port
            )
        except OSError as exc:
            self._executor.shutdown()
            raise BindError(f"DNP3 outstation cannot listen on {address}: {exc}",
                            address=address) from exc  # fmt: skip
        self._port = self._server.sockets[0].getsockname()[1]
        self._tasks = [
            asyncio.create_task(self._unsolicited_loop(), name="dnp3 unsolicited"),
            asyncio.create_task(self._watch_loop(), name="dnp3 keep-alive"),
        ]
        self.log(logging.INFO, f"dnp3: outstation {self.config.outstation_address} listening "
                               f"on {self.config.host}:{self._port}")  # fmt: skip

    @property
    def port(self) -> int:
        """The port bound (after :meth:`start`)."""
        return self._port

    def update(self, image: PointImage) -> None:
        """The plant's points now; events for the changes beyond a point's deadband."""
        if self._lock.locked():
            self._pending = image  # the worker holds the engine: applied when it is done
            return
        self._apply(image)

    def stats(self) -> dict[str, int]:
        """Counters (see docs/scada-dnp3.md); errors as ``error.<kind>``."""
        return dict(self._stats)

    async def close(self) -> None:
        """Stop listening, close every connection, stop the worker."""
        if self._server is not None:
            self._server.close()
        for t in self._tasks:
            t.cancel()
        conns = list(self._conns)
        for t in conns:
            t.cancel()
        await asyncio.gather(*self._tasks, *conns, return_exceptions=True)
        self._tasks = []
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # idle: every connection is done
            self._executor = None

    # --- for the connections ----------------------------------------------------------

    @property
    def bridge(self) -> CommandBridge:
        """The command handler (after :meth:`start`)."""
        assert self._bridge is not None, "not started"
        return self._bridge

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The worker thread of control requests (after :meth:`start`)."""
        assert self._executor is not None, "not started"
        return self._executor

    @contextlib.asynccontextmanager
    async def engine_lock(self) -> AsyncIterator[None]:
        """Hold dnp3py's outstation; an image that arrived meanwhile is applied after."""
        async with self._lock:
            yield
        pending, self._pending = self._pending, None
        if pending is not None:
            self.update(pending)

    def stats_add(self, key: str, n: int = 1) -> None:
        """Add ``n`` to a counter."""
        self._stats[key] = self._stats.get(key, 0) + n

    def count_error(self, error: ScadaError) -> None:
        """Count ``error`` under ``error.<kind>`` and log it (throttled per kind)."""
        self.stats_add(f"error.{error.kind}")
        self._throttle.log(logging.WARNING, f"error.{error.kind}", f"dnp3: {error}")

    def log(self, level: int, message: str) -> None:
        """Log a message (throttled per text)."""
        self._throttle.log(level, message, message)

    def unsolicited_enabled(self, conn: Connection) -> None:
        """``conn``'s master enabled unsolicited responses: they go to it from now on."""
        self._unsol_conn = conn
        self._wake.set()

    # --- inside -----------------------------------------------------------------------

    def _on_time(self, stamp: DNP3Timestamp) -> None:
        offset = stamp.milliseconds - self._clock() * 1000.0
        self._stats["clock_offset_ms"] = round(offset)
        self.log(logging.INFO, f"dnp3: time from the master, offset {offset:.0f} ms (recorded)")

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host, port = (str(peer[0]), int(peer[1])) if peer else ("?", 0)
        label = f"dnp3 {host}:{port}"
        refusal = None
        if _ip(host) not in self._admitted:
            refusal = "not an admitted master: closed"
        elif len(self._conns) >= self.config.max_connections:
            refusal = f"{len(self._conns)} connections already: closed"
        if refusal is not None:
            self.stats_add("refused_peers")
            self.count_error(ScadaError(refusal, kind="peer", where=label))
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        task = asyncio.current_task()
        assert task is not None
        conn = Connection(self, reader, writer, label, self.engine.new_connection_id())
        self._conns[task] = conn
        self.stats_add("connections")
        self.log(logging.INFO, f"{label}: master connected")
        try:
            await conn.run()
        except asyncio.CancelledError:
            # Closed by us (close(), a lost master): asyncio's stream server treats a
            # cancelled connection task as an error, so this one ends normally.
            pass
        finally:
            del self._conns[task]
            if self._unsol_conn is conn:
                self._unsol_conn = None
            self.log(logging.INFO, f"{label}: connection closed")

    async def _unsolicited_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            conn = self._unsol_conn
            if conn is None or not self.config.unsolicited:
                continue
            async with self.engine_lock():
                fragment = self.engine.generate_unsolicited()
            if fragment is None:
                continue
            try:
                ok = await conn.send_unsolicited(fragment, self.config.unsolicited_retries)
            except (ConnectionError, OSError):
                ok = False
            except Exception as exc:  # a bug costs these events, never the loop
                self.count_error(ScadaError(f"sending failed: {exc!r}", kind="internal",
                                            where=conn.label))  # fmt: skip
                ok = False
            if ok:
                self.stats_add("unsolicited_sent")
                if self.engine.database.event_buffer.total_count:
                    self._wake.set()  # more events came meanwhile
            else:
                # dnp3py took the events out of its buffer when it built the response:
                # they are lost; a master's integrity poll brings it up to date.
                self.engine.give_up_unsolicited()
                self.count_error(ScadaError(
                    "unsolicited response never confirmed: its events dropped",
                    kind="unsolicited", where=conn.label,
                ))  # fmt: skip

    async def _watch_loop(self) -> None:
        keepalive = self.config.keepalive_s
        if keepalive <= 0:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, keepalive / 4))
            now = loop.time()
            for task, conn in list(self._conns.items()):
                if now - conn.last_rx > keepalive and not conn.lost:
                    conn.lost = True
                    self.stats_add("masters_lost")
                    self.log(logging.WARNING, f"{conn.label}: master silent for {keepalive:g} "
                             "s, lost; connection closed, plant left as it is")  # fmt: skip
                    task.cancel()

    def _apply(self, image: PointImage) -> None:
        db, now = self.engine.database, self._clock()
        events = False
        for ai in self.point_map.analog_inputs:
            wire, quality, stamp = _analog(image.get(ai.name), ai.scale, now)
            point = db.analog_inputs[ai.index]
            if wire is None:  # absent or not a number: keep the value, not ONLINE
                wire, quality = point.value, AnalogQuality.COMM_LOST
            if wire == point.value and quality == point.quality:
                continue
            requality = quality != point.quality
            if db.update_analog_input(ai.index, wire, quality, stamp):
                events = True
            elif requality:  # dnp3py's deadband ignores the flags; a change of them is news
                db.event_buffer.add_analog_event(
                    event_class=EventClass(ai.event_class),
                    index=ai.index,
                    value=wire,
                    quality=quality,
                    timestamp=stamp,
                )
                point.last_event_value = wire
                events = True
        for bi in self.point_map.binary_inputs:
            bit, bquality, stamp = _binary(image.get(bi.name), now)
            bpoint = db.binary_inputs[bi.index]
            if bit is None:
                bit, bquality = bpoint.value, BinaryQuality.COMM_LOST
            if bit == bpoint.value and bquality == bpoint.quality:
                continue
            events = db.update_binary_input(bi.index, bit, bquality, stamp) or events
        for ao in self.point_map.analog_outputs:  # status (g40): the value in force
            wire, quality, stamp = _analog(image.get(ao.name), ao.scale, now)
            if wire is not None:
                db.update_analog_output(ao.index, wire, quality, stamp)
        for bo in self.point_map.binary_outputs:
            if bo.status is not None:
                bit, bquality, stamp = _binary(image.get(bo.status), now)
                if bit is not None:
                    db.update_binary_output(bo.index, bit, bquality, stamp)
        if events:
            self._wake.set()


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _stamp(t: float, now: float) -> DNP3Timestamp:
    ms = int(t * 1000) if math.isfinite(t) and 0 < t < 2**47 / 1000 else int(now * 1000)
    return DNP3Timestamp(ms)


def _analog(
    pv: PointValue | None, scale: float, now: float
) -> tuple[float | None, AnalogQuality, DNP3Timestamp | None]:
    if pv is None or isinstance(pv.value, bool) or not math.isfinite(pv.value):
        return None, AnalogQuality.COMM_LOST, None
    quality = AnalogQuality.ONLINE if pv.valid else AnalogQuality.COMM_LOST
    return float(round(pv.value * scale)), quality, _stamp(pv.time, now)


def _binary(
    pv: PointValue | None, now: float
) -> tuple[bool | None, BinaryQuality, DNP3Timestamp | None]:
    if pv is None or not isinstance(pv.value, bool):
        return None, BinaryQuality.COMM_LOST, None
    quality = BinaryQuality.ONLINE if pv.valid else BinaryQuality.COMM_LOST
    return pv.value, quality, _stamp(pv.time, now)


def _build_engine(
    config: Dnp3Config, point_map: Dnp3PointMap, on_time: Callable[[DNP3Timestamp], None]
) -> TimedOutstation:
    n = config.event_buffer
    db = Database(config=DatabaseConfig(
        max_binary_inputs=max(1, len(point_map.binary_inputs)),
        max_binary_outputs=max(1, len(point_map.binary_outputs)),
        max_analog_inputs=max(1, len(point_map.analog_inputs)),
        max_analog_outputs=max(1, len(point_map.analog_outputs)),
        max_counters=0, max_frozen_counters=0,
        event_buffer_config=EventBufferConfig(
            max_binary_events=n, max_analog_events=n, max_counter_events=1
        ),
    ))  # fmt: skip
    # Until the first image every point is flagged RESTART (not ONLINE).
    for ai in point_map.analog_inputs:
        db.add_analog_input(ai.index, AnalogInputConfig(
            event_class=EventClass(ai.event_class), deadband=ai.deadband * abs(ai.scale)
        ))  # fmt: skip
    for bi in point_map.binary_inputs:
        db.add_binary_input(bi.index, BinaryInputConfig(event_class=EventClass(bi.event_class)))
    for ao in point_map.analog_outputs:
        db.add_analog_output(ao.index, AnalogOutputConfig(track_commands=False))
    for bo in point_map.binary_outputs:
        # No output events: dnp3py would send them as binary input events (g2).
        db.add_binary_output(bo.index, BinaryOutputConfig(event_class=EventClass.NONE))
    out_config = OutstationConfig(
        address=config.outstation_address,
        master_address=config.master_address,
        max_fragment_size=config.max_fragment_size,
        select_timeout=config.select_timeout_s,
        confirm_timeout=config.confirm_timeout_s,
        unsolicited=UnsolicitedConfig(enabled=config.unsolicited),
        database=db.config,
        time_sync_required=config.need_time,
        analog_output_static_variation=1,  # int32: a g40v2 int16 would clip kW set-points
    )
    return TimedOutstation(config=out_config, database=db, time_handler=on_time)
