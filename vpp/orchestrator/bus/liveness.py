"""Heartbeats and liveness: who is on the bus, and who went quiet.

A :class:`HeartbeatSender` publishes a heartbeat every ``interval`` seconds. A
:class:`Liveness` tracker is fed every message received (:meth:`Liveness.observe`; any
message from a peer counts as a sign of life, not only heartbeats) and declares a peer
offline when nothing came from it for ``misses`` intervals, and online again on its next
message; each change calls the callbacks. Times are the receiver's monotonic clock, so
clock skew between hosts does not matter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from vpp.aio import cancel_and_wait
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Publisher

__all__ = ["HeartbeatSender", "Liveness", "Peer"]

log = logging.getLogger(__name__)

OnChange = Callable[["Peer"], None]


class HeartbeatSender:
    """Publishes ``heartbeat`` on ``publisher`` every ``interval`` s (``async with``)."""

    def __init__(self, publisher: Publisher, heartbeat: s.Heartbeat, interval: float) -> None:
        self.publisher = publisher
        self.heartbeat = heartbeat
        self.interval = interval
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HeartbeatSender:
        self._task = asyncio.create_task(self._run(), name=f"heartbeat {self.heartbeat.id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([task])

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            await self.publisher.publish(s.make(self.heartbeat, self.heartbeat.id))
            self.sent += 1
            # On a fixed grid, so a slow publish does not stretch the interval.
            await asyncio.sleep(max(0.0, start + self.sent * self.interval - loop.time()))


@dataclass
class Peer:
    """What the tracker knows of one peer."""

    id: str
    alive: bool = True
    last_seen: float = 0.0
    """Monotonic time of the last message."""
    heartbeat: s.Heartbeat | None = None
    """The last heartbeat body (role, location, capabilities), if one came."""
    changes: int = 0
    """How many times it went online or offline."""


class Liveness:
    """Tracks peers by sender id; ``async with`` runs the periodic check."""

    def __init__(
        self,
        interval: float,
        misses: int,
        on_change: OnChange | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.misses = misses
        self.peers: dict[str, Peer] = {}
        self.callbacks: list[OnChange] = [on_change] if on_change else []
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def timeout(self) -> float:
        """Silence after which a peer is offline (``misses`` x ``interval``)."""
        return self.misses * self.interval

    def observe(self, msg: s.Message) -> None:
        """Note a message from ``msg.sender``; a peer that was offline is online again."""
        now = self._clock()
        peer = self.peers.get(msg.sender)
        if peer is None:
            peer = self.peers[msg.sender] = Peer(msg.sender, alive=True, last_seen=now)
            self._changed(peer)
        peer.last_seen = now
        if isinstance(msg, s.HeartbeatMsg):
            peer.heartbeat = msg.body
        if not peer.alive:
            peer.alive = True
            self._changed(peer)

    def check(self) -> list[Peer]:
        """Mark silent peers offline; the peers that changed."""
        now = self._clock()
        changed = []
        for peer in self.peers.values():
            if peer.alive and now - peer.last_seen > self.timeout:
                peer.alive = False
                self._changed(peer)
                changed.append(peer)
        return changed

    def alive(self) -> list[str]:
        """Ids of the peers online now."""
        return [p.id for p in self.peers.values() if p.alive]

    def _changed(self, peer: Peer) -> None:
        peer.changes += 1
        log.info("bus peer %s is %s", peer.id, "online" if peer.alive else "offline")
        for cb in self.callbacks:
            try:
                cb(peer)
            except Exception:
                # One broken observer must not stop liveness tracking for the others.
                log.exception("liveness callback failed for peer %s", peer.id)

    async def __aenter__(self) -> Liveness:
        self._task = asyncio.create_task(self._run(), name="liveness")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([task])

    async def _run(self) -> None:
        # Checking at half the interval bounds the detection delay to timeout + interval/2.
        while True:
            await asyncio.sleep(self.interval / 2)
            self.check()
