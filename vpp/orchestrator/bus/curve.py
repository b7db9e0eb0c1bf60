"""CurveZMQ on the bus sockets: server keys, client keys, who is admitted and who they are.

A :class:`ServerCurve` makes a socket (a command ROUTER, the broker's XSUB and XPUB) a
Curve server with its secret key and runs a ZAP authenticator that admits only the
clients whose public keys are in the authorized directory, each file ``NAME.key`` naming
an identity: ZAP hands libzmq that name as the connection's ``User-Id``, which every
message received on it carries (``frame.get("User-Id")``), so the receiver knows who sent
it from the transport, whatever the message says. An ``admit`` function may narrow who is
let in (the broker admits only the identities whose roles may publish, or read). Refused
clients are counted under ``errors["auth"]``, failed handshakes (a client holding a wrong
server key, or no keys at all) under ``errors["handshake"]``. A :class:`ClientCurve`
gives a DEALER, PUB or SUB its own key pair and the server's public key.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.auth.base import Authenticator
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from vpp.aio import cancel_and_wait
from vpp.errors import ConfigError
from vpp.orchestrator.bus.keys import load_public, load_secret

__all__ = ["ClientCurve", "ServerCurve", "peer_identity"]

log = logging.getLogger(__name__)

_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)


def _require_keys(endpoint: str, has_keys: bool, insecure: bool) -> None:
    if endpoint.startswith("tcp://") and not has_keys and not insecure:
        err = ConfigError(
            f"{endpoint}: a tcp command endpoint needs Curve keys (keys_dir); "
            "set insecure to run it in clear text"
        )
        err.field = "keys_dir"
        raise err


def peer_identity(frame: zmq.Frame) -> str:
    """The identity ZAP gave the connection ``frame`` came on ("" without Curve)."""
    try:
        return str(frame.get("User-Id"))
    except zmq.ZMQError:  # no ZAP handler on this socket: no identity
        return ""


#: ZAP domains: a command server's (none), the broker's two ends.
_DOMAINS = ("*", "publish", "subscribe")

Admit = Callable[[str, str], bool]
"""``admit(domain, identity)``: whether a known identity may connect in that ZAP domain."""


class ServerCurve:
    """The server's key pair (``secret_file``) and the directory of admitted client keys
    (``NAME.key`` each: the identity ``NAME``)."""

    def __init__(
        self, secret_file: Path | str, authorized_dir: Path | str, admit: Admit | None = None
    ) -> None:
        self.public, self.secret = load_secret(secret_file)
        self.authorized_dir = Path(authorized_dir)
        if not self.authorized_dir.is_dir():
            err = ConfigError(f"authorized keys directory {self.authorized_dir} is missing")
            err.field = "authorized_dir"
            raise err
        self.admit = admit
        self._allowed: dict[bytes, str] = {}
        self._errors: collections.Counter[str] = collections.Counter()
        self._auth: Authenticator | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._sock: zmq.asyncio.Socket | None = None

    @staticmethod
    def check(endpoint: str, curve: ServerCurve | None, insecure: bool) -> None:
        """Refuse a tcp command endpoint without keys unless ``insecure``."""
        _require_keys(endpoint, curve is not None, insecure)

    def reload(self) -> int:
        """Read the authorized public keys again; how many there are."""
        allowed: dict[bytes, str] = {}
        for path in sorted(self.authorized_dir.glob("*.key")):
            allowed[load_public(path)] = path.stem
        self._allowed = allowed
        return len(self._allowed)

    def identity(self, key: bytes) -> str:
        """The identity of a client public key (Z85 or raw 32 bytes); "" when unknown."""
        if len(key) == 32:
            key = z85.encode(key)
        return self._allowed.get(key, "")

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP decision for one client public key (Z85); refusals are counted."""
        name = self._allowed.get(key)
        if name is not None and (self.admit is None or self.admit(domain, name)):
            return True
        self._errors["auth"] += 1
        who = f"identity {name!r}" if name else f"key {key.decode()} (not in {self.authorized_dir})"
        log.warning("bus curve: refused %s in domain %r", who, domain)
        return False

    def _configure(self, auth: Authenticator) -> None:
        # pyzmq looks the provider up by the socket's exact ZAP domain ("" is "*").
        for domain in _DOMAINS:
            auth.configure_curve_callback(domain, credentials_provider=self)
        # The User-Id of every message from this client: its identity, not its key.
        auth.curve_user_id = self.identity  # type: ignore[method-assign,assignment]
        self._auth = auth

    def secure(self, sock: zmq.Socket[Any], domain: str = "") -> None:
        """Make ``sock`` a Curve server in ZAP ``domain`` (before ``bind``)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        if domain:
            sock.zap_domain = domain.encode()

    def start_thread(self, ctx: zmq.Context[Any], errors: collections.Counter[str]) -> None:
        """Start the authenticator in a thread of its own (for a socket not in asyncio)."""
        self._errors = errors
        self.reload()
        auth = ThreadAuthenticator(ctx, log=logging.getLogger("vpp.zmq.auth"))
        auth.start()
        self._configure(auth)

    def start(
        self, sock: zmq.asyncio.Socket, ctx: zmq.asyncio.Context, errors: collections.Counter[str]
    ) -> None:
        """Make ``sock`` a Curve server and start the authenticator (before ``bind``)."""
        self._errors = errors
        self.reload()
        auth = AsyncioAuthenticator(ctx, log=logging.getLogger("vpp.zmq.auth"))
        auth.start()
        self._configure(auth)
        self.secure(sock)
        self._sock = sock
        self._monitor = sock.get_monitor_socket(_HANDSHAKE_FAILED)
        self._monitor_task = asyncio.create_task(self._watch(self._monitor))

    async def _watch(self, mon: zmq.asyncio.Socket) -> None:
        while True:
            event = parse_monitor_message(await mon.recv_multipart())
            n = self._errors["handshake"] = self._errors["handshake"] + 1
            # A keyless client retries its handshake for ever: log the first ten, then
            # each power of two (all are counted).
            if n <= 10 or n & (n - 1) == 0:
                log.warning("bus curve: handshake failed (%s, errno %s; %d so far)",
                            event["event"], event["value"], n)  # fmt: skip

    async def stop(self) -> None:
        """Stop the authenticator and the handshake monitor."""
        for task in await cancel_and_wait([self._monitor_task]):
            log.warning("bus curve: handshake monitor ended with %r", task.exception())
        self._monitor_task = None
        if self._sock is not None and self._monitor is not None:
            if not self._sock.closed:  # closed already when binding failed
                self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        self.stop_thread()

    def stop_thread(self) -> None:
        """Stop the authenticator (what :meth:`start_thread` started)."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


class ClientCurve:
    """The client's key pair (``secret_file``) and the server's public key file."""

    def __init__(self, secret_file: Path | str, server_public_file: Path | str) -> None:
        self.public, self.secret = load_secret(secret_file)
        self.server_public = load_public(server_public_file)

    @staticmethod
    def check(endpoint: str, curve: ClientCurve | None, insecure: bool) -> None:
        """Refuse a tcp command endpoint without keys unless ``insecure``."""
        _require_keys(endpoint, curve is not None, insecure)

    def apply(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock`` a Curve client of the server (before ``connect``)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server_public
