"""What every bus socket shares: binding or connecting, the error counter, fast receive."""

from __future__ import annotations

import collections
import logging

import zmq
import zmq.asyncio

from vpp.errors import ConfigError, MessageError

__all__ = ["Endpoint", "attach", "context", "recv_now"]

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
