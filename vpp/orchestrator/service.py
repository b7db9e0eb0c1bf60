"""What the campus, grid and market processes share: their sockets, command clients to
their peers, parameter checks and the loops that must not die.

A :class:`Service` connects a :class:`Publisher` to the events broker's ``events_in``,
a :class:`Subscriber` to ``events_out`` (with the topics the service asks for), and
binds its own command :class:`Server` at ``topo.commands[name]``. It keeps one
:class:`Client` per peer endpoint, made on first use. ``async with`` opens everything
and starts the service's tasks; leaving it cancels the tasks and closes every socket.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import pydantic

from vpp.aio import cancel_and_wait, start_supervised
from vpp.errors import CommandError, VppError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.command_models import check_command, parse
from vpp.orchestrator.bus.commands import AuditRecord, audit_event
from vpp.orchestrator.bus.pubsub import Client, Handler, Publisher, Server, Subscriber
from vpp.orchestrator.bus.topology import Topology

__all__ = ["Service", "params", "tune_gc"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=pydantic.BaseModel)


def tune_gc(gen0: int = 100_000) -> None:
    """Garbage-collector settings for a process that decodes a busy stream.

    Each decoded message is a handful of short-lived objects, and a batch keeps thousands
    alive at once: at CPython's default threshold (700) the young generation is
    collected every few dozen messages and the survivors climb into the older ones,
    which halves the ingest rate (benchmarks/bench_campus_bus.py). A higher threshold
    lets a batch die young; ``gc.freeze`` keeps the objects made at start-up out of
    every later collection. Process-wide: call it from a process entry point.
    """
    gc.freeze()
    gc.set_threshold(gen0, 50, 100)


def params(model: type[M], cmd: s.CommandMsg) -> M:
    """The command's params validated as ``model`` (CommandError naming the field)."""
    return parse(model, cmd.body.params, f"command {cmd.body.name!r}")


class Service:
    """Sockets and task plumbing of one service process (see the module docstring)."""

    topics: tuple[str, ...] = ()
    """Subscriber topic prefixes; empty: no subscriber."""

    loop_restart_s: float = 1.0
    """Pause before a loop that raised starts again."""

    def __init__(self, topo: Topology, name: str) -> None:
        self.topo = topo
        self.name = name
        self.bus = topo.bus_config(name)
        #: Problems by kind (bad input, refused or timed-out commands, internal errors).
        self.errors: collections.Counter[str] = collections.Counter()
        self.publisher: Publisher | None = None
        self.subscriber: Subscriber | None = None
        self.server: Server | None = None
        self._clients: dict[str, Client] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # ---- to override ----

    def handlers(self) -> Mapping[str, Handler]:
        """Command handlers by name."""
        return {}

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        """Coroutine functions run as tasks while the service is open."""
        return []

    async def on_message(self, batch: list[s.Message]) -> None:
        """Handle a batch of received messages."""

    # ---- lifecycle ----

    async def __aenter__(self) -> Service:
        try:
            self.publisher = self.topo.publisher(self.name, hwm=self.bus.hwm)
            if self.topics:
                self.subscriber = self.topo.subscriber(self.name, self.topics, hwm=100_000)
            self.server = self.topo.server(self.name, dict(self.handlers()), self._audit,
                                           self.bus.dedup_size)  # fmt: skip
            await self.server.__aenter__()
            if self.subscriber is not None:
                self._start(self._receive, "receive")
            for loop in self.loops():
                self._start(loop, loop.__name__)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the tasks and close every socket (idempotent)."""
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        if self.server is not None:
            await self.server.aclose()
            self.server = None
        for ep in (self.subscriber, self.publisher):
            if ep is not None:
                ep.close()
        self.subscriber = self.publisher = None

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        async with self:
            await stop.wait()

    def _start(self, fn: Callable[[], Awaitable[None]], what: str) -> None:
        # A loop that raised (a bug) is logged, counted and restarted rather than lost: the
        # process would otherwise keep running with half its work silently stopped.
        self._tasks.append(start_supervised(fn, f"{self.name} {what}",
                                            on_failure=self._loop_failed,
                                            restart_after_s=self.loop_restart_s))  # fmt: skip

    def _loop_failed(self, _exc: BaseException) -> None:
        self.errors["internal"] += 1

    async def _receive(self) -> None:
        assert self.subscriber is not None
        sub = self.subscriber
        while True:
            batch = await sub.recv_batch(4096)
            if batch:
                await self.on_message(batch)

    # ---- helpers ----

    def bad_input(self, kind: str, err: Exception) -> None:
        """Count and log one refused input; the loop goes on."""
        self.errors[kind] += 1
        log.warning("%s: refused %s: %s", self.name, kind, err)

    async def publish_event(
        self,
        kind: str,
        data: Mapping[str, Any],
        *,
        text: str = "",
        unit: str = "",
        severity: s.Severity = "info",
    ) -> None:
        """Publish an EventMsg from this service. An event the schema refuses (a NaN in
        ``data``) is not sent: counted under ``errors["publish"]`` and logged, not raised,
        so that the loop publishing it goes on."""
        if self.publisher is None:
            return
        try:
            ev = s.Event(kind=kind, severity=severity, text=text, unit=unit, data=dict(data))
            msg = s.make(ev, self.name)
        except ValueError as err:  # pydantic's ValidationError, MessageError
            self.bad_input("publish", err)
            return
        await self.publisher.publish(msg)

    def _audit(self, record: AuditRecord) -> None:
        # Every command, run or refused, with who sent it as the transport says.
        if self.publisher is None:
            return
        try:
            self.publisher.send_now(s.make(audit_event(record, self.name), self.name))
        except ValueError as err:  # pydantic's ValidationError, MessageError
            self.bad_input("publish", err)

    async def client(self, target: str, endpoint: str | None = None) -> Client:
        """The command client to ``target`` (at ``endpoint``, default its topology one);
        a new endpoint replaces the old client."""
        ep = endpoint or self.topo.commands[target]
        old = self._clients.get(target)
        if old is not None and old.endpoint == ep:
            return old
        if old is not None:
            await old.aclose()
        client = Client(
            ep,
            name=self.name,
            curve=self.topo.client_curve(self.name, target),
            insecure=self.bus.insecure,
            timeout=self.bus.command_timeout_s,
            retries=self.bus.command_retries,
        )
        await client.__aenter__()
        self._clients[target] = client
        return client

    async def drop_client(self, target: str) -> None:
        """Close the client to ``target``, discarding what it still queues for a dead peer."""
        client = self._clients.pop(target, None)
        if client is not None:
            await client.aclose()

    async def command(
        self, target: str, name: str, args: Mapping[str, Any], *, endpoint: str | None = None,
        timeout: float | None = None, retries: int | None = None,
    ) -> s.Ack | None:  # fmt: skip
        """Send one command; None (counted) when it timed out, else the ack (a not-ok ack
        is counted too)."""
        try:
            # The sender checks with the receiver's model: a bad command is a bug here.
            check_command(self.topo.kind(target), name, args, f"{self.name} -> {target}")
        except CommandError as err:
            self.bad_input("command_invalid", err)
            return None
        client = await self.client(target, endpoint)
        try:
            ack = await client.request(name, args, timeout=timeout, retries=retries)
        except VppError as err:
            self.bad_input("command_timeout", err)
            return None
        if not ack.ok:
            self.errors["command_refused"] += 1
            log.warning("%s: %s refused %s %s: %s", self.name, target, name, dict(args), ack.error)
        return ack
