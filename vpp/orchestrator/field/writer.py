"""Setpoint writes to one inverter that never hold up the frame loop.

:meth:`SetpointWriter.offer` is called on every frame and returns at once. One write is
in flight per unit; a newer setpoint replaces a pending one (only the newest matters), and
a setpoint within ``threshold_kw`` of the last one sent is not written at all. Before the
first write, and again after the device came back, the inverter is enabled and put in
power-control mode.
"""

from __future__ import annotations

import asyncio
import logging

from vpp.aio import cancel_and_wait
from vpp.core import RtLoop
from vpp.drivers.communicator import ResourceCommunicator
from vpp.drivers.errors import DriverError

__all__ = ["SetpointWriter"]

log = logging.getLogger(__name__)


class SetpointWriter:
    """Coalescing ``set_power`` writes of one resource (see the module docstring)."""

    def __init__(
        self,
        comm: ResourceCommunicator,
        resource: str,
        *,
        threshold_kw: float = 0.0,
        timeout_s: float = 1.0,
    ) -> None:
        self.comm = comm
        self.resource = resource
        self.threshold_kw = threshold_kw
        self.timeout_s = timeout_s
        self.pending: float | None = None
        self.last: float | None = None
        """The newest setpoint sent or queued (None: the next one is written whatever it is)."""
        self.needs_init = True
        self.written = 0
        self.coalesced = 0
        """Pending setpoints replaced by a newer one before they were written."""
        self.failed = 0
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._rt: tuple[RtLoop, int] | None = None

    def offer(self, kw: float) -> None:
        """Queue ``kw`` if it differs enough from the last one (never blocks)."""
        if self.last is not None and abs(kw - self.last) <= self.threshold_kw:
            return
        self.last = kw
        if self.pending is not None:
            self.coalesced += 1
        self.pending = kw
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"setpoint:{self.resource}")

    def hand_to(self, rt: RtLoop | None, index: int) -> None:
        """The core's loop ``rt`` writes this unit's setpoints (as its unit ``index``);
        this writer keeps the driver commands (enable, mode) and tells the loop when to
        stop or write anew. None: this writer writes the setpoints again."""
        self._rt = None if rt is None else (rt, index)
        self.last = None

    def invalidate(self, init: bool = False) -> None:
        """Write the next setpoint whatever it is (and enable the inverter first if ``init``)."""
        self.last = None
        if init:
            self.needs_init = True
        if self._rt is not None:
            rt, i = self._rt
            if init:
                rt.set_writable(i, False)  # until the inverter is enabled again
            rt.resync(i)

    def drop(self) -> None:
        """Forget a pending setpoint (disable, emergency stop); the core's loop, if it
        writes this unit, stops writing at once."""
        self.pending = None
        self.last = None
        if self._rt is not None:
            rt, i = self._rt
            rt.set_writable(i, False)

    def start_init(self) -> None:
        """Enable the inverter and put it in power-control mode (the core's loop then
        writes the setpoints); nothing if a command is in flight."""
        if self._task is None:
            self._task = asyncio.create_task(self._init(), name=f"init:{self.resource}")

    async def _init(self) -> None:
        try:
            ok = await self._send("enable") and await self._send(
                "set_mode", {"mode": "power_control"}
            )
            if ok:
                self.needs_init = False
            else:
                self._failed()
        finally:
            self._task = None

    @property
    def busy(self) -> bool:
        """A write is in flight."""
        return self._task is not None

    async def _send(self, command: str, params: dict[str, object] | None = None) -> bool:
        try:
            ack = await self.comm.send_command(self.resource, command, params, self.timeout_s)
        except DriverError as exc:
            self.last_error = str(exc)
            return False
        if not ack.ok:
            self.last_error = ack.detail
        return ack.ok

    async def _drain(self) -> None:
        try:
            while self.pending is not None:
                if self.needs_init:
                    ok = await self._send("enable") and await self._send(
                        "set_mode", {"mode": "power_control"}
                    )
                    if not ok:
                        self._failed()
                        return
                    self.needs_init = False
                    if self.pending is None:
                        return
                kw, self.pending = self.pending, None
                if await self._send("set_power", {"kw": kw}):
                    self.written += 1
                else:
                    self._failed()
                    return
        finally:
            self._task = None

    def _failed(self) -> None:
        # The next frame tries again (an offline device refuses at once, without I/O).
        self.failed += 1
        self.pending = None
        self.last = None
        log.debug("%s: setpoint not written: %s", self.resource, self.last_error)

    async def close(self) -> None:
        """Cancel the write in flight."""
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
