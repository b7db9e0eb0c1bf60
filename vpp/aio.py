"""asyncio helpers shared by the drivers, simulators and processes."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import logging
import random
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = [
    "Backoff",
    "Startable",
    "cancel_and_wait",
    "start_supervised",
    "stop_on_signals",
    "supervised",
    "with_timeout",
]

log = logging.getLogger(__name__)

S = TypeVar("S", bound="Startable")
T = TypeVar("T")


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
    a single cancel-then-await would then wait forever. ``asyncio.wait`` does not raise
    the tasks' CancelledError; a cancellation of the caller while it waits is held until
    the tasks have ended and raised then, so that a cancelled clean-up leaves nothing
    running behind it.
    """
    given = [t for t in tasks if t is not None]
    pending = {t for t in given if not t.done()}
    interrupted = False
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=0.1)
        except asyncio.CancelledError:
            # The caller is being cancelled too: finish the clean-up first (the tasks are
            # ending), then let the caller's cancellation go on.
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError
    return [t for t in given if not t.cancelled() and t.exception() is not None]


@contextlib.contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event that SIGINT or SIGTERM sets, for the running loop, while in the block.

    Handled in the loop, so that a signal lets the caller stop what it runs properly
    instead of unwinding from wherever KeyboardInterrupt lands; the handlers are removed
    on leaving. Main thread only (as ``loop.add_signal_handler``).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def supervised(
    fn: Callable[[], Awaitable[None]],
    what: str,
    *,
    on_failure: Callable[[BaseException], None] | None = None,
    restart_after_s: float = 1.0,
) -> None:
    """Run the loop ``fn()`` and restart it, after ``restart_after_s``, whenever it raises.

    A background loop that died of a bug would leave its process running with part of its
    work silently stopped (no telemetry, no history, no watchdog): the failure is logged
    with its traceback and handed to ``on_failure`` (to count it), and the loop starts
    again. A normal return ends the supervision; cancellation goes through.
    """
    while True:
        try:
            await fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s loop failed; restarting it in %g s", what, restart_after_s)
            if on_failure is not None:
                on_failure(exc)
            await asyncio.sleep(restart_after_s)


def start_supervised(
    fn: Callable[[], Awaitable[None]],
    what: str,
    *,
    on_failure: Callable[[BaseException], None] | None = None,
    restart_after_s: float = 1.0,
) -> asyncio.Task[None]:
    """A task running ``fn`` under :func:`supervised`, named ``what``."""
    loop = supervised(fn, what, on_failure=on_failure, restart_after_s=restart_after_s)
    return asyncio.create_task(loop, name=what)


async def with_timeout(seconds: float | None, aw: Awaitable[T]) -> T:
    """Await ``aw`` for at most ``seconds`` (None: no limit), then raise TimeoutError.

    On Python 3.11+ this is ``asyncio.timeout``, not ``asyncio.wait_for``: no task per
    call (cheaper when polling many devices), and a cancellation that arrives just as
    ``aw`` finishes is kept (3.11's ``wait_for`` returns the result and drops it).
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await aw
    return await asyncio.wait_for(aw, seconds)  # pragma: no cover (Python 3.10)


@dataclasses.dataclass
class Backoff:
    """Exponential backoff: ``initial * factor**n`` capped at ``maximum`` seconds, times
    a random factor in [1 - jitter, 1 + jitter] so that many clients cut off together
    do not come back in lock step."""

    initial: float = 0.1
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * self.rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
