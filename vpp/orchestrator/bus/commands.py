"""Commands over ZeroMQ: a ROUTER :class:`Server` and a DEALER :class:`Client`.

A command is answered by one ack whose ``corr`` is the command's id. The client retries
with the same id after each timeout; the server remembers the acks of recent ids and
answers a retry from that cache, so a retried command runs once.

Who sent a command is the identity Curve authenticated for the connection (the
``User-Id`` ZAP gave it, see :mod:`vpp.orchestrator.bus.curve`), "" without Curve. The
server asks its :class:`~vpp.orchestrator.bus.auth.Authorizer` before running anything:
a refusal is an ack with ``refused`` ``not_authorised`` or ``rate_limited``. Every
command, run or refused, is handed to the ``audit`` callback as an :class:`AuditRecord`.
Messages larger than ``max_message_bytes`` never reach Python: libzmq drops the sender's
connection (ZMQ_MAXMSGSIZE), so a huge command cannot stall the process decoding it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from vpp.aio import cancel_and_wait
from vpp.errors import CommandError, CommandTimeoutError, ConfigError, MessageError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.auth import Authorizer
from vpp.orchestrator.bus.curve import ClientCurve, ServerCurve, peer_identity
from vpp.orchestrator.bus.sockets import Endpoint, attach, context, log, worth_logging

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Audit",
    "AuditRecord",
    "Client",
    "Handler",
    "Server",
    "audit_event",
]

Handler = Callable[[s.CommandMsg], Awaitable[Any]]
"""A command handler: its return value is the ack's ``result``; an exception a not-ok ack."""

#: Largest message a bus socket takes by default (a command, an event; 256 KiB).
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
_MAX_ACK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class AuditRecord:
    """One command as the server saw it: who (authenticated), what, and how it ended."""

    identity: str
    role: str
    command: str
    params: Mapping[str, Any]
    ok: bool
    refused: str | None = None
    """None when it ran; else ``not_authorised``, ``rate_limited``, ``invalid``,
    ``unknown`` or ``failed`` (the handler raised)."""
    detail: Any = ""
    result: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


Check = Callable[[str, Mapping[str, Any]], object]
"""``check(name, params)``: raises :class:`CommandError` for an unknown command or an
invalid parameter."""

Audit = Callable[[AuditRecord], None]
"""Called once per command handled (never for a retry answered from the cache)."""


def audit_event(record: AuditRecord, server: str, units: Container[str] = ()) -> s.Event:
    """The ``command`` event a server publishes for ``record`` (the history's audit row).

    ``target`` is the command's unit when it names one, else ``server``; ``identity`` and
    ``role`` are what the transport and the policy said, never a name from the message.
    The event's ``unit`` is set when the target is one of ``units`` (this server's).
    """
    unit = record.params.get("unit")
    target = unit if isinstance(unit, str) and unit else server
    outcome = "done" if record.ok else f"refused ({record.refused}): {record.detail}"
    data = {
        "target": target,
        "command": record.command,
        "params": dict(record.params),
        "identity": record.identity,
        "role": record.role,
        "ok": record.ok,
        "refused": record.refused,
        "detail": record.detail,
    }
    severity: s.Severity = "info" if record.ok else "warning"
    return s.Event(kind="command", severity=severity, unit=target if target in units else "",
                   text=f"{record.command} {target} by {record.identity or '(no identity)'}: "
                   f"{outcome}", data=data)  # fmt: skip


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
        authorizer: Authorizer | None = None,
        audit: Audit | None = None,
        check: Check | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        ctx: zmq.asyncio.Context | None = None,
    ) -> None:
        ServerCurve.check(endpoint, curve, insecure)
        self.check = check
        """Checks each command's name and parameters against its model before a handler
        runs (``command_models.check_command``); None leaves that to the handlers."""
        # The ZAP handler binds one fixed inproc address per context: give a Curve server
        # its own context so that several can live in one process.
        self._own_ctx = zmq.asyncio.Context() if curve is not None else None
        sock = (self._own_ctx or context(ctx)).socket(zmq.ROUTER)
        sock.linger = 0
        sock.maxmsgsize = max_message_bytes
        self.curve = curve
        self.authorizer = authorizer
        """Decides each command; None runs every command (tests of the bus itself)."""
        self.audit = audit
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
            frames = await self.sock.recv_multipart(copy=False)
            try:
                await self._handle([f.bytes for f in frames], peer_identity(frames[-1]))
            except MessageError as err:
                self._reject(err)
            except Exception:
                # A bug must not stop the server; it is counted and logged with its trace.
                self.errors["internal"] += 1
                log.exception("bus %s: error handling a command", self.endpoint)

    async def _handle(self, frames: list[bytes], identity: str) -> None:
        if len(frames) != 2:
            raise MessageError(f"expected 2 frames, got {len(frames)}", kind="frames",
                               where=self.endpoint)  # fmt: skip
        peer, payload = frames
        where = f"{self.endpoint}, identity {identity or '(none)'}"
        try:
            msg = s.decode(payload, where)
        except MessageError as err:
            mid = _peek_id(payload) if err.kind in ("field", "version") else None
            if mid is not None:
                ack = s.Ack(ok=False, error=str(err), refused="invalid")
                await self._reply(peer, mid, ack, cache=False)
                self._audit(AuditRecord(identity, "", "", {}, False, "invalid", str(err)))
            raise
        if not isinstance(msg, s.CommandMsg):
            what = f"expected a command, got {msg.type}"
            raise MessageError(what, kind="unexpected", field="type", where=where)
        cached = self._acks.get(msg.id)
        if cached is not None:
            self.duplicates += 1
            await self.sock.send_multipart((peer, cached))
            return
        ack, role = await self._run(msg, identity)
        await self._reply(peer, msg.id, ack, cache=True)
        detail = ack.error if not ack.ok else (ack.result if isinstance(ack.result, dict) else "")
        self._audit(AuditRecord(identity, role, msg.body.name, msg.body.params, ack.ok,
                                ack.refused, detail or "", ack.result))  # fmt: skip

    async def _run(self, msg: s.CommandMsg, identity: str) -> tuple[s.Ack, str]:
        name = msg.body.name
        role = ""
        if self.authorizer is not None:
            d = self.authorizer.decide(identity, name, msg.body.params)
            role = d.role
            if not d.ok:
                n = self.errors[d.refused] = self.errors[d.refused] + 1
                if worth_logging(n):
                    log.warning("bus %s: refused %s from %s (%s, %d so far): %s",
                                self.endpoint, name, identity or "(no identity)",
                                d.refused, n, d.reason)  # fmt: skip
                return s.Ack(ok=False, error=d.reason, refused=d.refused), role
        handler = self.handlers.get(name)
        if handler is None:
            return s.Ack(ok=False, error=f"unknown command {name!r}", refused="unknown"), role
        if self.check is not None:
            try:
                self.check(name, msg.body.params)
            except CommandError as exc:
                self.errors["invalid"] += 1
                return s.Ack(ok=False, error=f"CommandError: {exc}", refused="invalid"), role
        self.executed += 1
        try:
            return s.Ack(ok=True, result=await handler(msg)), role
        except CommandError as exc:
            return s.Ack(ok=False, error=f"{type(exc).__name__}: {exc}", refused="invalid"), role
        except Exception as exc:
            return s.Ack(ok=False, error=f"{type(exc).__name__}: {exc}", refused="failed"), role

    def _audit(self, record: AuditRecord) -> None:
        if self.audit is None:
            return
        try:
            self.audit(record)
        except Exception:
            # The audit publishes; a failure there is a bug to see, not a reason to stop.
            self.errors["audit"] += 1
            log.exception("bus %s: audit of %s failed", self.endpoint, record.command)

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
        # An ack comes from the server the client chose; a long history answer is large,
        # yet the client's memory is bounded all the same.
        sock.maxmsgsize = _MAX_ACK_BYTES
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

        Waits ``timeout`` seconds per attempt (for the send, then for the ack) and
        resends the same message (same id) ``retries`` times; raises
        :class:`CommandTimeoutError` when no ack came.
        """
        if self._task is None:
            raise RuntimeError("Client.request outside 'async with Client(...)'")
        cmd = s.Command(name=name, params=dict(params or {}))
        msg = s.make(cmd, self.name)
        payload = s.encode(msg)
        fut: asyncio.Future[s.Ack] = asyncio.get_running_loop().create_future()
        self._pending[msg.id] = fut
        per_try = self.timeout if timeout is None else timeout
        attempts = 1 + (self.retries if retries is None else retries)
        try:
            for _ in range(attempts):
                try:
                    # Bounded too: a DEALER with no peer to send to (between a refused
                    # Curve handshake and the next reconnect, say) holds the send, and
                    # the caller was promised an answer or an error within its timeout.
                    await asyncio.wait_for(self.sock.send(payload), per_try)
                except asyncio.TimeoutError:
                    continue
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
