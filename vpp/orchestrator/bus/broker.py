"""The events broker: an XSUB/XPUB proxy between ``topo.events_in`` and ``topo.events_out``.

Publishers connect their PUB sockets to ``events_in`` (the XSUB side), subscribers their
SUB sockets to ``events_out`` (the XPUB side); subscriptions travel upstream, messages
downstream. It runs in a thread of its own, so it does not depend on any event loop; a
PAIR control socket over inproc tells it to terminate.

Without keys it is libzmq's own proxy (``zmq.proxy_steerable``), at C speed, and
subscribers cannot know who published what. With a :class:`ServerCurve` both ends are
Curve servers: ZAP admits on ``events_in`` (domain ``publish``) only the identities the
policy lets publish and on ``events_out`` (domain ``subscribe``) those it lets read, so a
keyless peer can neither forge nor read; and the relay appends to each message a third
frame, the publisher's authenticated identity, which :class:`~vpp.orchestrator.bus.
pubsub.Subscriber` compares with the message's ``sender``. A publisher's message of
other than two frames, or larger than ``max_message_bytes`` (libzmq drops that
connection), or beyond its identity's ``publish_rate``, is not forwarded;
:attr:`Broker.errors` counts what was dropped.

The relay is the compiled core's :class:`vpp._core.StampRelay`, which drives the same
pyzmq sockets through the libzmq pyzmq loaded, with the GIL released (a Python loop
relays four to five times fewer messages a second, docs/benchmarks.md). Where that
libzmq cannot be found (``/proc/self/maps`` names none), the same relay runs in Python.

    async with Broker(topo.events_in, topo.events_out):
        ...

or ``await run_broker(events_in, events_out, stop)`` until ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import uuid
from collections.abc import Callable

import zmq

from vpp._core import StampRelay
from vpp.orchestrator.bus.auth import Policy, RateLimiter
from vpp.orchestrator.bus.commands import DEFAULT_MAX_MESSAGE_BYTES
from vpp.orchestrator.bus.curve import ServerCurve
from vpp.orchestrator.bus.sockets import libzmq_path

__all__ = ["Broker", "run_broker"]

log = logging.getLogger(__name__)

# Messages relayed per wake-up before the control socket is looked at again.
_BATCH = 1024
# Publish tokens taken from an identity's bucket at once.
_CHUNK = 64


class Broker:
    """The XSUB/XPUB proxy (see the module docstring); :meth:`start` binds both ends."""

    def __init__(
        self,
        events_in: str,
        events_out: str,
        *,
        curve: ServerCurve | None = None,
        policy: Policy | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        hwm: int = 10_000,
        publish_rate: RateLimiter | None = None,
        native: bool = True,
    ) -> None:
        self.events_in = events_in
        self.hwm = hwm
        self.events_out = events_out
        self.curve = curve
        if curve is not None and policy is not None:
            curve.admit = _admit(policy)
        self.max_message_bytes = max_message_bytes
        self.publish_rate = publish_rate
        """Messages per second each publishing identity may send (Curve only)."""
        self.native = native
        """Relay in the compiled core when the libzmq pyzmq uses can be found."""
        self._errors: collections.Counter[str] = collections.Counter()
        self._dropped: collections.Counter[str] = collections.Counter()
        self._forwarded = 0
        self._core: StampRelay | None = None
        self._stamps: dict[str, bytes] = {}
        # Tokens taken from each identity's bucket and not spent yet (at most _CHUNK).
        self._allowance: dict[str, int] = {}
        # A context of its own: its I/O thread ends with the broker, whoever else uses zmq.
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._control = f"inproc://broker-{uuid.uuid4().hex}"
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._ctl: zmq.Socket[bytes] | None = None

    @property
    def errors(self) -> collections.Counter[str]:
        """Dropped publisher messages by kind (``frames``, ``rate_limited``), refused
        peers (``auth``), failed handshakes (``handshake``)."""
        if self._core is None:
            return self._errors
        return self._errors + collections.Counter(self._core.errors())

    @property
    def dropped(self) -> collections.Counter[str]:
        """Messages dropped by the publish rate, by identity."""
        if self._core is None:
            return self._dropped
        return collections.Counter(self._core.dropped())

    @property
    def forwarded(self) -> int:
        """Messages relayed (Curve only; libzmq's proxy keeps no count)."""
        return self._forwarded if self._core is None else self._core.forwarded

    @property
    def relay(self) -> str:
        """Which relay runs: ``libzmq`` (no keys), ``core`` or ``python``."""
        if self.curve is None:
            return "libzmq"
        return "python" if self._core is None else "core"

    def start(self) -> None:
        """Bind both endpoints in the proxy thread; raises what binding raised."""
        if self._thread is not None:
            raise RuntimeError("broker already started")
        # The control PAIR binds here before the thread connects: inproc needs the bind first.
        self._ctl = self._ctx.socket(zmq.PAIR)
        self._ctl.linger = 0
        self._ctl.bind(self._control)
        if self.curve is not None:
            self.curve.start_thread(self._ctx, self._errors)
            self._core = _core_relay(self.publish_rate) if self.native else None
        self._thread = threading.Thread(target=self._run, name="events-broker", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            err, self._error = self._error, None
            self._thread.join()
            self._thread = None
            self._ctl.close()
            self._ctl = None
            if self.curve is not None:
                self.curve.stop_thread()
            self._ctx.term()
            raise err

    def _run(self) -> None:
        xsub = self._ctx.socket(zmq.XSUB)
        xpub = self._ctx.socket(zmq.XPUB)
        ctl = self._ctx.socket(zmq.PAIR)
        for sock in (xsub, xpub, ctl):
            sock.linger = 0
        xsub.maxmsgsize = self.max_message_bytes
        xsub.rcvhwm = xpub.sndhwm = self.hwm
        if self.curve is not None:
            self.curve.secure(xsub, "publish")
            self.curve.secure(xpub, "subscribe")
        try:
            try:
                xsub.bind(self.events_in)
                xpub.bind(self.events_out)
                ctl.connect(self._control)
            except zmq.ZMQError as exc:
                self._error = exc
                return
            finally:
                self._ready.set()
            if self.curve is None:
                zmq.proxy_steerable(xsub, xpub, None, ctl)
            elif self._core is not None:
                self._core.run(xsub.underlying, xpub.underlying, ctl.underlying)
            else:
                self._relay(xsub, xpub, ctl)
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in (xsub, xpub, ctl):
                sock.close(linger=0)

    def _relay(
        self, xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes], ctl: zmq.Socket[bytes]
    ) -> None:
        # The stamping proxy: what zmq.proxy does, plus the publisher's identity appended.
        poller = zmq.Poller()
        for sock in (xsub, xpub, ctl):
            poller.register(sock, zmq.POLLIN)
        noblock = int(zmq.NOBLOCK)
        while True:
            ready = dict(poller.poll())
            if ctl in ready:
                return
            if xpub in ready:  # subscriptions, upstream
                for _ in range(_BATCH):
                    try:
                        xsub.send(xpub.recv(noblock))
                    except zmq.Again:
                        break
            if xsub in ready:
                self._forwarded += self._relay_batch(xsub, xpub)

    def _relay_batch(self, xsub: zmq.Socket[bytes], xpub: zmq.Socket[bytes]) -> int:
        # The hot loop of the broker: bound methods and plain int flags (pyzmq's enums
        # cost per call), the topic copied (small), the payload taken as a Frame to read
        # the identity the ZAP handler gave its connection, and sent on without a copy.
        # The publish rate is charged a chunk of messages at a time, not per message.
        recv, send, rcvmore = xsub.recv, xpub.send, xsub.getsockopt
        noblock, more, rcvmore_opt = int(zmq.NOBLOCK), int(zmq.SNDMORE), int(zmq.RCVMORE)
        stamps, allowance, limiter = self._stamps, self._allowance, self.publish_rate
        n = 0
        for _ in range(_BATCH):
            try:
                topic = recv(noblock)
            except zmq.Again:
                break
            if not rcvmore(rcvmore_opt):
                self._errors["frames"] += 1
                continue
            payload = recv(noblock, copy=False)
            if payload.more:
                while rcvmore(rcvmore_opt):  # the rest of a message of 3+ frames
                    recv(noblock)
                self._errors["frames"] += 1
                continue
            try:
                name: str = payload.get("User-Id")  # type: ignore[assignment]  # a str key
            except zmq.ZMQError:
                name = ""
            if limiter is not None:
                left = allowance.get(name, 0)
                if left <= 0:
                    # Tokens are taken from the identity's bucket a chunk at a time.
                    left = limiter.take_many(name, _CHUNK)
                    if left <= 0:
                        # One publisher's flood must not starve the others' subscribers.
                        self._errors["rate_limited"] += 1
                        self._dropped[name] += 1
                        continue
                allowance[name] = left - 1
            stamp = stamps.get(name)
            if stamp is None:
                stamp = stamps[name] = name.encode()
            send(topic, more)
            send(payload, more, copy=False)
            send(stamp)
            n += 1
        return n

    def stop(self) -> None:
        """Terminate the proxy, wait for its thread and close every socket (blocking)."""
        thread, self._thread = self._thread, None
        ctl, self._ctl = self._ctl, None
        if thread is not None and ctl is not None:
            ctl.send(b"TERMINATE")
            thread.join()
        if ctl is not None:
            ctl.close(linger=0)
            if self.curve is not None:
                self.curve.stop_thread()
            self._ctx.term()

    async def __aenter__(self) -> Broker:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


async def run_broker(events_in: str, events_out: str, stop: asyncio.Event) -> None:
    """Run the events proxy until ``stop`` is set, then close it."""
    async with Broker(events_in, events_out):
        await stop.wait()


def _core_relay(rate: RateLimiter | None) -> StampRelay | None:
    path = libzmq_path()
    if path is None:
        log.warning("events broker: libzmq not found in this process; relaying in Python")
        return None
    try:
        if rate is None:
            return StampRelay(path)
        return StampRelay(path, rate_per_s=rate.rate, burst=rate.burst)
    except OSError as exc:
        log.warning("events broker: %s; relaying in Python", exc)
        return None


def _admit(policy: Policy) -> Callable[[str, str], bool]:
    def admit(domain: str, identity: str) -> bool:
        if domain == "publish":
            return policy.may_publish(identity)
        return domain == "subscribe" and policy.may_subscribe(identity)

    return admit
