"""Helpers of the asyncio transport tests: bounded runs and raw frame reading."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

from vpp import c37118 as c
from vpp.drivers.pmu import PdcClient

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run ``coro`` in a fresh event loop, failing after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def free_port() -> int:
    """A TCP port that nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def command(writer: asyncio.StreamWriter, code: int, idcode: int = 1) -> None:
    """Send a command frame."""
    writer.write(c.encode(c.CommandFrame(idcode, code)))
    await writer.drain()


async def read_frames(
    reader: asyncio.StreamReader, dec: c.StreamDecoder, n: int, timeout: float = 5.0
) -> list[Any]:
    """The next ``n`` decoded frames (errors included) from ``reader``."""
    out: list[Any] = []

    async def go() -> None:
        while len(out) < n:
            chunk = await reader.read(4096)
            assert chunk, "connection closed"
            out.extend(item for _off, item in dec.feed(chunk))

    await asyncio.wait_for(go(), timeout)
    return out


async def drain_quiet(reader: asyncio.StreamReader, quiet: float) -> int:
    """Read until nothing arrives for ``quiet`` seconds; the number of bytes read."""
    total = 0
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), quiet)
        except asyncio.TimeoutError:
            return total
        if not chunk:
            return total
        total += len(chunk)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a stream and wait for it (so no ResourceWarning remains)."""
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


async def take(client: PdcClient, n_data: int) -> tuple[list[c.ConfigFrame], list[c.DataFrame]]:
    """The configuration frames and the first ``n_data`` data frames ``client`` yields;
    closes the client."""
    cfgs: list[c.ConfigFrame] = []
    data: list[c.DataFrame] = []
    try:
        async with contextlib.aclosing(client.frames()) as frames:
            async for f in frames:
                if isinstance(f, c.ConfigFrame):
                    cfgs.append(f)
                elif isinstance(f, c.DataFrame):
                    data.append(f)
                    if len(data) == n_data:
                        break
    finally:
        await client.close()
    return cfgs, data
