"""The ZeroMQ bus of the orchestrator (zmq.asyncio): PUB/SUB here, commands in ``commands``.

- :class:`Publisher` / :class:`Subscriber`: two-frame messages ``[topic, json]``; the topic
  is ``type/unit`` (or ``type/sender``), so a subscriber filters by type or by unit prefix.
- :class:`Server` (ROUTER) / :class:`Client` (DEALER), re-exported from
  :mod:`vpp.orchestrator.bus.commands`: command request and ack, with retries that run once.
- On ``tcp://`` command endpoints CurveZMQ is required (see :mod:`vpp.orchestrator.bus.curve`).
- With keys, publishers and subscribers are Curve clients of the broker, which stamps
  each message with its publisher's identity; an ``authenticated`` subscriber takes only
  messages whose ``sender`` is that identity (others are counted under ``spoofed``), so
  ``msg.sender`` is who published it, as the transport says.

Every receive loop rejects malformed or unexpected messages, counts them per kind in
``errors`` and logs them, and goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import zmq
import zmq.asyncio

from vpp.errors import MessageError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.commands import DEFAULT_MAX_MESSAGE_BYTES, Client, Handler, Server
from vpp.orchestrator.bus.config import BusConfig
from vpp.orchestrator.bus.curve import ClientCurve
from vpp.orchestrator.bus.sockets import (
    Endpoint,
    attach,
    context,
    recv_now,
    recv_parts,
    recv_queued,
)

__all__ = ["BusConfig", "Client", "Handler", "Publisher", "Server", "Subscriber"]

# A subscriber taking queued messages without waiting yields to the loop this often.
_YIELD_EVERY = 256


class Publisher(Endpoint):
    """Publishes messages on ``endpoint`` (binds by default; ``bind=False`` connects)."""

    def __init__(
        self,
        endpoint: str,
        *,
        bind: bool = True,
        hwm: int = 10_000,
        curve: ClientCurve | None = None,
        ctx: zmq.asyncio.Context | None = None,
    ) -> None:
        sock = context(ctx).socket(zmq.PUB)
        sock.sndhwm = hwm
        if curve is not None:
            curve.apply(sock)
        super().__init__(sock, attach(sock, endpoint, bind))

    def send_now(self, msg: s.Message) -> None:
        """Send one message under its topic without suspending (for a loop that must not);
        dropped when subscribers lag past the HWM."""
        # A PUB socket never blocks (it drops at the HWM), so no need to await the send.
        self._sync.send_multipart((msg.topic, s.encode(msg)), zmq.NOBLOCK)

    async def publish(self, msg: s.Message) -> None:
        """Send one message under its topic (dropped when subscribers lag past the HWM)."""
        self.send_now(msg)

    async def publish_raw(self, topic: bytes, payload: bytes) -> None:
        """Send already encoded bytes (for relays and tests of bad input)."""
        self._sync.send_multipart((topic, payload), zmq.NOBLOCK)


class Subscriber(Endpoint):
    """Receives the messages whose topic starts with one of ``topics`` ("" = all).

    Connects by default (``bind=True`` to bind, e.g. an aggregator that many field
    controllers connect to). ``topics`` are prefixes: ``"telemetry/"``, ``"event/bess1"``.
    ``authenticated``: take only messages stamped by a Curve broker with the identity
    that published them, and whose ``sender`` is that identity (see the module docstring).
    """

    def __init__(
        self,
        endpoint: str,
        topics: tuple[str, ...] = ("",),
        *,
        bind: bool = False,
        hwm: int = 10_000,
        curve: ClientCurve | None = None,
        authenticated: bool = False,
        max_message_bytes: int = 4 * DEFAULT_MAX_MESSAGE_BYTES,
        ctx: zmq.asyncio.Context | None = None,
    ) -> None:
        sock = context(ctx).socket(zmq.SUB)
        sock.rcvhwm = hwm
        # Above the broker's own cap: only a peer that is no broker could send more.
        sock.maxmsgsize = max_message_bytes
        if curve is not None:
            curve.apply(sock)
        for topic in topics:
            sock.subscribe(topic.encode())
        super().__init__(sock, attach(sock, endpoint, bind))
        self.authenticated = authenticated
        self._streak = 0

    async def recv(self) -> s.Message:
        """The next valid message; invalid ones are counted, logged and skipped."""
        while True:
            # Drain what is queued without the asyncio machinery; wait only when empty,
            # and yield now and then so a busy stream does not starve the other tasks.
            try:
                frames = recv_now(self._sync)
            except zmq.Again:
                self._streak = 0
                await self.sock.poll()  # POLLIN by default
                continue
            self._streak += 1
            if self._streak >= _YIELD_EVERY:
                self._streak = 0
                await asyncio.sleep(0)
            msg = self._take(frames)
            if msg is not None:
                return msg

    async def recv_batch(self, limit: int = 1024) -> list[s.Message]:
        """Wait for a message, then take what is already queued (up to ``limit`` frames).

        The cheapest way to ingest a busy stream; the list is empty when all were invalid.
        """
        while True:
            try:
                first = recv_now(self._sync)
                break
            except zmq.Again:
                await self.sock.poll()  # POLLIN by default
        out: list[s.Message] = []
        frames: list[bytes] | None = first
        for _ in range(limit):
            if frames is None:
                try:
                    frames = recv_now(self._sync)
                except zmq.Again:
                    break
            msg = self._take(frames)
            if msg is not None:
                out.append(msg)
            frames = None
        return out

    async def recv_frames(self, limit: int = 1024) -> list[list[bytes]]:
        """Wait for a message, then take what is already queued (up to ``limit``), as
        raw frames: for a receiver that validates a busy stream its own way and hands
        what it does not take to :meth:`take` (which counts and logs the bad ones).
        Taken by the compiled core in one call (:func:`~vpp.orchestrator.bus.sockets.
        recv_queued`)."""
        while True:
            out = recv_queued(self._sync, limit)
            if out:
                return out
            await self.sock.poll()  # POLLIN by default

    async def recv_parts(
        self, limit: int = 1024, *, wait: bool = True
    ) -> tuple[list[bytes], list[bytes], list[list[bytes]]]:
        """:meth:`recv_frames` as columns, for a receiver that takes a busy stream a
        chunk at a time: of the messages of :attr:`frame_count` frames, their payloads
        and (authenticated) their publishers' identities; the messages of another number
        of frames whole (for :meth:`take` to count and log). ``(payloads, identities,
        others)``; with ``wait`` False, what is queued (maybe nothing) at once."""
        n = self.frame_count
        while True:
            got = recv_parts(self._sync, limit, n)
            if got[0] or got[2] or not wait:
                return got
            await self.sock.poll()  # POLLIN by default

    @property
    def frame_count(self) -> int:
        """Frames of a well-formed message here (3 when the broker stamps the sender)."""
        return 3 if self.authenticated else 2

    def take(self, frames: list[bytes]) -> s.Message | None:
        """The message in ``frames`` validated as :meth:`recv` does; None (counted and
        logged) when it is not one."""
        return self._take(frames)

    def _take(self, frames: list[bytes]) -> s.Message | None:
        n = 3 if self.authenticated else 2
        if len(frames) != n:
            what = f"expected {n} frames, got {len(frames)}"
            self._reject(MessageError(what, kind="frames", where=self.endpoint))
            return None
        try:
            msg = s.decode(frames[1], self.endpoint)
        except MessageError as err:
            self._reject(err)
            return None
        if self.authenticated and msg.sender.encode() != frames[2]:
            who = frames[2].decode(errors="replace") or "(no identity)"
            what = f"sender {msg.sender!r} is not its publisher {who!r}"
            self._reject(MessageError(what, kind="spoofed", field="sender", where=self.endpoint))
            return None
        return msg

    async def messages(self) -> AsyncIterator[s.Message]:
        """Valid messages, forever."""
        while True:
            yield await self.recv()
