"""The OS processes of a site: what runs in each child, and how one is supervised.

Every role runs in its own process, started with multiprocessing's ``spawn`` context (a
fresh interpreter: no inherited event loop, sockets or threads of the launcher). A child
asks Linux to send it SIGTERM when the launcher dies (``prctl(PR_SET_PDEATHSIG)``), so
even a SIGKILLed launcher leaves nothing behind, then runs its own asyncio loop with
``<module>.serve(site, topo, name, stop)``; SIGTERM and SIGINT set ``stop``.

:class:`Managed` holds one supervised process: when it dies it is started again after
a backoff that doubles with each quick death (``backoff_s`` up to ``max_backoff_s``) and
falls back to the first step once a run has lasted ``stable_s``.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from vpp.aio import stop_on_signals
from vpp.config.models import SiteConfig
from vpp.orchestrator.bus.topology import Topology

__all__ = ["ROLE_MODULES", "Managed", "plant_main", "role_main", "spawn_context"]

log = logging.getLogger(__name__)

#: The module whose ``serve`` runs each role.
ROLE_MODULES: dict[str, str] = {
    "field": "vpp.orchestrator.field.controller",
    "campus": "vpp.orchestrator.campus.service",
    "grid": "vpp.orchestrator.grid.service",
    "market": "vpp.orchestrator.market.gateway",
    "api": "vpp.orchestrator.api.service",
}

_PR_SET_PDEATHSIG = 1


def spawn_context() -> Any:
    """The multiprocessing context of every child (``spawn``)."""
    return multiprocessing.get_context("spawn")


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The parent may have died before prctl took effect: then nobody would signal us.
    if os.getppid() != parent_pid:
        os._exit(1)


def _child_setup(name: str, parent_pid: int, log_level: int) -> None:
    # Until the loop installs its handlers a Ctrl-C in the terminal (sent to the whole
    # process group) must not kill the child with a traceback: the launcher stops it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    logging.basicConfig(
        level=log_level,
        stream=sys.stderr,
        format=f"%(asctime)s {name}[%(process)d] %(levelname)s %(name)s: %(message)s",
    )


async def _until_signalled(run: Callable[[asyncio.Event], Any]) -> None:
    with stop_on_signals() as stop:
        await run(stop)


def role_main(
    module: str, site: SiteConfig, topo: Topology, name: str, parent_pid: int, log_level: int
) -> None:
    """Body of a role's child process: ``module.serve(site, topo, name, stop)``."""
    _child_setup(name, parent_pid, log_level)
    serve = importlib.import_module(module).serve
    asyncio.run(_until_signalled(lambda stop: serve(site, topo, name, stop)))


def plant_main(site: SiteConfig, conn: Connection, parent_pid: int, log_level: int) -> None:
    """Body of the plant's child process; its ports go back through ``conn``."""
    _child_setup("plant", parent_pid, log_level)
    from vpp.sim.plant import serve_plant

    try:
        asyncio.run(_until_signalled(lambda stop: serve_plant(site, stop, conn.send)))
    finally:
        conn.close()


@dataclass
class Managed:
    """One supervised child process (see the module docstring)."""

    name: str
    role: str
    target: Callable[..., None]
    args: Callable[[], tuple[Any, ...]]
    """Arguments of ``target``, computed at each start (a restart may need a new pipe)."""
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    stable_s: float = 30.0
    proc: BaseProcess | None = None
    started_at: float = 0.0
    restarts: int = 0
    deaths: int = 0
    last_exit: int | None = None
    restart_at: float | None = None
    _quick: int = field(default=0, repr=False)

    @property
    def alive(self) -> bool:
        """Whether the process runs now."""
        return self.proc is not None and self.proc.is_alive()

    @property
    def pid(self) -> int | None:
        """The running process's id."""
        return self.proc.pid if self.alive and self.proc is not None else None

    def start(self) -> None:
        """Start (or start again) the process."""
        proc = spawn_context().Process(
            target=self.target, args=self.args(), name=f"vpp-{self.name}", daemon=False
        )
        proc.start()
        self.proc = proc
        self.started_at = time.monotonic()
        self.restart_at = None

    def reap(self) -> float | None:
        """If the process has died since the last call: note it and return the backoff
        before its restart (else None)."""
        if self.proc is None or self.proc.is_alive() or self.restart_at is not None:
            return None
        self.proc.join()
        self.last_exit = self.proc.exitcode
        self.proc.close()
        self.proc = None
        self.deaths += 1
        now = time.monotonic()
        self._quick = 0 if now - self.started_at >= self.stable_s else self._quick + 1
        delay = min(self.backoff_s * 2.0 ** max(self._quick - 1, 0), self.max_backoff_s)
        self.restart_at = now + delay
        return delay

    def due(self) -> bool:
        """Whether a dead process's backoff is over."""
        return self.restart_at is not None and time.monotonic() >= self.restart_at

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM)."""
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()

    def kill(self) -> None:
        """Kill the process (SIGKILL) and wait for it."""
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join()
            self.last_exit = self.proc.exitcode
            self.proc.close()
            self.proc = None
