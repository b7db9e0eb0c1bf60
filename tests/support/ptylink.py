"""A null-modem cable made of two pseudo-terminals, for Modbus RTU tests.

Each end is the slave side of its own pty (a real tty that pyserial opens like a serial
port); an asyncio relay copies bytes between the two master sides. The relay, not a
second process (socat), so that a test can cut the line (``silent``) and nothing is
left running after it. Baud rate and parity do not matter on a pty.
"""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class PtyLink:
    """The two ends of the cable and its counters."""

    device_end: str
    host_end: str
    #: While True, what the host sends is dropped: the device looks dead.
    silent: bool = False
    to_device: int = 0
    to_host: int = 0
    dropped: int = 0
    _fds: list[int] = field(default_factory=list)


def _pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    # Raw from the start: the default line discipline would echo and translate bytes
    # written before pyserial opens the port and sets it raw itself.
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


@asynccontextmanager
async def pty_link() -> AsyncIterator[PtyLink]:
    """Open the cable; close every descriptor and the relay on exit."""
    loop = asyncio.get_running_loop()
    dev_m, dev_s, dev_path = _pty()
    host_m, host_s, host_path = _pty()
    # The slave descriptors stay open here so that a master never sees a hang-up (and
    # a busy-looping reader) while an end is closed between two tests steps.
    link = PtyLink(dev_path, host_path, _fds=[dev_m, dev_s, host_m, host_s])

    def relay(src: int, dst: int, from_host: bool) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        if from_host and link.silent:
            link.dropped += len(data)
            return
        try:
            os.write(dst, data)
        except BlockingIOError:
            link.dropped += len(data)  # nobody reads that end: a real line loses it too
            return
        if from_host:
            link.to_device += len(data)
        else:
            link.to_host += len(data)

    loop.add_reader(host_m, relay, host_m, dev_m, True)
    loop.add_reader(dev_m, relay, dev_m, host_m, False)
    try:
        yield link
    finally:
        loop.remove_reader(host_m)
        loop.remove_reader(dev_m)
        for fd in link._fds:
            os.close(fd)
