"""Peers of the IEC 104 outstation tests: the foreign master c104 (GPL-3.0, test-only),
a raw-socket master for what c104 will not send (malformed frames, silence), a command
sink recording its calls, and an outstation served for the length of a test."""

# No `from __future__ import annotations`: c104 checks a callback's annotations as
# objects, not strings.
import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import c104

from vpp._core import Iec104Apdu, iec104_decode, iec104_encode_i, iec104_encode_s, iec104_encode_u
from vpp.orchestrator.scada.iec104 import Iec104Outstation
from vpp.orchestrator.scada.iec104_map import Iec104Config, Iec104PointMap
from vpp.orchestrator.scada.points import CommandOutcome

TIMEOUT = 5.0
UNITS = ["u1", "u2"]


class RecordingSink:
    """A CommandSink that records each call and answers ``outcome``."""

    def __init__(self, outcome: CommandOutcome | None = None) -> None:
        self.calls: list[tuple[str, str, float | bool]] = []
        self.outcome = outcome or CommandOutcome(True)

    async def __call__(self, master: str, point: str, value: float | bool) -> CommandOutcome:
        self.calls.append((master, point, value))
        return self.outcome


@contextlib.asynccontextmanager
async def served(
    sink: RecordingSink | None = None,
    clock: Callable[[], float] = time.time,
    **config: Any,
) -> AsyncIterator[tuple[Iec104Outstation, RecordingSink]]:
    """An outstation on a free loopback port with the default map for UNITS."""
    sink = sink or RecordingSink()
    config.setdefault("port", 0)
    config.setdefault("cyclic_s", 0)
    cfg = Iec104Config(**config)
    out = Iec104Outstation(cfg, Iec104PointMap.load(None, UNITS), sink, clock=clock)
    await out.start()
    try:
        yield out, sink
    finally:
        await out.close()


async def until(cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``cond`` until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class C104Master:
    """The foreign master: a c104 client with one connection and station (blocking calls:
    run them with asyncio.to_thread)."""

    def __init__(self, port: int, points: dict[int, c104.Type] | None = None) -> None:
        self.client = c104.Client(tick_rate_ms=50, command_timeout_ms=2000)
        conn = self.client.add_connection(ip="127.0.0.1", port=port, init=c104.Init.NONE)
        assert conn is not None
        self.conn = conn
        station = conn.add_station(common_address=1)
        assert station is not None
        self.station = station
        self.points: dict[int, c104.Point] = {}
        for ioa, t in (points or {}).items():
            self.add(ioa, t)
        self._actterms = 0
        self._lock = threading.Lock()

        def on_raw(connection: c104.Connection, data: bytes) -> None:
            if len(data) > 8 and data[8] & 0x3F == 10:  # ACTTERM
                with self._lock:
                    self._actterms += 1

        conn.on_receive_raw(on_raw)

    def command(self, point: c104.Point) -> bool:
        """Send ``point``'s command; when confirmed, wait for its ACTTERM too. (c104
        returns on ACTCON, and an ACTTERM arriving while it waits for the next command's
        ACTCON makes it report that next command failed.)"""
        with self._lock:
            before = self._actterms
        if not point.transmit(cause=c104.Cot.ACTIVATION):
            return False
        deadline = time.monotonic() + TIMEOUT
        while True:
            with self._lock:
                if self._actterms > before:
                    return True
            assert time.monotonic() < deadline, "no ACTTERM after a positive ACTCON"
            time.sleep(0.002)

    def interrogate(self, tries: int = 3) -> bool:
        """A general interrogation, asked again when c104 gives up on it: on a loaded
        machine its client aborts a task that waited > 100 ms for its own mutex
        ("Potential Deadlock") and reports the interrogation failed, as a real master
        would retry. For tests that count interrogations, call ``conn.interrogation``."""
        for _ in range(tries):
            if self.conn.interrogation(1):
                return True
            time.sleep(0.5)
        return False

    def add(self, ioa: int, t: c104.Type, sbe: bool = False) -> c104.Point:
        mode = c104.CommandMode.SELECT_AND_EXECUTE if sbe else c104.CommandMode.DIRECT
        p = self.station.add_point(io_address=ioa, type=t, command_mode=mode)
        assert p is not None
        self.points[ioa] = p
        return p

    def open(self) -> None:
        """Connect and start data transfer (STARTDT)."""
        self.client.start()
        deadline = time.monotonic() + TIMEOUT
        while not self.conn.is_connected:
            assert time.monotonic() < deadline, "c104 did not connect"
            time.sleep(0.01)
        assert self.conn.unmute()
        while self.conn.state != c104.ConnectionState.OPEN:
            assert time.monotonic() < deadline, "c104 did not start data transfer"
            time.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect_all()
        self.client.stop()


@contextlib.asynccontextmanager
async def c104_master(
    port: int, points: dict[int, c104.Type] | None = None
) -> AsyncIterator[C104Master]:
    m = C104Master(port, points)
    try:
        await asyncio.to_thread(m.open)
        yield m
    finally:
        await asyncio.to_thread(m.close)


class RawMaster:
    """A master on a bare socket, speaking through the codec: for frames c104 will not
    send. Keeps its own sequence numbers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.vs = 0
        self.vr = 0
        self._buf = b""

    @classmethod
    async def connect(cls, port: int, source: str = "127.0.0.1") -> "RawMaster":
        r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(r, w)

    def send(self, frame: bytes) -> None:
        self.writer.write(frame)

    async def startdt(self) -> None:
        self.send(iec104_encode_u("startdt_act"))
        apdu = await self.read()
        assert apdu is not None and apdu.u_function == "startdt_con"

    def send_asdu(self, asdu: bytes) -> None:
        self.send(iec104_encode_i(self.vs, self.vr, asdu))
        self.vs += 1

    def ack(self) -> None:
        self.send(iec104_encode_s(self.vr))

    async def read(self, timeout: float = TIMEOUT) -> Iec104Apdu | None:
        """The next APDU, None at end of stream."""
        while True:
            n, apdu = iec104_decode(self._buf)
            if apdu is not None:
                self._buf = self._buf[n:]
                if apdu.format == "I":
                    self.vr = apdu.send_seq + 1
                return apdu
            data = await asyncio.wait_for(self.reader.read(4096), timeout)
            if not data:
                return None
            self._buf += data

    async def read_i(self, timeout: float = TIMEOUT) -> Iec104Apdu:
        """The next I-frame (skipping U and S frames)."""
        while True:
            apdu = await self.read(timeout)
            assert apdu is not None, "connection closed"
            if apdu.format == "I":
                return apdu

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        """Whether the outstation closes the connection within ``timeout``."""
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(4096), timeout)
                if not data:
                    return True
        except TimeoutError:  # (an OSError: caught first)
            return False
        except (ConnectionError, OSError):
            return True

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
