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


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers; yields its port."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        # Drain what the client sends, answer nothing, until it hangs up.
        while await reader.read(1024):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()
        await asyncio.sleep(0)
