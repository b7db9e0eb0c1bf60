"""The API process's side of the bus: it reads everything and commands as its users.

:class:`BusGateway` subscribes (as the identity ``api``, which may read and nothing
else) and feeds each message to the :class:`LiveState` and the metrics. A command from
an HTTP user goes out with the Curve key of the bus identity that user acts as, to the
process that owns the target (a unit's field controller, the campus, the grid service,
the market gateway): that process decides by the identity its transport authenticated
and audits the command, as it would for ``vpp ctl``. The API adds no authority of its
own and keeps none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from vpp.aio import cancel_and_wait
from vpp.config.models import SiteConfig
from vpp.errors import CommandError, MessageError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.commands import Client
from vpp.orchestrator.bus.pubsub import Subscriber
from vpp.orchestrator.bus.topology import Topology

__all__ = ["TOPICS", "BusGateway"]

log = logging.getLogger(__name__)

#: What the API reads from the events bus.
TOPICS = ("telemetry/", "frequency/", "decision/", "event/")


class BusGateway:
    """Reads the bus into ``on_message``; sends commands as a user's bus identity."""

    def __init__(
        self, site: SiteConfig, topo: Topology, on_message: Callable[[s.Message], None],
        *, name: str = "api",
    ) -> None:  # fmt: skip
        self.site = site
        self.topo = topo
        self.name = name
        self.on_message = on_message
        self.owner = {u.id: f.id for f in site.field for u in f.units}
        self.subscriber: Subscriber | None = None
        self._clients: dict[tuple[str, str], Client] = {}
        self._task: asyncio.Task[None] | None = None
        self.received = 0
        self.errors = 0

    async def start(self) -> None:
        """Subscribe and start reading."""
        self.subscriber = self.topo.subscriber(self.name, TOPICS, hwm=100_000)
        self._task = asyncio.create_task(self._read(), name="api-bus")

    async def _read(self) -> None:
        assert self.subscriber is not None
        while True:
            batch = await self.subscriber.recv_batch()
            for msg in batch:
                self.received += 1
                try:
                    self.on_message(msg)
                except Exception:
                    # A bug in the state must not stop the reading; it is counted and seen.
                    self.errors += 1
                    log.exception("api: handling %s from %s failed", msg.type, msg.sender)

    def server_of(self, kind: str, unit: str | None = None) -> str:
        """The process that takes a command of ``kind`` (``field`` needs the unit)."""
        if kind == "field":
            if unit is None or unit not in self.owner:
                raise CommandError(f"no unit {unit!r} at this site")
            return self.owner[unit]
        if kind not in ("campus", "grid", "market"):
            raise CommandError(f"no server kind {kind!r}")
        return kind

    async def command(
        self, identity: str, server: str, name: str, params: dict[str, Any],
        timeout: float | None = None,
    ) -> s.Ack:  # fmt: skip
        """Send ``name`` to ``server`` with ``identity``'s key; the Ack (refusals included).

        Raises CommandTimeoutError when the server does not answer, MessageError when the
        identity has no key here."""
        client = await self._client(identity, server)
        return await client.request(name, params, timeout=timeout)

    async def _client(self, identity: str, server: str) -> Client:
        key = (identity, server)
        client = self._clients.get(key)
        if client is None:
            try:
                curve = self.topo.client_curve(identity, server)
            except (OSError, ValueError) as exc:
                raise MessageError(f"no bus key for identity {identity!r}: {exc}",
                                   kind="key", where="api") from exc  # fmt: skip
            client = Client(self.topo.commands[server], name=f"api:{identity}", curve=curve,
                            insecure=self.topo.bus.insecure,
                            timeout=self.topo.bus.command_timeout_s,
                            retries=self.topo.bus.command_retries)  # fmt: skip
            await client.__aenter__()
            self._clients[key] = client
        return client

    async def close(self) -> None:
        """Stop reading and close every socket."""
        await cancel_and_wait([self._task] if self._task is not None else [])
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
        self._clients.clear()
        if self.subscriber is not None:
            self.subscriber.close()

