"""C37.118 transport: an asyncio PDC client over TCP and a data receiver over UDP.

:class:`PdcClient` connects to a PMU (or PDC) over TCP, asks for CFG-2 (command 5),
turns data on (command 2) once the configuration is known, and yields every decoded
frame as an async iterator. Bytes arrive in arbitrary chunks; the codec's
:class:`~vpp.c37118.StreamDecoder` frames them and resynchronises after garbage. A
corrupt frame is counted by kind, logged and skipped: it never stops the loop. When the
connection drops (or stays silent for ``read_timeout``) the client reconnects with
exponential backoff and jitter, keeping the configurations it has seen.

:class:`UdpReceiver` takes data frames from UDP datagrams; the configuration is given
or fetched once over TCP (command 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

from vpp import c37118 as c
from vpp.aio import Backoff, with_timeout

__all__ = ["Health", "PdcClient", "UdpReceiver", "fetch_config"]

log = logging.getLogger(__name__)

#: Command codes of C37.118.2 used here.
DATA_OFF, DATA_ON, SEND_CFG2 = 1, 2, 5
READ_CHUNK = 1 << 16

ErrorHook = Callable[[c.FrameError], None]


@dataclasses.dataclass
class Health:
    """Figures of a transport: ``state`` (idle, connecting, connected, backoff, closed),
    frames decoded, ``errors`` by kind (frame error kinds plus ``connect`` and
    ``disconnect``), PMU time of the last data frame (UNIX s), its arrival
    (``time.time()``), and how many times the client reconnected."""

    state: str = "idle"
    frames: int = 0
    data_frames: int = 0
    errors: Counter[str] = dataclasses.field(default_factory=Counter)
    last_frame_time: float | None = None
    last_arrival: float | None = None
    reconnects: int = 0

    @property
    def error_count(self) -> int:
        """All errors together."""
        return sum(self.errors.values())


class PdcClient:
    """An asyncio C37.118 PDC client over TCP (see the module docstring).

    ``async for frame in client`` yields configuration, header and data frames; errors
    go to ``on_error`` (if given) and to :attr:`health`. ``configs`` are known
    configurations (data is then turned on without waiting for CFG-2). Call
    :meth:`close` (or leave the iteration) to send data off and close the socket.
    """

    def __init__(
        self,
        host: str,
        port: int,
        idcode: int = 1,
        *,
        configs: Sequence[c.ConfigFrame] = (),
        backoff: Backoff | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float | None = 10.0,
        on_error: ErrorHook | None = None,
    ) -> None:
        self.host, self.port, self.idcode = host, port, idcode
        self.backoff = backoff if backoff is not None else Backoff()
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.on_error = on_error
        self.health = Health()
        self._configs: list[c.ConfigFrame] = list(configs)
        self._writer: asyncio.StreamWriter | None = None
        self._closed = False

    @property
    def config(self) -> c.ConfigFrame | None:
        """The latest configuration received (or given)."""
        return self._configs[-1] if self._configs else None

    def __aiter__(self) -> AsyncIterator[c.Frame]:
        return self.frames()

    async def send_command(self, code: int) -> None:
        """Send a command frame (e.g. 1 data off, 2 data on) on the current connection."""
        if self._writer is None or self._writer.is_closing():
            raise ConnectionError("not connected")
        self._writer.write(c.encode(c.CommandFrame(self.idcode, code, soc=int(time.time()))))
        await self._writer.drain()

    async def close(self) -> None:
        """Stop: send data off if connected and close the connection."""
        self._closed = True
        await self._disconnect()
        self.health.state = "closed"

    async def _disconnect(self) -> None:
        w, self._writer = self._writer, None
        if w is None:
            return
        if not w.is_closing():
            # Polite stop so a real PMU does not keep streaming to a dead session.
            with contextlib.suppress(Exception):
                w.write(c.encode(c.CommandFrame(self.idcode, DATA_OFF, soc=int(time.time()))))
        w.close()
        with contextlib.suppress(Exception):
            await w.wait_closed()

    def _error(self, kind: str, err: c.FrameError | None = None, detail: object = "") -> None:
        self.health.errors[kind] += 1
        log.warning("pdc %s:%d: %s %s", self.host, self.port, kind, err if err else detail)
        if err is not None and self.on_error is not None:
            self.on_error(err)

    async def _connect(self) -> asyncio.StreamReader | None:
        self.health.state = "connecting"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except (OSError, asyncio.TimeoutError) as e:
            self._error("connect", detail=e)
            return None
        self._writer = writer
        self.health.state = "connected"
        return reader

    async def frames(self) -> AsyncGenerator[c.Frame, None]:
        """Connect (and reconnect) and yield decoded frames until :meth:`close`."""
        attempt, connected_before = 0, False
        try:
            while not self._closed:
                reader = await self._connect()
                if reader is None:
                    self.health.state = "backoff"
                    await asyncio.sleep(self.backoff.delay(attempt))
                    attempt += 1
                    continue
                if connected_before:
                    self.health.reconnects += 1
                connected_before = True
                # aclosing: leaving the iteration mid-session closes the session now,
                # not whenever the garbage collector finds it.
                async with contextlib.aclosing(self._session(reader)) as session:
                    async for frame in session:
                        attempt = 0  # the link works: the next failure starts afresh
                        yield frame
                await self._disconnect()
                if not self._closed:
                    self._error("disconnect")
                    self.health.state = "backoff"
                    await asyncio.sleep(self.backoff.delay(attempt))
                    attempt += 1
        finally:
            await self._disconnect()
            self.health.state = "closed"

    async def _session(self, reader: asyncio.StreamReader) -> AsyncGenerator[c.Frame, None]:
        assert self._writer is not None
        dec = c.StreamDecoder(list(self._configs) or None)
        data_on = bool(self._configs)
        with contextlib.suppress(ConnectionError):
            await self.send_command(SEND_CFG2)
            if data_on:
                await self.send_command(DATA_ON)
        while True:
            try:
                # Per chunk: asyncio.timeout-based, no task per read as wait_for makes.
                chunk = await with_timeout(self.read_timeout, reader.read(READ_CHUNK))
            except TimeoutError:
                self._error("timeout", detail=f"no bytes for {self.read_timeout} s")
                return
            except ConnectionError as e:
                log.info("pdc %s:%d: %s", self.host, self.port, e)
                return
            if not chunk:
                return
            for _off, item in dec.feed(chunk):
                if isinstance(item, c.FrameError):
                    self._error(item.kind, item)
                    continue
                if isinstance(item, c.Cfg3Fragment):
                    continue
                h = self.health
                h.frames += 1
                if isinstance(item, c.ConfigFrame):
                    self._configs = [cf for cf in self._configs if cf.idcode != item.idcode]
                    self._configs.append(item)
                    if not data_on:
                        data_on = True
                        with contextlib.suppress(ConnectionError):
                            await self.send_command(DATA_ON)
                elif isinstance(item, c.DataFrame):
                    h.data_frames += 1
                    h.last_frame_time, h.last_arrival = item.time, time.time()
                yield item


async def fetch_config(
    host: str, port: int, idcode: int = 1, timeout: float = 5.0
) -> c.ConfigFrame:
    """Ask a PMU for its CFG-2 over TCP (command 5) and return it; no data is turned on."""

    async def get() -> c.ConfigFrame:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(c.encode(c.CommandFrame(idcode, SEND_CFG2, soc=int(time.time()))))
            await writer.drain()
            dec = c.StreamDecoder()
            while chunk := await reader.read(READ_CHUNK):
                for _off, item in dec.feed(chunk):
                    if isinstance(item, c.ConfigFrame):
                        return item
            raise ConnectionError("connection closed before a configuration frame")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.wait_for(get(), timeout)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[bytes], health: Health) -> None:
        self.queue, self.health = queue, health

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            # The consumer is behind; old data is worth less than keeping up.
            self.health.errors["overflow"] += 1


class UdpReceiver:
    """Data frames from UDP datagrams on ``host:port`` (``port=0``: pick one, read
    :attr:`port` after :meth:`start`). The configuration is ``config``, or fetched over
    TCP from ``config_from`` (host, port) when the iteration starts."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4713,
        *,
        config: c.ConfigFrame | None = None,
        config_from: tuple[str, int] | None = None,
        idcode: int = 1,
        queue_size: int = 1024,
        on_error: ErrorHook | None = None,
    ) -> None:
        if config is None and config_from is None:
            raise ValueError("UdpReceiver needs config or config_from")
        self.host, self._port, self.idcode = host, port, idcode
        self.config, self.config_from = config, config_from
        self.on_error = on_error
        self.health = Health()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def port(self) -> int:
        """The bound UDP port."""
        if self._transport is None:
            return self._port
        return int(self._transport.get_extra_info("sockname")[1])

    async def start(self) -> None:
        """Bind the UDP socket (datagrams are queued from now on)."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._queue, self.health), local_addr=(self.host, self._port)
        )
        self.health.state = "connected"

    async def close(self) -> None:
        """Close the UDP socket."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.health.state = "closed"

    def __aiter__(self) -> AsyncIterator[c.DataFrame]:
        return self.frames()

    async def frames(self) -> AsyncGenerator[c.DataFrame, None]:
        """Yield the data frames received (bad datagrams are counted and skipped)."""
        if self._transport is None:
            await self.start()
        if self.config is None:
            assert self.config_from is not None
            self.config = await fetch_config(*self.config_from, idcode=self.idcode)
        configs = [self.config]
        while self._transport is not None:
            data = await self._queue.get()
            try:
                frame = c.decode(data, configs)
            except c.FrameError as e:
                self.health.errors[e.kind] += 1
                log.warning("udp %s:%d: %s", self.host, self.port, e)
                if self.on_error is not None:
                    self.on_error(e)
                continue
            if isinstance(frame, c.DataFrame):
                h = self.health
                h.frames += 1
                h.data_frames += 1
                h.last_frame_time, h.last_arrival = frame.time, time.time()
                yield frame
