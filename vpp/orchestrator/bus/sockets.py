"""What every bus socket shares: binding or connecting, the error counter, fast receive."""

from __future__ import annotations

import collections
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import zmq
import zmq.asyncio

from vpp import _core
from vpp.errors import ConfigError, MessageError

if TYPE_CHECKING:
    from vpp._core import FrameReceiver

__all__ = [
    "Endpoint",
    "attach",
    "context",
    "libzmq_path",
    "recv_now",
    "recv_parts",
    "recv_queued",
]

T = TypeVar("T")

log = logging.getLogger("vpp.orchestrator.bus.pubsub")

# Plain ints: pyzmq's recv_multipart turns flags and options into enum members on every
# call, which costs a third of a receive on the ingest path.
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)


def recv_now(sock: zmq.Socket[bytes]) -> list[bytes]:
    """All frames of the next queued message, or :class:`zmq.Again` when none is queued."""
    frames = [sock.recv(_NOBLOCK)]
    while sock.getsockopt(_RCVMORE):
        frames.append(sock.recv(_NOBLOCK))
    return frames


def libzmq_path() -> str | None:
    """The file of the libzmq that pyzmq loaded into this process, if one can be found."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").partition("/")[2]
                if path.rpartition("/")[2].startswith("libzmq"):
                    return "/" + path
    except OSError:
        pass
    return None


@functools.cache
def _receiver() -> FrameReceiver | None:
    # Looked up, not imported: a compiled core built before it still runs the bus.
    cls: type[FrameReceiver] | None = getattr(_core, "FrameReceiver", None)
    if cls is None:
        log.warning("bus: the compiled core has no FrameReceiver (an old build: rebuild it); "
                    "receiving in Python")  # fmt: skip
        return None
    path = libzmq_path()
    if path is None:
        log.info("bus: libzmq not found in this process; receiving in Python")
        return None
    try:
        return cls(path)
    except OSError as exc:
        log.warning("bus: %s; receiving in Python", exc)
        return None


def recv_queued(sock: zmq.Socket[bytes], limit: int, native: bool = True) -> list[list[bytes]]:
    """Up to ``limit`` messages already queued on ``sock``, each as its frames (none when
    none is queued), without waiting.

    The compiled core's :class:`~vpp._core.FrameReceiver` takes them in one call (a
    fraction of what pyzmq costs a message: its ``RCVMORE`` look-up is most of a
    receive); where it cannot find pyzmq's libzmq, or with ``native`` False,
    :func:`recv_now` does.
    """
    rx = _receiver() if native else None
    if rx is None:
        out: list[list[bytes]] = []
        try:
            for _ in range(limit):
                out.append(recv_now(sock))
        except zmq.Again:
            pass
        return out
    return _native(lambda: rx.recv(_address(sock), limit))


def recv_parts(
    sock: zmq.Socket[bytes], limit: int, parts: int, native: bool = True
) -> tuple[list[bytes], list[bytes], list[list[bytes]]]:
    """:func:`recv_queued` as columns: of the messages of ``parts`` frames (2 or 3) their
    second frames and, for 3, their third (their first, the topic, is not kept); the
    messages of another number of frames whole. ``(payloads, identities, others)``."""
    rx = _receiver() if native else None
    if rx is not None:
        return _native(lambda: rx.recv_parts(_address(sock), limit, parts))
    payloads: list[bytes] = []
    identities: list[bytes] = []
    others: list[list[bytes]] = []
    for frames in recv_queued(sock, limit, native=False):
        if len(frames) != parts or parts < 2:
            others.append(frames)
            continue
        payloads.append(frames[1])
        if parts >= 3:
            identities.append(frames[2])
    return payloads, identities, others


def _address(sock: zmq.Socket[bytes]) -> int:
    if sock.closed:  # the compiled code must not be handed a freed socket
        raise zmq.ZMQError(zmq.ENOTSOCK)
    return sock.underlying


def _native(call: Callable[[], T]) -> T:
    try:
        return call()
    except OSError as exc:
        # The exception pyzmq would raise (ContextTerminated for ETERM).
        err = exc.errno or 0
        raise (zmq.ContextTerminated() if err == zmq.ETERM else zmq.ZMQError(err)) from None


def attach(sock: zmq.asyncio.Socket, endpoint: str, bind: bool) -> str:
    """Bind or connect; the endpoint actually used (port 0 resolved).

    A refused endpoint (bad syntax, address in use, unknown host) closes the socket and
    raises :class:`ConfigError` naming it.
    """
    try:
        if bind:
            sock.bind(endpoint)
            return sock.get_string(zmq.LAST_ENDPOINT)
        sock.connect(endpoint)
        return endpoint
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        err = ConfigError(f"cannot {'bind' if bind else 'connect'} {endpoint!r}: {exc}")
        err.field = "endpoint"
        raise err from None


def context(ctx: zmq.asyncio.Context | None) -> zmq.asyncio.Context:
    return ctx if ctx is not None else zmq.asyncio.Context.instance()


def worth_logging(n: int) -> bool:
    """Whether the ``n``th occurrence of one kind of refusal should be logged.

    Every one is counted; the log gets the first ten of a kind, then each power of two,
    so a flood of forged or refused messages cannot flood the log (or the disk) as well.
    """
    return n <= 10 or n & (n - 1) == 0


class Endpoint:
    """A socket with an error counter (what every bus object shares)."""

    def __init__(self, sock: zmq.asyncio.Socket, endpoint: str) -> None:
        self.sock = sock
        # The same socket without the asyncio layer: a non-blocking send or receive on it
        # costs about a tenth of an awaited one (see benchmarks/bench_bus.py).
        self._sync: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        self.endpoint = endpoint
        self.errors: collections.Counter[str] = collections.Counter()
        """Rejected messages by kind (``frames``, ``json``, ``type``, ``version``, ...)."""

    def _reject(self, err: MessageError) -> None:
        n = self.errors[err.kind] = self.errors[err.kind] + 1
        if worth_logging(n):
            log.warning("bus %s: rejected message (%s, %d so far): %s", self.endpoint,
                        err.kind, n, err)  # fmt: skip

    def close(self) -> None:
        """Close the socket at once (pending outgoing messages are dropped)."""
        self.sock.close(linger=0)
