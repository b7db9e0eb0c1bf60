"""Helpers of the driver tests: bounded runs with a leak check, and a silent device."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

TIMEOUT_S = 30.0


def run(test: Callable[[], Awaitable[None]], timeout: float = TIMEOUT_S) -> None:
    """Run ``test`` on a fresh loop, bounded, and fail if a task was left running."""

    async def main() -> None:
        await asyncio.wait_for(test(), timeout)
        await asyncio.sleep(0)
        leaked = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not leaked, f"leaked tasks: {leaked}"

    asyncio.run(main())


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0, step: float = 0.02) -> None:
    """Poll ``cond`` until it holds; AssertionError after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(step)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def _loopback_server(handle: Handler) -> AsyncIterator[int]:
    """Serve ``handle`` on a loopback port (yielded); close it and every connection after."""
    writers: list[asyncio.StreamWriter] = []

    async def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handle(reader, writer)

    server = await asyncio.start_server(track, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()
        await asyncio.sleep(0)


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers; yields its port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Drain what the client sends, answer nothing, until it hangs up.
        while await reader.read(1024):
            pass

    async with _loopback_server(handle) as port:
        yield port


@asynccontextmanager
async def short_reply_server() -> AsyncIterator[int]:
    """A Modbus TCP server that answers every read with one register fewer than asked
    (a well-formed frame of the wrong length); yields its port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(7)  # MBAP: tid, pid, length, unit
                pdu = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
                fc, count = pdu[0], int.from_bytes(pdu[3:5], "big")
                if fc in (1, 2):
                    body = bytes([fc, 1, 0])  # one byte of bits: fine for <= 8 bits
                else:
                    n = max(0, count - 1)
                    body = bytes([fc, 2 * n]) + b"\x00\x00" * n
                length = (len(body) + 1).to_bytes(2, "big")
                writer.write(header[:4] + length + header[6:7] + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async with _loopback_server(handle) as port:
        yield port
