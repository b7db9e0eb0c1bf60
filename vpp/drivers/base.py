"""The protocol layer: :class:`BaseProtocol`, the base class of every device driver.

The base class owns what every transport needs the same way: a connection state
machine (disconnected, connecting, connected, backoff, closed), per-call timeouts,
retries with exponential backoff and jitter (:class:`vpp.aio.Backoff`), the
status subscribers, and the health figures. A driver implements only the transport:
``_connect``, ``_disconnect``, ``_read`` (one status read) and ``_write`` (one
command), raising the errors of :mod:`vpp.drivers.errors`.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from vpp.aio import Backoff, with_timeout
from vpp.drivers.errors import (
    DeviceOfflineError,
    DeviceTimeoutError,
    DriverError,
    ValidationError,
)

__all__ = [
    "STANDARD_COMMANDS",
    "Ack",
    "BaseProtocol",
    "ConnectionState",
    "ProtocolConfig",
    "ProtocolHealth",
    "Status",
    "StatusCallback",
]

log = logging.getLogger(__name__)

#: A status: point name -> engineering value (vpp units and sign), or the name of a
#: coded value (a mode, a state).
Status = dict[str, float | bool | str]
StatusCallback = Callable[[Status], None]
T = TypeVar("T")

#: Error categories counted in the health figures.
CATEGORIES = ("timeout", "connection", "protocol", "validation", "error")


#: The standard commands every device driver translates (params: set_power ``kw``,
#: set_reactive_power ``kvar``, set_mode ``mode``).
STANDARD_COMMANDS = frozenset(
    {
        "set_power",
        "set_reactive_power",
        "set_mode",
        "enable",
        "disable",
        "reset_alarms",
        "emergency_stop",
    }
)


class ConnectionState(str, enum.Enum):
    """States of a protocol connection."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    CLOSED = "closed"


class ProtocolConfig(BaseModel):
    """Settings every protocol has (a protocol's ``Config`` extends this)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(default=1.0, gt=0, le=60, description="seconds per request")
    retries: int = Field(default=2, ge=0, le=10, description="retries after a failed call")
    backoff_initial: float = Field(default=0.05, gt=0, le=60, description="first retry delay, s")
    backoff_max: float = Field(default=5.0, gt=0, le=600, description="longest retry delay, s")


@dataclasses.dataclass(frozen=True)
class Ack:
    """The acknowledgement of a command: ``ok``, the round-trip ``latency`` in seconds,
    and ``detail`` (what was written, or why it failed)."""

    ok: bool
    command: str
    latency: float
    detail: str = ""


class ProtocolHealth:
    """Health figures of one connection: state, last success time (UNIX s), response
    times (p50/p99 over a bounded ring of the latest ones), error counts by category
    and the error rate over all calls."""

    def __init__(self, ring_size: int = 256) -> None:
        self.state = ConnectionState.DISCONNECTED
        self.last_success: float | None = None
        self.calls = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.connects = 0
        self._latencies: collections.deque[float] = collections.deque(maxlen=ring_size)

    def success(self, latency: float) -> None:
        """Count a successful call that took ``latency`` seconds."""
        self.calls += 1
        self.last_success = time.time()
        self._latencies.append(latency)

    def failure(self, category: str) -> None:
        """Count a failed call under ``category``."""
        self.calls += 1
        self.errors[category] += 1

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the recent response times, None before any."""
        if not self._latencies:
            return None
        ordered = sorted(self._latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def error_rate(self) -> float:
        """Failed calls over all calls (0 before any call)."""
        return sum(self.errors.values()) / self.calls if self.calls else 0.0

    def snapshot(self) -> dict[str, Any]:
        """The figures as a plain dict (for status pages and messages)."""
        return {
            "state": self.state.value,
            "last_success": self.last_success,
            "p50": self.percentile(0.5),
            "p99": self.percentile(0.99),
            "calls": self.calls,
            "connects": self.connects,
            "errors": {c: self.errors.get(c, 0) for c in CATEGORIES},
            "error_rate": self.error_rate,
        }




def category_of(exc: BaseException) -> str:
    """The health category of an error."""
    if isinstance(exc, DriverError):
        return str(exc.category)
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return "connection"
    return "error"


class BaseProtocol(abc.ABC):
    """An async device driver (see the module docstring).

    ``config`` is an instance of the class's ``Config`` model; ``name`` labels errors
    and logs (the resource id under a :class:`ResourceCommunicator`).
    """

    Config: ClassVar[type[ProtocolConfig]] = ProtocolConfig
    #: Commands the driver understands, for :meth:`send_command` to reject the others.
    commands: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def check_config(cls, config: ProtocolConfig) -> None:
        """What the options model alone cannot tell, such as whether a file they name
        exists and parses; raises :class:`vpp.errors.ConfigError` on the option. The
        factory calls it when it validates a config, so that the site's load catches it
        rather than the process that starts the driver. Nothing to check by default."""
        del config  # a protocol whose options name no file has nothing more to check

    def __init__(self, config: ProtocolConfig, *, name: str = "") -> None:
        """Keep the config; nothing is connected until :meth:`connect` or the first call."""
        self.config = config
        self.name = name or type(self).__name__
        self.health = ProtocolHealth()
        self.backoff = Backoff(initial=config.backoff_initial, maximum=config.backoff_max)
        self._subscribers: list[StatusCallback] = []
        # One request at a time: a Modbus TCP client and most devices cannot interleave.
        self._lock = asyncio.Lock()

    @property
    def state(self) -> ConnectionState:
        """The connection state."""
        return self.health.state

    # --- what a driver implements -------------------------------------------------------

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Open the transport; raise DeviceOfflineError if it cannot."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close the transport (never raises)."""

    @abc.abstractmethod
    async def _read(self) -> Status:
        """Read the status once."""

    @abc.abstractmethod
    async def _write(self, command: str, params: Mapping[str, Any]) -> str:
        """Carry out one command; return a short description of what was written."""

    # --- public API ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, retrying with backoff; the last error if every attempt fails."""
        async with self._lock:
            await self._retrying(self._ensure_connected)

    async def disconnect(self) -> None:
        """Close the connection (a later call reconnects)."""
        async with self._lock:
            await self._drop(ConnectionState.DISCONNECTED)

    async def close(self) -> None:
        """Close for good: later calls fail with DeviceOfflineError."""
        async with self._lock:
            await self._drop(ConnectionState.CLOSED)

    async def read_status(self) -> Status:
        """Read the device's status (named engineering values, vpp sign), and pass it to
        every subscriber."""
        async with self._lock:
            status = await self._retrying(self._read)
        for callback in list(self._subscribers):
            try:
                callback(status)
            except Exception:  # a subscriber's bug must not break the driver
                log.exception("%s: status subscriber failed", self.name)
        return status

    async def send_command(self, command: str, params: Mapping[str, Any] | None = None) -> Ack:
        """Carry out ``command`` with ``params``; an :class:`Ack` on success, a
        :class:`DriverError` otherwise (ValidationError for an unknown command)."""
        if command not in self.commands:
            self.health.failure("validation")
            raise ValidationError(
                f"unknown command {command!r}; known: {', '.join(sorted(self.commands))}",
                resource=self.name,
            )
        args = dict(params or {})
        start = time.perf_counter()
        async with self._lock:
            detail = await self._retrying(lambda: self._write(command, args))
        return Ack(True, command, time.perf_counter() - start, detail)

    def subscribe(self, callback: StatusCallback) -> Callable[[], None]:
        """Call ``callback`` with every status read; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    # --- machinery -------------------------------------------------------------------------

    async def _drop(self, state: ConnectionState) -> None:
        if self.health.state is not ConnectionState.CLOSED:
            await self._disconnect()
            self.health.state = state

    async def _ensure_connected(self) -> None:
        if self.health.state is ConnectionState.CLOSED:
            raise DeviceOfflineError("the connection is closed", resource=self.name)
        if self.health.state is ConnectionState.CONNECTED:
            return
        self.health.state = ConnectionState.CONNECTING
        try:
            await with_timeout(self.config.timeout, self._connect())
        except (asyncio.TimeoutError, TimeoutError) as exc:
            await self._disconnect()
            raise DeviceTimeoutError(
                f"connect timed out after {self.config.timeout:g} s", resource=self.name
            ) from exc
        except BaseException:
            await self._disconnect()
            raise
        self.health.connects += 1
        self.health.state = ConnectionState.CONNECTED

    async def _retrying(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` connected, under the timeout, retrying timeouts and connection
        errors (not protocol or validation errors: the device would answer the same)."""
        attempt = 0
        while True:
            start = time.perf_counter()
            try:
                await self._ensure_connected()
                result = await with_timeout(self.config.timeout, op())
            except asyncio.CancelledError:
                # A caller's deadline cut the request short; its reply may still arrive
                # and be taken for the next request's, so start the next one afresh.
                if self.health.state is not ConnectionState.CLOSED:
                    await self._disconnect()
                    self.health.state = ConnectionState.DISCONNECTED
                raise
            except (asyncio.TimeoutError, TimeoutError, OSError, DriverError) as exc:
                err = self._as_driver_error(exc)
                self.health.failure(err.category)
                closed = self.health.state is ConnectionState.CLOSED
                retryable = err.category in ("timeout", "connection") and not closed
                if retryable:
                    # The transport may hold a half-read reply: start afresh.
                    await self._drop(ConnectionState.DISCONNECTED)
                if not retryable or attempt >= self.config.retries:
                    if err is exc:
                        raise
                    raise err from exc
                self.health.state = ConnectionState.BACKOFF
                await asyncio.sleep(self.backoff.delay(attempt))
                self.health.state = ConnectionState.DISCONNECTED
                attempt += 1
                continue
            self.health.success(time.perf_counter() - start)
            return result

    def _as_driver_error(self, exc: BaseException) -> DriverError:
        if isinstance(exc, DriverError):
            return exc
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return DeviceTimeoutError(
                f"no answer within {self.config.timeout:g} s", resource=self.name
            )
        return DeviceOfflineError(f"connection failed: {exc}", resource=self.name)
