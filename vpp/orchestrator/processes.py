"""The OS processes of a site: what runs in each child, and how one is supervised.

Every role runs in its own process, or shares one with others (``supervision.shared``,
:func:`group_main`), started with multiprocessing's ``spawn`` context (a
fresh interpreter: no inherited event loop, sockets or threads of the launcher). A child
asks Linux to send it SIGTERM when the launcher dies (``prctl(PR_SET_PDEATHSIG)``), so
even a SIGKILLed launcher leaves nothing behind, then runs its own asyncio loop with
``<module>.serve(site, topo, name, stop)``; SIGTERM and SIGINT set ``stop``.

A child that fails tells the launcher why, through a pipe, as a :class:`ChildError`
before it exits: ``config`` (a :class:`~vpp.errors.ConfigError`: its configuration is
wrong, and a restart would fail the same way) and ``bind`` (an address it must listen on
is in use or not this host's) exit with :data:`EXIT_CONFIG`; anything else is a
``crash`` (exit 1), logged with its traceback.

:class:`Managed` holds one supervised process. A crash is restarted after a backoff that
doubles with each quick death (``backoff_s`` up to ``max_backoff_s``) and falls back to
the first step once a run has lasted ``stable_s``, within a budget of ``max_restarts``
restarts in any ``restart_window_s``. A ``config`` or ``bind`` failure, or a crash past
the budget, is not restarted: :attr:`Managed.failure` says why, and the launcher stops
the site.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
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
from typing import TYPE_CHECKING, Any, Literal

import zmq

from vpp.aio import stop_on_signals
from vpp.errors import BindError, ConfigError
from vpp.logsetup import LogSettings, configure
from vpp.orchestrator.bus.topology import Topology

if TYPE_CHECKING:
    # Annotations only: a field controller's process is given a FieldSite and must not
    # import every section's models (vpp.config.field).
    from vpp.config.models import FieldSite, SiteConfig

__all__ = [
    "EXIT_CONFIG",
    "ROLE_MODULES",
    "ChildError",
    "Managed",
    "group_main",
    "plant_main",
    "role_main",
    "spawn_context",
]

log = logging.getLogger(__name__)

#: The module whose ``serve`` runs each role.
ROLE_MODULES: dict[str, str] = {
    "field": "vpp.orchestrator.field.controller",
    "campus": "vpp.orchestrator.campus.service",
    "grid": "vpp.orchestrator.grid.service",
    "market": "vpp.orchestrator.market.gateway",
    "api": "vpp.orchestrator.api.service",
    "scada": "vpp.orchestrator.scada.service",
    "ldc": "vpp.sim.ldc",
}

_PR_SET_PDEATHSIG = 1

#: The exit code of a child stopped by its configuration (sysexits' EX_CONFIG).
EXIT_CONFIG = 78
#: Address errors that say the configuration is wrong: another restart would meet them too.
_BIND_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL})


@dataclass(frozen=True)
class ChildError:
    """Why a child process failed, as it reported it: ``kind`` is ``config``, ``bind``
    or ``crash``; ``error`` the exception's class name; ``message`` one line."""

    kind: Literal["config", "bind", "crash"]
    error: str
    message: str

    def __str__(self) -> str:
        return f"{self.error}: {self.message}"


def _classify(exc: BaseException) -> ChildError:
    message = " ".join(str(exc).split()) or repr(exc)
    if isinstance(exc, ConfigError):
        return ChildError("config", type(exc).__name__, message)
    if isinstance(exc, BindError) or (
        isinstance(exc, OSError | zmq.ZMQError) and exc.errno in _BIND_ERRNOS
    ):
        return ChildError("bind", "BindError", message)
    return ChildError("crash", type(exc).__name__, message)


def _reporting(report: Connection | None, body: Callable[[], None]) -> None:
    """Run ``body``; if it raises, tell the launcher why through ``report`` and exit."""
    try:
        body()
    except Exception as exc:
        err = _classify(exc)
        if err.kind == "crash":
            log.critical("crashed: %s", err, exc_info=exc)
        else:
            # What is wrong is the configuration, not the code: no traceback, and only
            # info: the launcher ends with this error as its one line.
            log.info("stopped: %s", err)
        if report is not None:
            with contextlib.suppress(OSError):
                report.send(err)
        sys.exit(1 if err.kind == "crash" else EXIT_CONFIG)
    finally:
        if report is not None:
            report.close()


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


def _child_setup(name: str, parent_pid: int, logs: LogSettings | int) -> None:
    # Until the loop installs its handlers a Ctrl-C in the terminal (sent to the whole
    # process group) must not kill the child with a traceback: the launcher stops it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    configure(logs if isinstance(logs, LogSettings) else LogSettings(level=logs), name)


async def _until_signalled(run: Callable[[asyncio.Event], Any]) -> None:
    with stop_on_signals() as stop:
        await run(stop)


def role_main(
    module: str,
    site: SiteConfig | FieldSite,
    topo: Topology,
    name: str,
    parent_pid: int,
    logs: LogSettings | int,
    *,
    report: Connection | None = None,
) -> None:
    """Body of a role's child process: ``module.serve(site, topo, name, stop)`` (or
    another function, given as ``module:function``); a failure goes to the launcher
    through ``report`` (see the module docstring)."""
    group_main([(module, name)], site, topo, name, parent_pid, logs, report=report)


def group_main(
    members: list[tuple[str, str]],
    site: SiteConfig | FieldSite,
    topo: Topology,
    name: str,
    parent_pid: int,
    logs: LogSettings | int,
    *,
    report: Connection | None = None,
) -> None:
    """Body of a shared process (``supervision.shared``), or of one role's (a group of
    one): each member's ``serve`` (given as ``(module, role name)``) on one event loop.
    The first member to fail ends the others and the process, so that the launcher
    restarts them together: a half-alive process would look healthy to the supervisor."""
    _child_setup(name, parent_pid, logs)

    async def serve_all(stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(_serve_fn(module)(site, topo, member, stop), name=member)
            for module, member in members
        ]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                if len(tasks) > 1:
                    log.error("%s failed in shared process %s", task.get_name(), name)
                raise exc

    _reporting(report, lambda: asyncio.run(_until_signalled(serve_all)))


def _serve_fn(module: str) -> Callable[..., Any]:
    path, _, attr = module.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(path), attr or "serve")
    return fn


def plant_main(
    site: SiteConfig,
    conn: Connection,
    parent_pid: int,
    logs: LogSettings | int,
    *,
    report: Connection | None = None,
) -> None:
    """Body of the plant's child process; its ports go back through ``conn``."""
    _child_setup("plant", parent_pid, logs)
    from vpp.sim.plant import serve_plant

    try:
        _reporting(
            report,
            lambda: asyncio.run(_until_signalled(lambda stop: serve_plant(site, stop, conn.send))),
        )
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
    max_restarts: int = 5
    restart_window_s: float = 600.0
    reports: bool = False
    """Whether ``target`` takes ``report=`` (a pipe for its :class:`ChildError`)."""
    proc: BaseProcess | None = None
    started_at: float = 0.0
    restarts: int = 0
    deaths: int = 0
    last_exit: int | None = None
    restart_at: float | None = None
    last_error: ChildError | None = None
    """What the process reported when it last failed (None: nothing, e.g. a signal)."""
    failure: str | None = None
    """Why the process is not restarted (its configuration, or its budget is spent)."""
    _quick: int = field(default=0, repr=False)
    _deaths_at: collections.deque[float] = field(default_factory=collections.deque, repr=False)
    _report: Connection | None = field(default=None, repr=False)

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
        ctx = spawn_context()
        kwargs: dict[str, Any] = {}
        self._close_report()
        if self.reports:
            self._report, kwargs["report"] = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=self.target, args=self.args(), kwargs=kwargs, name=f"vpp-{self.name}",
            daemon=False,
        )  # fmt: skip
        try:
            proc.start()
        finally:
            # The child holds its end now: ours would keep the pipe open after it dies.
            if "report" in kwargs:
                kwargs["report"].close()
        self.proc = proc
        self.started_at = time.monotonic()
        self.restart_at = None
        self.last_error = None

    def _close_report(self) -> None:
        if self._report is not None:
            self._report.close()
            self._report = None

    def _read_report(self) -> ChildError | None:
        recv = self._report
        if recv is None:
            return None
        try:
            if recv.poll():
                got = recv.recv()
                return got if isinstance(got, ChildError) else None
        except (EOFError, OSError):
            pass
        return None

    def reap(self) -> float | None:
        """If the process has died since the last call: note it and return the backoff
        before its restart; None when it has not died, or when it is not to be restarted
        (then :attr:`failure` says why)."""
        if (
            self.proc is None or self.proc.is_alive() or self.restart_at is not None
            or self.failure is not None
        ):  # fmt: skip
            return None
        self.proc.join()
        self.last_exit = self.proc.exitcode
        self.proc.close()
        self.proc = None
        self.deaths += 1
        self.last_error = self._read_report()
        self._close_report()
        now = time.monotonic()
        if self.last_error is not None and self.last_error.kind != "crash":
            self.failure = str(self.last_error)
            return None
        if self.last_error is None and self.last_exit == EXIT_CONFIG:
            self.failure = f"exited with code {EXIT_CONFIG} (a configuration error)"
            return None
        self._deaths_at.append(now)
        while self._deaths_at and self._deaths_at[0] < now - self.restart_window_s:
            self._deaths_at.popleft()
        if len(self._deaths_at) > self.max_restarts:
            why = f"; last: {self.last_error}" if self.last_error is not None else ""
            self.failure = (
                f"died {len(self._deaths_at)} times within {self.restart_window_s:g} s "
                f"(restart budget {self.max_restarts}), last exit code {self.last_exit}{why}"
            )
            return None
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
        self._close_report()
