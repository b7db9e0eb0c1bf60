"""Heartbeats, liveness and the roster: who may be on the bus, who is, and who went quiet.

A :class:`HeartbeatSender` publishes a heartbeat every ``interval`` seconds. A
:class:`Liveness` tracker is fed every message received (:meth:`Liveness.observe`; any
message from a peer counts as a sign of life, not only heartbeats) and declares a peer
offline when nothing came from it for ``misses`` intervals, and online again on its next
message; each change calls the callbacks. Times are the receiver's monotonic clock, so
clock skew between hosts does not matter. Its state is bounded: it tracks only the
``allowed`` senders when given, at most ``max_peers`` (the longest silent is evicted for
a new one), and forgets a peer silent for ``forget_after`` seconds.

A :class:`Roster` is what the site configuration says about the publishers: the field
controllers and the units each owns. A service asks it whether a received message may
be used: telemetry, decisions and unit heartbeats only from the field controller that
owns the unit, a field controller's heartbeat only from that controller, frequency only
from a field controller, and every time (the envelope's ``ts``, a frequency or decision
``t``) near the time of receipt. It trusts ``msg.sender``, which the authenticated bus
sets from the publisher's key, and never a name inside the body.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from vpp.aio import cancel_and_wait
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Publisher

__all__ = ["HeartbeatSender", "Liveness", "Peer", "Roster"]

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
    """Tracks peers by sender id; ``async with`` runs the periodic check.

    ``allowed``: the only sender ids tracked (others are counted in :attr:`refused` and
    ignored); None tracks any sender, which is what ``max_peers`` and ``forget_after``
    bound: a new peer beyond ``max_peers`` evicts the one silent longest, and a peer
    silent for ``forget_after`` s (None: never) is forgotten at the next check. A
    forgotten or evicted peer that speaks again is new (online, callbacks called).
    """

    def __init__(
        self,
        interval: float,
        misses: int,
        on_change: OnChange | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        allowed: Collection[str] | None = None,
        max_peers: int = 1024,
        forget_after: float | None = 3600.0,
    ) -> None:
        if max_peers < 1:
            raise ValueError(f"max_peers must be >= 1, got {max_peers}")
        self.interval = interval
        self.misses = misses
        self.allowed = frozenset(allowed) if allowed is not None else None
        self.max_peers = max_peers
        self.forget_after = forget_after
        # Ordered by last message, oldest first (observe moves a peer to the end): the
        # longest silent is the first, so eviction and forgetting never scan the map.
        self.peers: collections.OrderedDict[str, Peer] = collections.OrderedDict()
        self.callbacks: list[OnChange] = [on_change] if on_change else []
        #: Messages from senders not in ``allowed``.
        self.refused = 0
        #: Peers dropped to make room (``max_peers``) or forgotten (``forget_after``).
        self.evicted = 0
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def timeout(self) -> float:
        """Silence after which a peer is offline (``misses`` x ``interval``)."""
        return self.misses * self.interval

    def observe(self, msg: s.Message) -> None:
        """Note a message from ``msg.sender``; a peer that was offline is online again."""
        sender = msg.sender
        if self.allowed is not None and sender not in self.allowed:
            self.refused += 1
            return
        now = self._clock()
        peers = self.peers
        peer = peers.get(sender)
        if peer is None:
            if len(peers) >= self.max_peers:
                _, gone = peers.popitem(last=False)
                self.evicted += 1
                log.debug("bus peer %s evicted for %s (max_peers %d)", gone.id, sender,
                          self.max_peers)  # fmt: skip
            peer = peers[sender] = Peer(sender, alive=True, last_seen=now)
            self._changed(peer)
        else:
            peers.move_to_end(sender)
        peer.last_seen = now
        if isinstance(msg, s.HeartbeatMsg):
            peer.heartbeat = msg.body
        if not peer.alive:
            peer.alive = True
            self._changed(peer)

    def check(self) -> list[Peer]:
        """Mark silent peers offline and forget long-silent ones; the peers that changed."""
        now = self._clock()
        changed = []
        for peer in self.peers.values():
            if peer.alive and now - peer.last_seen > self.timeout:
                peer.alive = False
                self._changed(peer)
                changed.append(peer)
        if self.forget_after is not None:
            peers = self.peers
            while peers:
                first = next(iter(peers.values()))
                if first.alive or now - first.last_seen <= self.forget_after:
                    break
                del peers[first.id]
                self.evicted += 1
                log.info("bus peer %s forgotten: silent for %.0f s", first.id,
                         now - first.last_seen)  # fmt: skip
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


class Roster:
    """The site's field controllers and the units each owns (see the module docstring).

    ``owners`` maps each unit id to its field controller's id; ``fields`` adds field
    controllers without units. A message is refused when its time is more than
    ``max_future_s`` after or ``max_age_s`` before the time of receipt. Refusals are
    counted by kind in ``errors`` (a service passes its own counter) and logged once per
    kind and sender, for at most ``log_senders`` pairs, so that a flood from many names
    costs neither the log nor memory. ``clock`` is the time of receipt: the wall clock
    (UNIX s), the senders' clock too, whatever clock a service runs its own logic on
    (a test may put the campus on a market day's clock).

    Kinds: ``future``, ``stale`` (a time out of the window), ``unknown_unit`` (a unit the
    configuration does not have), ``unknown_field`` (a field controller heartbeat for an
    id it does not have), ``not_owner`` (a unit's message not sent by its owner, a field
    controller's heartbeat not sent by itself), ``unknown_sender`` (frequency not sent by
    a field controller).
    """

    def __init__(
        self,
        owners: Mapping[str, str],
        *,
        fields: Collection[str] = (),
        max_future_s: float,
        max_age_s: float,
        errors: collections.Counter[str] | None = None,
        where: str = "",
        log_senders: int = 256,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.owners: dict[str, str] = dict(owners)
        self.fields: frozenset[str] = frozenset(fields) | frozenset(self.owners.values())
        self.max_future_s = max_future_s
        self.max_age_s = max_age_s
        self.errors: collections.Counter[str] = (
            errors if errors is not None else collections.Counter()
        )
        self.where = where or "roster"
        self.log_senders = log_senders
        self.clock = clock
        self._logged: set[tuple[str, str]] = set()

    def units_of(self, field: str) -> list[str]:
        """The units field controller ``field`` owns, in configuration order."""
        return [u for u, f in self.owners.items() if f == field]

    def check(self, msg: s.Message, now: float) -> str | None:
        """Why ``msg``, received at ``now`` (:attr:`clock`), may not be used (a refusal
        kind), or None when it may.

        Message types the roster has no rule for (events, commands) pass."""
        kind = self._time(msg.ts, now)
        if kind is not None:
            return kind
        sender = msg.sender
        if isinstance(msg, s.TelemetryMsg):
            return self._unit(msg.body.unit, sender)
        if isinstance(msg, s.HeartbeatMsg):
            hb = msg.body
            if hb.role == "unit":
                return self._unit(hb.id, sender)
            if hb.role == "field":
                if hb.id not in self.fields:
                    return "unknown_field"
                return None if sender == hb.id else "not_owner"
            return None
        if isinstance(msg, s.FrequencyMsg):
            if sender not in self.fields:
                return "unknown_sender"
            return self._time(msg.body.t, now)
        if isinstance(msg, s.DecisionMsg):
            return self._unit(msg.body.unit, sender) or self._time(msg.body.t, now)
        return None

    def admit(self, msg: s.Message, now: float) -> bool:
        """True when ``msg`` may be used; else the refusal is counted and logged (once
        per kind and sender) and False."""
        kind = self.check(msg, now)
        if kind is None:
            return True
        self.refuse(kind, msg, now)
        return False

    def refuse(self, kind: str, msg: s.Message, now: float) -> None:
        """Count one refusal of ``msg``; log it if it is the first of its kind and sender."""
        self.errors[kind] += 1
        key = (kind, msg.sender)
        if key in self._logged:
            return
        if len(self._logged) >= self.log_senders:
            if len(self._logged) == self.log_senders:
                # One sentinel entry marks that this was said; the set stays bounded.
                self._logged.add(("", ""))
                log.warning("%s: refusals from further senders are counted, not logged",
                            self.where)  # fmt: skip
            return
        self._logged.add(key)
        log.warning("%s: refused %s%s from %r: %s (further ones counted, not logged)",
                    self.where, msg.type, self._about(msg), msg.sender,
                    self._why(kind, msg, now))  # fmt: skip

    def _time(self, t: float, now: float) -> str | None:
        if t - now > self.max_future_s:
            return "future"
        if now - t > self.max_age_s:
            return "stale"
        return None

    def _unit(self, unit: str, sender: str) -> str | None:
        owner = self.owners.get(unit)
        if owner is None:
            return "unknown_unit"
        return None if sender == owner else "not_owner"

    @staticmethod
    def _about(msg: s.Message) -> str:
        body = msg.body
        name = getattr(body, "unit", "") or getattr(body, "id", "")
        return f" for {name!r}" if name else ""

    def _why(self, kind: str, msg: s.Message, now: float) -> str:
        if kind in ("future", "stale"):
            times = [msg.ts, getattr(msg.body, "t", msg.ts)]
            off = max((t - now for t in times), key=abs)
            return (f"time {off:+.1f} s from receipt (window -{self.max_age_s:g} s .. "
                    f"+{self.max_future_s:g} s)")  # fmt: skip
        if kind == "not_owner":
            body = msg.body
            name = getattr(body, "unit", "") or getattr(body, "id", "")
            owner = self.owners.get(name, name)
            return f"only {owner!r} speaks for {name!r}"
        return {"unknown_unit": "no such unit in the site configuration",
                "unknown_field": "no such field controller in the site configuration",
                "unknown_sender": "not a field controller"}.get(kind, kind)  # fmt: skip
