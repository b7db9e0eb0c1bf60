"""The API's listening socket, made the same way by the launcher's check and the API."""

from __future__ import annotations

import socket

from vpp.errors import ConfigError

__all__ = ["listen"]


def listen(host: str, port: int, field: str = "api.port") -> socket.socket:
    """A TCP socket listening on ``host:port`` (0: a free port); ConfigError naming
    ``field`` when the address cannot be had (in use, not this host's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it uvicorn's header and body writes wait out the client's delayed ACK
    # (40 ms per request here).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        section = field.rpartition(".")[0]
        err = ConfigError(f"{section}: cannot listen on {host}:{port}: {exc.strerror}")
        err.field = field
        raise err from exc
    return sock
