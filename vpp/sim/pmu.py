"""A simulated PMU that speaks IEEE C37.118.2 over TCP (commands, data) and UDP (data).

:class:`PmuServer` streams data frames at 10, 25 or 50 frames/s. Frame ``k`` carries
the time ``t0 + k / rate`` exactly (SOC and FRACSEC computed from integers, so the
timestamps sit on the reporting grid) and is sent at that absolute deadline: the
schedule is computed from the start time, never by adding periods, so it cannot drift.
Frequency comes from a :class:`~vpp.sim.frequency.FrequencyProfile` plus white noise,
or from a :class:`~vpp.sim.frequency.FrequencySource` such as the grid model's
:class:`~vpp.sim.grid_model.GridFrequencySource` (sampled once per frame, in order).
With a profile, frame ``k`` is a pure function of ``k`` (:mod:`vpp.sim.pmu_signal`):
:meth:`PmuServer.data_frame` builds any frame at its simulated time, without waiting.

Every field sent lies within the standard's ranges: phasor angles in (-pi, pi],
magnitudes >= 0, FRACSEC below TIME_BASE, time quality "locked", STAT 0 (good data, in
sync, sorted by time stamp, no trigger); with integer FREQ/DFREQ the values saturate at
+-32767 (-32768 marks absent data), i.e. +-32.767 Hz from nominal and +-327.67 Hz/s.

Every TCP client has its own data on/off state and answers to its command frames
(data off 1, data on 2, header 3, CFG-1 4, CFG-2 5, CFG-3 6). A frame is encoded once
per tick and written to every client that has data on; a client whose socket buffer
is full (slow or stalled reader) loses that frame (counted in ``dropped``) rather than
holding the others up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Sequence

from vpp import c37118 as c
from vpp.aio import cancel_and_wait
from vpp.errors import BindError
from vpp.sim.frequency import FrequencyProfile, FrequencySource
from vpp.sim.pmu_signal import ProfileSignal, SourceSignal

__all__ = ["RATES", "ClientStats", "PmuServer", "build_config"]

log = logging.getLogger(__name__)

#: Reporting rates of a 50 Hz system (IEC/IEEE 60255-118-1).
RATES = (10, 25, 50)
TIME_BASE = 1_000_000
#: FORMAT: polar, float phasors, float analogs, float FREQ/DFREQ.
FORMAT_FLOAT_POLAR = 0b1111
#: Bytes queued in a client's socket buffer beyond which its data frames are dropped.
DEFAULT_WRITE_LIMIT = 64 * 1024
#: Phase-to-neutral voltage of the simulated 110 kV bus (V).
V_PHASE = 110_000 / math.sqrt(3)
#: PHUNIT of integer phasors: 2 V per count (x 1e-5 V), so that the 63.5 kV phase
#: voltage fits both a uint16 magnitude and int16 rectangular components.
INT_PHUNIT = 200_000
#: Largest int16 FREQ/DFREQ the simulator sends (-32768 means absent data).
INT16_MAX = 32_767


def build_config(
    idcode: int,
    rate: int,
    nominal: float = 50.0,
    station: str = "VPP SIM PMU",
    data_format: int = FORMAT_FLOAT_POLAR,
) -> c.ConfigFrame:
    """The CFG-2 of the simulated PMU: three voltage phasors (float polar by default;
    with integer phasors PHUNIT is :data:`INT_PHUNIT`, 2 V per count)."""
    unit = 0 if data_format & 0b10 else INT_PHUNIT
    pmu = c.PmuConfig(station, idcode, data_format, ["VA", "VB", "VC"], [unit] * 3, fnom=nominal)
    return c.ConfigFrame("cfg2", idcode, [pmu], time_base=TIME_BASE, data_rate=rate)


@dataclasses.dataclass
class ClientStats:
    """Per-client figures: frames written, frames dropped (buffer full), data on/off."""

    peer: str
    data_on: bool = False
    sent: int = 0
    dropped: int = 0
    commands: int = 0


class _Client:
    def __init__(self, writer: asyncio.StreamWriter, peer: str) -> None:
        self.writer = writer
        self.stats = ClientStats(peer)


class PmuServer:
    """A C37.118 PMU server (see the module docstring).

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`).
    ``udp_targets`` are (host, port) pairs that receive every data frame over UDP,
    whatever the TCP clients asked for. ``write_limit`` is the backlog (bytes) per client
    beyond which its frames are dropped; ``send_buffer`` sets SO_SNDBUF of client
    sockets (a small kernel buffer makes a stalled client show up sooner).
    ``record_lateness`` keeps the last that many send-time offsets from the deadline
    grid (seconds): in :attr:`lateness` when the frame has been written to every client,
    in :attr:`wake_lateness` when the ticker woke up to write it (frames are encoded
    before the wait).
    ``data_format`` is the FORMAT word (default all float, polar; bit 3 clear sends
    FREQ as int16 mHz from nominal, which some PDCs need).
    ``source``, when given, replaces the profile: frame ``k`` carries
    ``source.sample(k / rate)`` and the CFG-2 its ``nominal``.
    """

    def __init__(
        self,
        idcode: int = 7734,
        rate: int = 50,
        profile: FrequencyProfile | None = None,
        host: str = "127.0.0.1",
        port: int = 4712,
        *,
        udp_targets: Sequence[tuple[str, int]] = (),
        write_limit: int = DEFAULT_WRITE_LIMIT,
        send_buffer: int | None = None,
        record_lateness: int = 0,
        station: str = "VPP SIM PMU",
        data_format: int = FORMAT_FLOAT_POLAR,
        source: FrequencySource | None = None,
    ) -> None:
        if rate not in RATES:
            raise ValueError(f"rate must be one of {RATES}, got {rate}")
        if not 1 <= idcode <= 65534:
            raise ValueError(f"IDCODE must be 1-65534 (0 and 65535 are reserved), got {idcode}")
        self.idcode, self.rate, self.host = idcode, rate, host
        self.profile = profile if profile is not None else FrequencyProfile()
        self.source = source
        self.nominal = source.nominal if source is not None else self.profile.nominal
        self._signal = (
            SourceSignal(source, rate) if source is not None else ProfileSignal(self.profile, rate)
        )
        self.config = build_config(idcode, rate, self.nominal, station, data_format)
        self._int_freq = not self.config.pmus[0].freq_float
        self.header = c.HeaderFrame(idcode, f"{station}: simulated PMU, vpp.sim.pmu")
        self._port = port
        self._udp_targets = list(udp_targets)
        self._write_limit = write_limit
        self._send_buffer = send_buffer
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._client_tasks: set[asyncio.Task[None]] = set()
        self._clients: dict[int, _Client] = {}
        #: First frame index on the absolute grid (frame time = index / rate).
        self.k0 = 0
        #: Frames generated (ticks), frames skipped because the loop fell behind.
        self.ticks = 0
        self.skipped = 0
        self.finished: list[ClientStats] = []
        self.lateness: deque[float] = deque(maxlen=max(record_lateness, 1))
        self.wake_lateness: deque[float] = deque(maxlen=max(record_lateness, 1))
        self._record = record_lateness > 0

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def clients(self) -> list[ClientStats]:
        """Figures of the connected clients."""
        return [cl.stats for cl in self._clients.values()]

    async def start(self) -> None:
        """Bind the TCP port (and the UDP socket) and start the frame ticker."""
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self._port)
        except OSError as exc:
            where = f"{self.host}:{self._port}"
            raise BindError(
                f"PMU simulator cannot listen on {where}: "
                f"{os.strerror(exc.errno) if exc.errno else exc}",
                address=where,
            ) from exc
        if self._udp_targets:
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(self.host, 0)
            )
        self._ticker = asyncio.create_task(self._tick_loop())

    async def close(self) -> None:
        """Stop the ticker, close every client and the listening sockets."""
        ticker, self._ticker = self._ticker, None
        for failed in await cancel_and_wait([ticker]):
            log.error("PMU server: the frame ticker failed", exc_info=failed.exception())
        if self._server is not None:
            self._server.close()
        for cl in list(self._clients.values()):
            cl.writer.close()
        await cancel_and_wait(list(self._client_tasks))
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    async def __aenter__(self) -> PmuServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- frames ----

    def data_frame(self, k: int) -> bytes:
        """The encoded data frame of grid index ``k0 + k`` (``k`` frames after the start);
        with a profile, the same bytes whenever and in whatever order it is built."""
        n = self.k0 + k
        soc, frac = divmod(n, self.rate)
        freq, rocof, phase = self._signal.at(k)
        if self._int_freq:
            # Saturate rather than fail the tick: int16 counts mHz from nominal and
            # ROCOF x 100 (a real PMU's integer output clips the same way).
            dev = INT16_MAX / 1e3
            freq = min(self.nominal + dev, max(self.nominal - dev, freq))
            rocof = min(INT16_MAX / 1e2, max(-INT16_MAX / 1e2, rocof))
        # Angles as they come: the encoder puts each in (-pi, pi].
        phasors = [(V_PHASE, phase + s * 2 * math.pi / 3) for s in (0, -1, 1)]
        frame = c.DataFrame(
            self.config,
            [c.PmuData(phasors, freq, rocof)],
            soc=soc,
            fracsec=frac * (TIME_BASE // self.rate),
        )
        return c.encode(frame)

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        # Align the first frame to the next grid point of wall time, and compute every
        # deadline as start + k / rate on the monotonic clock (no accumulated error).
        wall, mono = time.time(), loop.time()
        self.k0 = math.ceil(wall * self.rate) + 1
        mono0 = mono + (self.k0 / self.rate - wall)
        k = 0
        while True:
            deadline = mono0 + k / self.rate
            # Build the frame before the wait, so only the write is left at the deadline.
            frame = self.data_frame(k)
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            late = loop.time() - deadline
            if late > 1.0 / self.rate:
                # Fell more than a period behind (a stalled loop): skip to the frame
                # now due instead of sending a burst; the grid stays the same.
                behind = int(late * self.rate)
                self.skipped += behind
                k += behind
                continue
            woke = loop.time()
            self._broadcast(frame)
            if self._record:
                self.wake_lateness.append(woke - deadline)
                self.lateness.append(loop.time() - deadline)
            self.ticks += 1
            k += 1

    def _broadcast(self, data: bytes) -> None:
        for cl in self._clients.values():
            st = cl.stats
            if not st.data_on or cl.writer.is_closing():
                continue
            if cl.writer.transport.get_write_buffer_size() > self._write_limit:
                st.dropped += 1
                continue
            cl.writer.write(data)
            st.sent += 1
        if self._udp is not None:
            for addr in self._udp_targets:
                self._udp.sendto(data, addr)

    # ---- clients ----

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._client_tasks.add(task)
        peer = writer.get_extra_info("peername")
        sock = writer.get_extra_info("socket")
        if self._send_buffer is not None and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
        cl = _Client(writer, f"{peer[0]}:{peer[1]}" if peer else "?")
        self._clients[id(cl)] = cl
        dec = c.StreamDecoder()
        try:
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                for _off, item in dec.feed(chunk):
                    if isinstance(item, c.CommandFrame):
                        self._command(cl, item)
                    elif isinstance(item, c.FrameError):
                        log.warning("pmu server: bad frame from %s: %s", cl.stats.peer, item)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            del self._clients[id(cl)]
            self._client_tasks.discard(task)
            self.finished.append(cl.stats)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _command(self, cl: _Client, cmd: c.CommandFrame) -> None:
        cl.stats.commands += 1
        code, now = cmd.command, int(time.time())
        if code == 1:
            cl.stats.data_on = False
        elif code == 2:
            cl.stats.data_on = True
        elif code == 3:
            cl.writer.write(c.encode(c.HeaderFrame(self.idcode, self.header.text, soc=now)))
        elif code in (4, 5):
            cfg = c.ConfigFrame(
                "cfg1" if code == 4 else "cfg2",
                self.idcode,
                self.config.pmus,
                time_base=TIME_BASE,
                data_rate=self.rate,
                soc=now,
            )
            cl.writer.write(c.encode(cfg))
        elif code == 6:
            for frag in self.config.with_kind("cfg3").encode_cfg3_fragments():
                cl.writer.write(frag)
        else:
            log.info("pmu server: command %d from %s ignored", code, cl.stats.peer)
