"""asyncio helpers shared by the drivers, simulators and processes."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["Startable", "cancel_and_wait"]

S = TypeVar("S", bound="Startable")


class Startable(abc.ABC):
    """Something with ``start`` and ``stop`` that is also an ``async with`` context (the
    simulators): entering starts it, leaving stops it."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start serving."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop and release everything it opened."""

    async def __aenter__(self: S) -> S:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks`` (None entries are skipped) and wait until they end, cancelling
    again any that goes on; return those that ended with an exception other than
    cancellation.

    A task can swallow one cancellation: on Python < 3.12 ``asyncio.wait_for`` (inside
    pymodbus and aiomqtt) loses it when the inner call completes at the same moment, and
    a single cancel-then-await would then wait forever. ``asyncio.wait`` neither raises
    the tasks' CancelledError nor absorbs a cancellation of the caller, as awaiting a
    task under ``suppress(CancelledError)`` would.
    """
    given = [t for t in tasks if t is not None]
    pending = {t for t in given if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    return [t for t in given if not t.cancelled() and t.exception() is not None]
