"""CurveZMQ on the command sockets: server keys, client keys, and who is admitted.

A :class:`ServerCurve` makes a ROUTER a Curve server with its secret key and runs a ZAP
authenticator (``zmq.auth.asyncio``) that admits only the clients whose public keys are
in the authorized directory; refused clients are counted under ``errors["auth"]``, and
failed handshakes (a client holding a wrong server key, or no keys at all) under
``errors["handshake"]``. A :class:`ClientCurve` gives a DEALER its own key pair and
the server's public key.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from pathlib import Path

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils.monitor import parse_monitor_message

from vpp.aio import cancel_and_wait
from vpp.errors import ConfigError
from vpp.orchestrator.bus.keys import load_public, load_secret

__all__ = ["ClientCurve", "ServerCurve"]

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


class ServerCurve:
    """The server's key pair (``secret_file``) and the directory of admitted client keys."""

    def __init__(self, secret_file: Path | str, authorized_dir: Path | str) -> None:
        self.public, self.secret = load_secret(secret_file)
        self.authorized_dir = Path(authorized_dir)
        if not self.authorized_dir.is_dir():
            err = ConfigError(f"authorized keys directory {self.authorized_dir} is missing")
            err.field = "authorized_dir"
            raise err
        self._allowed: set[bytes] = set()
        self._errors: collections.Counter[str] = collections.Counter()
        self._auth: AsyncioAuthenticator | None = None
        self._monitor: zmq.asyncio.Socket | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._sock: zmq.asyncio.Socket | None = None

    @staticmethod
    def check(endpoint: str, curve: ServerCurve | None, insecure: bool) -> None:
        """Refuse a tcp command endpoint without keys unless ``insecure``."""
        _require_keys(endpoint, curve is not None, insecure)

    def reload(self) -> int:
        """Read the authorized public keys again; how many there are."""
        certs = zmq.auth.load_certificates(str(self.authorized_dir))
        self._allowed = set(certs)
        return len(self._allowed)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP decision for one client public key (Z85); refusals are counted."""
        if key in self._allowed:
            return True
        self._errors["auth"] += 1
        log.warning("bus curve: refused client key %s (not in %s)", key.decode(),
                    self.authorized_dir)  # fmt: skip
        return False

    def start(
        self, sock: zmq.asyncio.Socket, ctx: zmq.asyncio.Context, errors: collections.Counter[str]
    ) -> None:
        """Make ``sock`` a Curve server and start the authenticator (before ``bind``)."""
        self._errors = errors
        self.reload()
        self._auth = AsyncioAuthenticator(ctx, log=logging.getLogger("vpp.zmq.auth"))
        self._auth.start()
        self._auth.configure_curve_callback("*", credentials_provider=self)
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        self._sock = sock
        self._monitor = sock.get_monitor_socket(_HANDSHAKE_FAILED)
        self._monitor_task = asyncio.create_task(self._watch(self._monitor))

    async def _watch(self, mon: zmq.asyncio.Socket) -> None:
        while True:
            event = parse_monitor_message(await mon.recv_multipart())
            self._errors["handshake"] += 1
            log.warning("bus curve: handshake failed (%s, errno %s)", event["event"],
                        event["value"])  # fmt: skip

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

    def apply(self, sock: zmq.asyncio.Socket) -> None:
        """Make ``sock`` a Curve client of the server (before ``connect``)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server_public
