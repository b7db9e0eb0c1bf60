"""Commands over ZeroMQ: a ROUTER :class:`Server` and a DEALER :class:`Client`.

A command is answered by one ack whose ``corr`` is the command's id. The client retries
with the same id after each timeout; the server remembers the acks of recent ids and
answers a retry from that cache, so a retried command runs once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import zmq
import zmq.asyncio

from vpp.aio import cancel_and_wait
from vpp.errors import CommandTimeoutError, ConfigError, MessageError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.curve import ClientCurve, ServerCurve
from vpp.orchestrator.bus.sockets import Endpoint, attach, context, log

__all__ = ["Client", "Handler", "Server"]

Handler = Callable[[s.CommandMsg], Awaitable[Any]]
"""A command handler: its return value is the ack's ``result``; an exception a not-ok ack."""


def _peek_id(payload: bytes) -> str | None:
    # Error path only: find the id of a command that failed validation, to answer it.
    try:
        obj = json.loads(payload)
    except ValueError:
        return None
    mid = obj.get("id") if isinstance(obj, dict) else None
    return mid if isinstance(mid, str) and mid else None


class Server(Endpoint):
    """Answers commands on a ROUTER socket; ``async with`` binds ``endpoint`` and serves.

    ``handlers`` maps command names to coroutines; an unknown name, an invalid command
    (when its id is readable) or a handler's exception is answered with a not-ok ack.
    Commands run one at a time, in arrival order. The acks of the last ``dedup_size``
    command ids are kept; a command whose id is among them is answered from the cache.
    """

    def __init__(
        self,
        endpoint: str,
        handlers: Mapping[str, Handler],
        *,
        name: str = "server",
        curve: ServerCurve | None = None,
        insecure: bool = False,
        dedup_size: int = 4096,
        ctx: zmq.asyncio.Context | None = None,
    ) -> None:
        ServerCurve.check(endpoint, curve, insecure)
        # The ZAP handler binds one fixed inproc address per context: give a Curve server
        # its own context so that several can live in one process.
        self._own_ctx = zmq.asyncio.Context() if curve is not None else None
        sock = (self._own_ctx or context(ctx)).socket(zmq.ROUTER)
        sock.linger = 0
        self.curve = curve
        super().__init__(sock, endpoint)
        self.name = name
        self.handlers = dict(handlers)
        self.executed = 0
        """Commands run (a retry answered from the cache is not counted)."""
        self.duplicates = 0
        """Commands answered from the cache (retries)."""
        self._acks: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._dedup_size = dedup_size
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Server:
        if self.curve is not None:
            # The authenticator must run before the first handshake: without a ZAP
            # handler libzmq admits every Curve client.
            assert self._own_ctx is not None
            self.curve.start(self.sock, self._own_ctx, self.errors)
        try:
            self.endpoint = attach(self.sock, self.endpoint, bind=True)
        except ConfigError:
            await self.aclose()
            raise
        self._task = asyncio.create_task(self._serve(), name=f"bus-server {self.endpoint}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop serving and close the socket (and the Curve authenticator)."""
        task, self._task = self._task, None
        await cancel_and_wait([task])
        if self.curve is not None:
            await self.curve.stop()
        self.close()
        if self._own_ctx is not None and not self._own_ctx.closed:
            self._own_ctx.term()

    async def _serve(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            try:
                await self._handle(frames)
            except MessageError as err:
                self._reject(err)
            except Exception:
                # A bug must not stop the server; it is counted and logged with its trace.
                self.errors["internal"] += 1
                log.exception("bus %s: error handling a command", self.endpoint)

    async def _handle(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            raise MessageError(f"expected 2 frames, got {len(frames)}", kind="frames",
                               where=self.endpoint)  # fmt: skip
        peer, payload = frames
        try:
            msg = s.decode(payload, self.endpoint)
        except MessageError as err:
            mid = _peek_id(payload) if err.kind in ("field", "version") else None
            if mid is not None:
                await self._reply(peer, mid, s.Ack(ok=False, error=str(err)), cache=False)
            raise
        if not isinstance(msg, s.CommandMsg):
            where = f"{self.endpoint}, sender {msg.sender}"
            what = f"expected a command, got {msg.type}"
            raise MessageError(what, kind="unexpected", field="type", where=where)
        cached = self._acks.get(msg.id)
        if cached is not None:
            self.duplicates += 1
            await self.sock.send_multipart((peer, cached))
            return
        handler = self.handlers.get(msg.body.name)
        if handler is None:
            ack = s.Ack(ok=False, error=f"unknown command {msg.body.name!r}")
        else:
            self.executed += 1
            try:
                ack = s.Ack(ok=True, result=await handler(msg))
            except Exception as exc:
                ack = s.Ack(ok=False, error=f"{type(exc).__name__}: {exc}")
        await self._reply(peer, msg.id, ack, cache=True)

    async def _reply(self, peer: bytes, mid: str, ack: s.Ack, *, cache: bool) -> None:
        payload = s.encode(s.make(ack, self.name, corr=mid))
        if cache:
            self._acks[mid] = payload
            while len(self._acks) > self._dedup_size:
                self._acks.popitem(last=False)
        await self.sock.send_multipart((peer, payload))


class Client(Endpoint):
    """Sends commands to a :class:`Server` over a DEALER socket; start with ``async with``."""

    def __init__(
        self,
        endpoint: str,
        *,
        name: str = "client",
        curve: ClientCurve | None = None,
        insecure: bool = False,
        timeout: float = 1.0,
        retries: int = 2,
        ctx: zmq.asyncio.Context | None = None,
    ) -> None:
        ClientCurve.check(endpoint, curve, insecure)
        sock = context(ctx).socket(zmq.DEALER)
        sock.linger = 0
        if curve is not None:
            curve.apply(sock)
        super().__init__(sock, attach(sock, endpoint, bind=False))
        self.name = name
        self.timeout = timeout
        self.retries = retries
        self.sent = 0
        """Frames sent, retries included."""
        self._pending: dict[str, asyncio.Future[s.Ack]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        self._task = asyncio.create_task(self._receive(), name=f"bus-client {self.endpoint}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop receiving, fail the pending requests and close the socket."""
        task, self._task = self._task, None
        await cancel_and_wait([task])
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()
        self.close()

    async def request(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> s.Ack:
        """Send command ``name`` and return its ack (``ok`` False: refused or failed).

        Waits ``timeout`` seconds per attempt and resends the same message (same id)
        ``retries`` times; raises :class:`CommandTimeoutError` when no ack came.
        """
        if self._task is None:
            raise RuntimeError("Client.request outside 'async with Client(...)'")
        cmd = s.Command(name=name, params=dict(params or {}), issued_by=self.name)
        msg = s.make(cmd, self.name)
        payload = s.encode(msg)
        fut: asyncio.Future[s.Ack] = asyncio.get_running_loop().create_future()
        self._pending[msg.id] = fut
        per_try = self.timeout if timeout is None else timeout
        attempts = 1 + (self.retries if retries is None else retries)
        try:
            for _ in range(attempts):
                await self.sock.send(payload)
                self.sent += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(fut), per_try)
        finally:
            self._pending.pop(msg.id, None)
            fut.cancel()
        raise CommandTimeoutError(
            f"no ack to {name!r} after {attempts} attempt(s) of {per_try} s",
            command=name,
            where=self.endpoint,
        )

    async def _receive(self) -> None:
        while True:
            payload = await self.sock.recv()
            try:
                msg = s.decode(payload, self.endpoint)
                if not isinstance(msg, s.AckMsg):
                    raise MessageError(f"expected an ack, got {msg.type}", kind="unexpected",
                                       field="type", where=self.endpoint)  # fmt: skip
            except MessageError as err:
                self._reject(err)
                continue
            fut = self._pending.get(msg.corr or "")
            # No waiter: the ack of a retry whose first answer already arrived, or late.
            if fut is not None and not fut.done():
                fut.set_result(msg.body)
