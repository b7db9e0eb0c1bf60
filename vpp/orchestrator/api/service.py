"""The ``api`` role process: the HTTP API and dashboard, served by uvicorn.

``serve(site, topo, name, stop)`` (what the launcher runs, as for every role) reads the
bus into a :class:`LiveState` and the metrics, and serves :func:`create_app` on
``api.host:api.port`` (HTTPS with ``api.tls_cert``/``tls_key``) until ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator

import uvicorn

from vpp.config.models import SiteConfig
from vpp.orchestrator.api.app import ApiContext, create_app
from vpp.orchestrator.api.credentials import Sessions
from vpp.orchestrator.api.gateway import BusGateway
from vpp.orchestrator.api.listen import listen
from vpp.orchestrator.api.metrics import SiteMetrics
from vpp.orchestrator.api.state import LiveState
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.topology import Topology

__all__ = ["ApiServer", "serve"]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The role process's own handlers stop it (the launcher's SIGTERM sets `stop`);
        # uvicorn must not replace them for as long as it serves.
        yield


class ApiServer:
    """The API of one site: bus reader, state, metrics and the HTTP server."""

    def __init__(self, site: SiteConfig, topo: Topology, name: str = "api") -> None:
        self.site = site
        cfg = site.api
        self.state = LiveState(site, window_s=cfg.history_window_s)
        self.metrics = SiteMetrics(site)
        self.gateway = BusGateway(site, topo, self._on_message, name=name)
        self.ctx = ApiContext(cfg, self.state, self.gateway, self.metrics, topo.policy(),
                              Sessions(cfg.session_ttl_s), tls=cfg.tls_cert is not None,
                              history=site.history.path if site.history.enabled else None)
        self.metrics.fleet_from(lambda: self.state.fleet(time.time()))
        self.metrics.error_source("http", lambda: dict(self.ctx.errors))
        self.metrics.error_source("bus", self._bus_errors)
        self.app = create_app(self.ctx)
        self.port = 0
        self._sock: socket.socket | None = None

    def _on_message(self, msg: s.Message) -> None:
        self.state.update(msg)
        self.metrics.observe(msg)

    def _bus_errors(self) -> dict[str, int]:
        sub = self.gateway.subscriber
        errors = dict(sub.errors) if sub is not None else {}
        if self.gateway.errors:
            errors["handler"] = self.gateway.errors
        return errors

    def bind(self) -> socket.socket:
        """Bind the listening socket (before serving, so a port in use fails at once)."""
        cfg = self.site.api
        sock = listen(cfg.host, cfg.port)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._sock = sock
        return sock

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        cfg = self.site.api
        sock = self._sock or self.bind()
        await self.gateway.start()
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                ssl_certfile=cfg.tls_cert, ssl_keyfile=cfg.tls_key,
                                lifespan="off")  # fmt: skip
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="api-http")
        scheme = "https" if cfg.tls_cert else "http"
        log.info("api: serving %s://%s:%d", scheme, cfg.host, self.port)
        try:
            done, _ = await asyncio.wait(
                [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                task.result()  # the server ended on its own: say why
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
            await self.gateway.close()
            sock.close()


async def serve(site: SiteConfig, topo: Topology, name: str, stop: asyncio.Event) -> None:
    """Run the API of ``site`` until ``stop`` is set."""
    await ApiServer(site, topo, name).run(stop)
