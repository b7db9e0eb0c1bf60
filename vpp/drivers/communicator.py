"""ResourceCommunicator: many devices, each behind a protocol, polled and commanded.

Each resource has a primary protocol configuration and optionally a secondary one (a
second gateway or path to the same device). A polling loop per subscribed resource
reads the status at a fixed interval, keeps the last good status with its time, and
pushes it to the callbacks. The loop never dies: every error is categorised (the
protocol's health counts it), and the loop retries with backoff. A timeout or
connection error marks the resource offline; commands to an offline resource fail at
once with DeviceOfflineError. After ``failover_after`` consecutive failures the
resource switches to the other configuration. The first good read brings it back online.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from vpp.aio import Backoff, cancel_and_wait, with_timeout
from vpp.drivers.base import (
    Ack,
    BaseProtocol,
    ConnectionState,
    Status,
    StatusCallback,
    category_of,
)
from vpp.drivers.errors import DeviceOfflineError, DeviceTimeoutError, DriverError
from vpp.drivers.factory import ProtocolFactory, default_factory

__all__ = ["Ack", "ResourceCommunicator", "ResourceState"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ResourceState:
    """What the communicator knows of one resource."""

    resource_id: str
    protocol_type: str
    configs: list[Mapping[str, Any]]
    protocol: BaseProtocol
    active: int = 0  # index into configs: 0 primary, 1 secondary
    online: bool | None = None  # None until the first read or command
    last_status: Status | None = None
    last_status_time: float | None = None
    consecutive_failures: int = 0
    failovers: int = 0
    last_error: str = ""
    callbacks: list[StatusCallback] = dataclasses.field(default_factory=list)
    task: asyncio.Task[None] | None = None


class ResourceCommunicator:
    """Devices by id (see the module docstring); close it with :meth:`close`."""

    def __init__(
        self,
        *,
        poll_interval: float = 1.0,
        poll_jitter: float = 0.1,
        failover_after: int = 3,
        backoff: Backoff | None = None,
        factory: ProtocolFactory | None = None,
    ) -> None:
        """``poll_interval`` seconds between reads of a healthy resource; a failing one
        waits ``backoff`` (0.1 s doubling, capped at ``poll_interval`` by default). Each
        wait is ``poll_interval`` times a random factor within ``1 +- poll_jitter``, so
        that loops started together drift apart instead of polling in one burst."""
        if poll_interval <= 0 or failover_after < 1 or not 0 <= poll_jitter < 1:
            raise ValueError(
                "poll_interval must be > 0, failover_after >= 1 and 0 <= poll_jitter < 1"
            )
        self.poll_interval = poll_interval
        self.poll_jitter = poll_jitter
        self.failover_after = failover_after
        self.backoff = backoff or Backoff(initial=min(0.1, poll_interval), maximum=poll_interval)
        self.factory = factory or default_factory
        self._resources: dict[str, ResourceState] = {}

    def add_resource(
        self,
        resource_id: str,
        protocol_type: str,
        config: Mapping[str, Any],
        secondary: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a resource; both configs are validated now (ConfigError names the field)."""
        if resource_id in self._resources:
            raise ValueError(f"resource {resource_id!r} already exists")
        configs = [config] if secondary is None else [config, secondary]
        for cfg in configs[1:]:
            self.factory.validate(protocol_type, cfg)
        protocol = self.factory.create(protocol_type, config, label=resource_id)
        self._resources[resource_id] = ResourceState(resource_id, protocol_type, configs, protocol)

    def _get(self, resource_id: str) -> ResourceState:
        try:
            return self._resources[resource_id]
        except KeyError:
            raise KeyError(f"no resource {resource_id!r}") from None

    def protocol(self, resource_id: str) -> BaseProtocol:
        """The resource's active protocol (its driver)."""
        return self._get(resource_id).protocol

    async def remove_resource(self, resource_id: str) -> None:
        """Stop polling the resource and close its connection."""
        res = self._resources.pop(resource_id, None)
        if res is not None:
            await self._stop(res)

    async def close(self) -> None:
        """Remove every resource."""
        for rid in list(self._resources):
            await self.remove_resource(rid)

    async def _stop(self, res: ResourceState) -> None:
        task, res.task = res.task, None
        # pymodbus awaits each reply with asyncio.wait_for, which on Python 3.11 can drop
        # the cancellation: cancel_and_wait cancels again until the loop has stopped.
        await cancel_and_wait([task])
        await res.protocol.close()

    # --- commands ----------------------------------------------------------------------------

    async def send_command(
        self,
        resource_id: str,
        command: str,
        params: Mapping[str, Any] | None = None,
        timeout: float = 5.0,
    ) -> Ack:
        """Send a command and wait for its acknowledgement.

        An offline resource fails at once with DeviceOfflineError; an unknown command
        with ValidationError; a device that fails the command gives ``Ack(ok=False)``
        with the reason in ``detail``.
        """
        res = self._get(resource_id)
        if res.online is False:
            raise DeviceOfflineError(
                f"resource {resource_id!r} is offline ({res.last_error or 'no answer'}); "
                "command not sent",
                resource=resource_id,
            )
        start = time.perf_counter()
        try:
            ack = await with_timeout(timeout, res.protocol.send_command(command, params))
        except (asyncio.TimeoutError, TimeoutError, DriverError) as exc:
            if isinstance(exc, DriverError) and exc.category == "validation":
                raise
            err: BaseException = exc
            if not isinstance(exc, DriverError):
                err = DeviceTimeoutError(f"no ack within {timeout:g} s", resource=resource_id)
            self._failed(res, err)
            return Ack(False, command, time.perf_counter() - start, str(err))
        self._succeeded(res)
        return ack

    # --- polling -------------------------------------------------------------------------------

    def subscribe_to_resource(
        self, resource_id: str, callback: StatusCallback
    ) -> Callable[[], None]:
        """Push every status of the resource to ``callback``, starting its polling loop
        if needed; returns a function that unsubscribes."""
        res = self._get(resource_id)
        res.callbacks.append(callback)
        if res.task is None:
            res.task = asyncio.create_task(self._poll(res), name=f"poll:{resource_id}")

        def unsubscribe() -> None:
            if callback in res.callbacks:
                res.callbacks.remove(callback)

        return unsubscribe

    async def _poll(self, res: ResourceState) -> None:
        while True:
            try:
                status = await res.protocol.read_status()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop never dies: count, back off, retry
                self._failed(res, exc)
                if res.consecutive_failures >= self.failover_after and len(res.configs) > 1:
                    await self._failover(res)
                await asyncio.sleep(self.backoff.delay(res.consecutive_failures - 1))
                continue
            res.last_status, res.last_status_time = status, time.time()
            self._succeeded(res)
            for callback in list(res.callbacks):
                try:
                    callback(status)
                except Exception:  # a subscriber's bug must not stop the loop
                    log.exception("%s: status callback failed", res.resource_id)
            jitter = random.uniform(-self.poll_jitter, self.poll_jitter)
            await asyncio.sleep(self.poll_interval * (1.0 + jitter))

    def _failed(self, res: ResourceState, exc: BaseException) -> None:
        res.consecutive_failures += 1
        res.last_error = f"{category_of(exc)}: {exc}"
        if not isinstance(exc, DriverError):
            # The protocol counted its own errors; anything else is counted here.
            res.protocol.health.failure("error")
        if category_of(exc) in ("timeout", "connection"):
            if res.online is not False:
                log.warning("%s offline: %s", res.resource_id, exc)
            res.online = False

    def _succeeded(self, res: ResourceState) -> None:
        res.consecutive_failures = 0
        res.online = True

    async def _failover(self, res: ResourceState) -> None:
        """Switch to the other configuration (primary <-> secondary)."""
        old = res.protocol
        await old.close()
        res.active = (res.active + 1) % len(res.configs)
        res.protocol = self.factory.create(
            res.protocol_type, res.configs[res.active], label=res.resource_id
        )
        # The resource's health history goes on across the switch.
        res.protocol.health = old.health
        res.protocol.health.state = ConnectionState.DISCONNECTED
        res.failovers += 1
        res.consecutive_failures = 0
        log.warning(
            "%s: failing over to the %s configuration",
            res.resource_id,
            "secondary" if res.active else "primary",
        )

    # --- views ---------------------------------------------------------------------------------

    def status(self) -> dict[str, dict[str, Any]]:
        """The cached state of every resource: online, last good status and its time."""
        return {
            rid: {
                "online": r.online,
                "status": r.last_status,
                "timestamp": r.last_status_time,
                "active": "secondary" if r.active else "primary",
                "last_error": r.last_error,
            }
            for rid, r in self._resources.items()
        }

    def health(self) -> dict[str, dict[str, Any]]:
        """The health figures of every resource's active connection."""
        return {
            rid: {
                **r.protocol.health.snapshot(),
                "online": r.online,
                "consecutive_failures": r.consecutive_failures,
                "failovers": r.failovers,
            }
            for rid, r in self._resources.items()
        }
