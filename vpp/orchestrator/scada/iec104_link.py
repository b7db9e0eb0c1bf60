"""One IEC 60870-5-104 connection of the outstation: the link layer (APCI).

Framing, send and receive sequence numbers, the k window and w acknowledgement, the
timers t1 (no acknowledgement: close), t2 (acknowledge what was received) and t3
(TESTFR when idle), and STARTDT / STOPDT / TESTFR. ASDUs go to the outstation's
handler; the outstation queues ASDUs to send with :meth:`Iec104Link.send_asdu`, which
go out as the window allows.

Anything wrong on the wire (a malformed APDU, a wrong N(S), an N(R) acknowledging
frames never sent, an I-frame before STARTDT, a timeout) is a :class:`ScadaError`
counted under its kind, logged (throttled) and closes this connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable

from vpp._core import (
    Iec104Apdu,
    iec104_decode,
    iec104_encode_i,
    iec104_encode_s,
    iec104_encode_u,
)
from vpp.errors import ScadaError
from vpp.orchestrator.scada.iec104_map import Iec104Config

__all__ = ["Iec104Link", "LogThrottle"]

log = logging.getLogger(__name__)

#: Sequence numbers count modulo 2^15.
SEQ_MODULO = 1 << 15
#: The longest APDU: start, length and 253 octets.
MAX_APDU = 255
#: ASDUs waiting for the window beyond this mean the master does not keep up: close.
MAX_QUEUE = 4096


class LogThrottle:
    """At most ``per_s`` warning lines a second; the rest are counted and summed up in
    the next line logged, so a flood of bad frames cannot flood the log."""

    def __init__(self, per_s: int = 5) -> None:
        self._per_s = per_s
        self._window = 0.0
        self._lines = 0
        self._suppressed = 0

    def warning(self, msg: str) -> None:
        """Log ``msg`` unless this second's budget is spent."""
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._window, self._lines = now, 0
        if self._lines >= self._per_s:
            self._suppressed += 1
            return
        self._lines += 1
        if self._suppressed:
            msg = f"{msg} ({self._suppressed} similar lines suppressed)"
            self._suppressed = 0
        log.warning("%s", msg)


#: The outstation's handler of a received I-frame: (link, apdu, the frame's bytes).
AsduHandler = Callable[["Iec104Link", Iec104Apdu, bytes], Awaitable[None]]


class Iec104Link:
    """The link layer of one admitted connection. ``master`` names the peer
    (``iec104 ip:port``); ``counters`` are the outstation's, shared by its links."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        config: Iec104Config,
        master: str,
        counters: Counter[str],
        throttle: LogThrottle,
        on_asdu: AsduHandler,
        on_started: Callable[[Iec104Link], None],
    ) -> None:
        self.master = master
        self.started = False
        #: Live selects of select-before-execute: IOA -> (type id, value, deadline).
        self.selects: dict[int, tuple[int, float | bool, float]] = {}
        self._reader, self._writer = reader, writer
        self._cfg = config
        self._counters = counters
        self._throttle = throttle
        self._on_asdu, self._on_started = on_asdu, on_started
        self._loop = asyncio.get_running_loop()
        self._vs = 0  # N(S) of the next I-frame sent
        self._vr = 0  # N(S) expected of the next I-frame received
        self._ack = 0  # oldest of our I-frames not yet acknowledged
        self._unacked: deque[float] = deque()  # send times of those
        self._queue: deque[bytes] = deque()
        self._rx_unacked = 0
        self._rx_first = 0.0
        self._last_rx = self._loop.time()
        self._test_sent: float | None = None
        self._stop_pending = False
        self._ever_started = False
        self.closed = False

    # -- sending -------------------------------------------------------------------

    def _write(self, frame: bytes) -> None:
        if self.closed:
            return
        self._writer.write(frame)
        self._counters["frames_out"] += 1

    def send_asdu(self, asdu: bytes) -> None:
        """Queue an ASDU; it goes out in an I-frame as soon as the k window allows.
        Ignored unless data transfer is started (STARTDT)."""
        if not self.started or self.closed:
            return
        if len(self._queue) >= MAX_QUEUE:
            self.fail(
                ScadaError(
                    "send queue full: the master does not acknowledge",
                    kind="overflow",
                    where=self.master,
                )
            )
            return
        self._queue.append(asdu)
        self._pump()

    def _outstanding(self) -> int:
        return (self._vs - self._ack) % SEQ_MODULO

    def _pump(self) -> None:
        while self._queue and self.started and self._outstanding() < self._cfg.k:
            asdu = self._queue.popleft()
            self._write(iec104_encode_i(self._vs, self._vr, asdu))
            self._unacked.append(self._loop.time())
            self._vs = (self._vs + 1) % SEQ_MODULO
            self._rx_unacked = 0  # the I-frame carried N(R)

    def _send_s(self) -> None:
        self._write(iec104_encode_s(self._vr))
        self._rx_unacked = 0

    # -- closing -------------------------------------------------------------------

    def fail(self, err: ScadaError) -> None:
        """Count, log (throttled) and close this connection for ``err``."""
        self._counters[f"error.{err.kind}"] += 1
        self._throttle.warning(f"{err} (kind {err.kind}); closing the connection")
        self.close()

    def close(self) -> None:
        """Drop the connection at once (no flush: the peer is gone or misbehaving)."""
        if not self.closed:
            self.closed = True
            self.started = False
            self._writer.transport.abort()

    # -- receiving -----------------------------------------------------------------

    async def run(self) -> None:
        """Read and handle APDUs until the peer or the outstation closes the connection."""
        timers = asyncio.create_task(self._timers(), name=f"{self.master} timers")
        buf = bytearray()
        try:
            while not self.closed:
                data = await self._reader.read(65536)
                if not data:
                    break
                self._last_rx = self._loop.time()
                buf += data
                while buf and not self.closed:
                    try:
                        n, apdu = iec104_decode(bytes(buf[:MAX_APDU]))
                    except ScadaError as exc:
                        self.fail(ScadaError(str(exc), kind=exc.kind, where=self.master))
                        return
                    if apdu is None:
                        break
                    frame = bytes(buf[:n])
                    del buf[:n]
                    await self._on_apdu(apdu, frame)
        except (ConnectionError, OSError):
            pass  # the peer went away; nothing to answer
        finally:
            self.close()
            timers.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timers

    def _protocol_error(self, message: str, kind: str) -> None:
        self.fail(ScadaError(message, kind=kind, where=self.master))

    async def _on_apdu(self, apdu: Iec104Apdu, frame: bytes) -> None:
        self._counters["frames_in"] += 1
        if apdu.format == "U":
            self._on_u(apdu.u_function or "")
        elif apdu.format == "S":
            self._on_ack(apdu.recv_seq)
        else:
            if not self.started:
                self._protocol_error("I-frame before STARTDT", "state")
                return
            if apdu.send_seq != self._vr:
                self._protocol_error(
                    f"N(S) {apdu.send_seq} received, {self._vr} expected", "sequence"
                )
                return
            self._vr = (self._vr + 1) % SEQ_MODULO
            if not self._on_ack(apdu.recv_seq):
                return
            self._rx_unacked += 1
            if self._rx_unacked == 1:
                self._rx_first = self._loop.time()
            await self._on_asdu(self, apdu, frame)
            # Answers sent by the handler carried N(R); acknowledge only what is left.
            if self._rx_unacked >= self._cfg.w:
                self._send_s()

    def _on_u(self, function: str) -> None:
        if function == "startdt_act":
            self.started = True
            self._stop_pending = False
            self._write(iec104_encode_u("startdt_con"))
            if not self._ever_started:
                self._ever_started = True
                self._on_started(self)
            self._pump()
        elif function == "stopdt_act":
            # Data not yet sent is dropped: a general interrogation after the next
            # STARTDT brings the master up to date.
            self.started = False
            self._queue.clear()
            self._stop_pending = True
            self._maybe_stop_con()
        elif function == "testfr_act":
            self._write(iec104_encode_u("testfr_con"))
        elif function == "testfr_con":
            self._test_sent = None
        # STARTDT/STOPDT con from a master mean nothing to an outstation: ignored.

    def _maybe_stop_con(self) -> None:
        # STOPDT con only once every I-frame sent is acknowledged.
        if self._stop_pending and not self._unacked:
            self._stop_pending = False
            self._write(iec104_encode_u("stopdt_con"))

    def _on_ack(self, nr: int) -> bool:
        acked = (nr - self._ack) % SEQ_MODULO
        if acked > self._outstanding():
            self._protocol_error(
                f"N(R) {nr} acknowledges I-frames never sent (next N(S) {self._vs})", "sequence"
            )
            return False
        for _ in range(acked):
            self._unacked.popleft()
        self._ack = nr
        self._maybe_stop_con()
        self._pump()
        return True

    async def _timers(self) -> None:
        cfg = self._cfg
        tick = min(max(min(cfg.t1_s, cfg.t2_s, cfg.t3_s) / 5, 0.01), 0.5)
        while not self.closed:
            await asyncio.sleep(tick)
            now = self._loop.time()
            if self._unacked and now - self._unacked[0] > cfg.t1_s:
                self._protocol_error(
                    f"no acknowledgement of I-frames within t1 ({cfg.t1_s} s)", "t1"
                )
            elif self._test_sent is not None and now - self._test_sent > cfg.t1_s:
                self._protocol_error(f"no TESTFR con within t1 ({cfg.t1_s} s)", "t1")
            elif self._rx_unacked and now - self._rx_first >= cfg.t2_s:
                self._send_s()
            elif self._test_sent is None and now - self._last_rx >= cfg.t3_s:
                self._write(iec104_encode_u("testfr_act"))
                self._test_sent = now
