"""``vpp run``: start a whole site, supervise it, record it, show it, stop it cleanly.

:class:`Launcher` loads nothing itself; :func:`main` loads the config
(:func:`vpp.config.load`) and runs one. A run:

1. claims the site's run directory (:mod:`vpp.orchestrator.rundir`: refused while another
   launcher holds it), makes the :class:`Topology` there (ipc sockets, keys), writes
   ``site.json`` and prints ``vpp run: bus at DIR`` on stderr;
2. starts the events broker (:mod:`vpp.orchestrator.bus.broker`) and subscribes to it;
3. starts the simulated plant in a child process when ``simulation.enabled``, waits for
   its ports and points the config at it (:func:`vpp.sim.ports.with_ports`);
4. starts each field controller, then ``campus``, ``grid`` and ``market`` (those
   enabled), each in its own process (:mod:`vpp.orchestrator.processes`);
5. supervises: a process that crashes is started again after a backoff, counted, logged
   and announced as an event of kind ``process``, within a restart budget
   (``supervision``); one stopped by its configuration, or past its budget, stops the
   site (below); records every message into the
   SQLite history (flushed every ``history.flush_interval_s``); shows the live status
   once a second (plain lines, a redrawn screen on a terminal, or JSON lines). Each of
   these background loops runs under :func:`vpp.aio.supervised`: one that raises is
   logged, counted in ``loop_failures`` and restarted after ``loop_restart_s``;
6. on the end of ``duration``, Ctrl-C or SIGTERM: SIGTERM to every child, a grace
   period, SIGKILL to what is left, broker closed, history flushed, the run directory's
   sockets, run-scoped keys and ``site.json`` removed; exit code 0.

A process that fails for good stops the site the same way, and :meth:`Launcher.run`
then raises: :class:`~vpp.errors.ConfigError` or :class:`~vpp.errors.BindError` when a
process stopped on its configuration (``vpp run`` exits 2),
:class:`~vpp.errors.ProcessFailedError` when one spent its restart budget (exit 1).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import math
import os
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TextIO

import zmq

from vpp.aio import cancel_and_wait, start_supervised, stop_on_signals
from vpp.config.models import FieldSite, SiteConfig
from vpp.errors import BindError, ConfigError, ProcessFailedError, VppError
from vpp.logsetup import LogSettings, configure, settings
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.broker import Broker
from vpp.orchestrator.bus.pubsub import Publisher, Subscriber
from vpp.orchestrator.bus.topology import API, SCADA, SERVICES, Topology
from vpp.orchestrator.history import History
from vpp.orchestrator.processes import (
    ROLE_MODULES,
    Managed,
    group_main,
    plant_main,
    role_main,
    spawn_context,
)
from vpp.orchestrator.recorder import Recorder
from vpp.orchestrator.rundir import RunDir, check_ipc_paths, ipc_files, record_of, site_dir
from vpp.orchestrator.sdnotify import Notifier
from vpp.orchestrator.site_status import SiteStatus, render_text
from vpp.orchestrator.status_screen import StatusScreen

__all__ = ["Launcher", "main"]

log = logging.getLogger(__name__)

#: Seconds to wait for the plant's ports before giving up.
PLANT_READY_S = 30.0


class Launcher:
    """One run of ``site`` (see the module docstring).

    ``modules`` overrides the module of a role (``field``, ``campus``, ``grid``,
    ``market``); ``history_path`` the configured history file; ``out`` is where the
    status goes (None: nowhere), as JSON lines with ``as_json``; ``loop_restart_s`` the
    pause before a failed background loop starts again. ``backoff_s``,
    ``max_backoff_s`` and ``stop_timeout_s`` override the site's ``supervision``;
    ``config_path`` is the file the site came from (None: the embedded one), for
    ``site.json``.
    """

    def __init__(
        self,
        site: SiteConfig,
        *,
        history_path: str | Path | None = None,
        modules: Mapping[str, str] | None = None,
        out: TextIO | None = None,
        as_json: bool = False,
        status_interval_s: float = 1.0,
        backoff_s: float | None = None,
        max_backoff_s: float | None = None,
        stop_timeout_s: float | None = None,
        only: Iterable[str] | None = None,
        loop_restart_s: float = 1.0,
        config_path: str | None = None,
    ) -> None:
        self.site = site
        self.only = _check_only(site, only)
        self.modules = {**ROLE_MODULES, **(modules or {})}
        self.history_path = history_path
        self.out = out
        self.as_json = as_json
        self.status_interval_s = status_interval_s
        sup = site.supervision
        self.backoff_s = sup.backoff_s if backoff_s is None else backoff_s
        self.max_backoff_s = sup.max_backoff_s if max_backoff_s is None else max_backoff_s
        self.stop_timeout_s = sup.stop_timeout_s if stop_timeout_s is None else stop_timeout_s
        self.failure: VppError | None = None
        """Why the site stopped before its time (raised by :meth:`run`), else None."""
        self._stop: asyncio.Event | None = None
        self.screen: StatusScreen | None = None
        if out is not None and not as_json and out.isatty():
            where = settings().file
            self.screen = StatusScreen(out, f"logs: {where}" if where else "")
        self.loop_restart_s = loop_restart_s
        self.config_path = config_path
        #: Failures of the background loops, by loop (``listen``, ``flush``, ``show``,
        #: ``supervise``); each was logged with its traceback and the loop restarted.
        self.loop_failures: collections.Counter[str] = collections.Counter()
        self.procs: dict[str, Managed] = {}
        self.status = SiteStatus(site)
        self.recorder: Recorder | None = None
        self.api_url: str | None = None
        """The API's address once the run has started it."""
        self.scada_ports: dict[str, str] = {}
        """Each outstation's ``host:port`` once the run has checked it (``iec104``, ``dnp3``)."""
        self.topo: Topology | None = None
        self.ports: dict[str, int] = {}
        self.ready = asyncio.Event()
        #: systemd's notification socket and watchdog (Type=notify; inactive outside).
        self.systemd = Notifier()
        #: Watchdog notifications held back because a field controller stopped deciding.
        self.watchdog_withheld = 0
        self._publisher: Publisher | None = None
        self.subscriber: Subscriber | None = None
        """The launcher's own subscriber (its ``errors`` count what it refused)."""
        self._plant_pipe: list[Connection] = []
        # Received but not yet handled: kept across a restart of the listen loop, so that
        # a failure costs no message of its batch.
        self._inbox: collections.deque[s.Message] = collections.deque()
        # The children log where this process logs, at its level.
        self._log_level = LogSettings(
            level=logging.getLogger().getEffectiveLevel(), file=settings().file
        )

    # ---- processes ----

    def _manage(self, name: str, role: str, target: Any, args: Any) -> Managed:
        sup = self.site.supervision
        m = Managed(
            name, role, target, args, self.backoff_s, self.max_backoff_s, sup.stable_s,
            max_restarts=sup.max_restarts, restart_window_s=sup.restart_window_s,
            reports=True,
        )  # fmt: skip
        self.procs[name] = m
        return m

    async def _start_plant(self) -> None:
        ctx = spawn_context()

        def args() -> tuple[Any, ...]:
            # A fresh pipe per start; the previous one (of a dead plant) is closed.
            for end in self._plant_pipe:
                end.close()
            recv, send = ctx.Pipe(duplex=False)
            self._plant_pipe = [recv, send]
            return (self.site, send, os.getpid(), self._log_level)

        m = self._manage("plant", "plant", plant_main, args)
        m.start()
        recv = self._plant_pipe[0]
        deadline = time.monotonic() + PLANT_READY_S
        while not recv.poll():
            if not m.alive:
                m.reap()
                if m.last_error is not None and m.last_error.kind != "crash":
                    raise _failure_error(m, m.last_error.kind)
                if m.last_error is not None:
                    raise ProcessFailedError(
                        f"process plant crashed before it was ready: {m.last_error}",
                        process="plant", exit_code=m.last_exit,
                    )  # fmt: skip
                raise VppError(
                    f"the simulated plant ended before it was ready (exit {m.last_exit})"
                )
            if time.monotonic() > deadline:
                raise VppError(f"the simulated plant was not ready within {PLANT_READY_S:.0f} s")
            await asyncio.sleep(0.05)
        ports: dict[str, int] = recv.recv()
        from vpp.sim.ports import with_ports

        self.ports = ports
        # Pinned ports: a restarted plant binds the same ones the controllers know.
        self.site = with_ports(self.site, ports)
        log.info("plant ready: %s", ports)

    def _point_at_remote_plant(self) -> None:
        """The plant runs under another launcher: its ports must be in the config."""
        from vpp.sim.ports import with_ports

        sim = self.site.simulation
        ports = {"pmu": sim.pmu.port, **{b.unit: b.port for b in sim.bess}}
        zero = sorted(k for k, v in ports.items() if v == 0)
        if zero:
            err = ConfigError(
                f"simulation: the plant runs elsewhere (--only), so its ports must be given; "
                f"0 for {zero}"
            )
            err.field = "simulation"
            raise err
        self.site = with_ports(self.site, ports)

    async def _start_roles(self, topo: Topology) -> None:
        names = [(f.id, "field") for f in self.site.field]
        enabled = {
            "campus": self.site.campus.enabled,
            "grid": self.site.grid.enabled,
            "market": self.site.market.enabled,
        }
        names += [(n, n) for n in SERVICES if enabled[n]]
        if self.site.api.enabled:
            names.append((API, "api"))
        if self.site.scada.enabled:
            names.append((SCADA, "scada"))
            if self.site.simulation.enabled and self.site.simulation.ldc.enabled:
                names.append((LDC, "ldc"))
        names = [(n, r) for n, r in names if self.runs(n)]
        shared = self.site.supervision.shared
        for group, roles in shared.items():
            members = [(n, r) for n, r in names if n in roles]
            if len(members) < 2:
                continue  # one role alone runs as itself
            names = [nr for nr in names if nr not in members]
            parts: list[tuple[str, str]] = [(self.modules[r], n) for n, r in members]

            def group_args(parts: list[tuple[str, str]] = parts,
                           group: str = group) -> tuple[Any, ...]:  # fmt: skip
                return (parts, self.site, topo, group, os.getpid(), self._log_level)

            self._manage(group, "shared", group_main, group_args)
        for name, role in names:
            module = self.modules[role]

            def args(module: str = module, name: str = name, role: str = role) -> tuple[Any, ...]:
                return (module, self._site_for(role, name), topo, name, os.getpid(),
                        self._log_level)  # fmt: skip

            self._manage(name, role, role_main, args)
        fields = [m for m in self.procs.values() if m.role == "field"]
        for m in fields:
            m.start()
        if fields and self.site.supervision.fields_first_s > 0:
            # The field controllers first: on a small machine the services' imports would
            # otherwise take the CPU they need to reach their first decision.
            await self._fields_decided(self.site.supervision.fields_first_s)
        for m in self.procs.values():
            if m.role not in ("field", "plant"):
                m.start()

    def _site_for(self, role: str, name: str) -> SiteConfig | FieldSite:
        """What a role's process is given: a field controller its own section only
        (:class:`~vpp.config.field.FieldSite`: its process then imports no other
        section's models, a third of its start-up), any other role the whole site."""
        if role == "field":
            return FieldSite(field=tuple(f for f in self.site.field if f.id == name))
        return self.site

    async def _fields_decided(self, limit_s: float) -> None:
        """Wait until every unit of the field controllers this launcher runs has decided,
        at most ``limit_s``."""
        units = {u.id for f in self.site.field if self.runs(f.id) for u in f.units}
        deadline = time.monotonic() + limit_s
        while not units <= self.status.decided and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if not units <= self.status.decided:
            log.info("starting the services before every field controller decided "
                     "(after %.1f s; undecided: %s)", limit_s,
                     sorted(units - self.status.decided))  # fmt: skip

    def _prepare_api(self, run_dir: Path) -> str:
        """Check the API's port is free (a port in use is a one-line error now, not a
        restarting process), pin a port 0 to a free one, and, when the configuration has
        no users, make a one-run operator token whose login link is printed."""
        from vpp.orchestrator.api.config import ApiUser
        from vpp.orchestrator.api.credentials import hash_secret, new_token

        cfg = self.site.api
        if self.history_path is not None:
            # The API answers history questions from the file this run writes.
            hist = self.site.history.model_copy(update={"path": str(self.history_path),
                                                        "enabled": True})  # fmt: skip
            self.site = self.site.model_copy(update={"history": hist})
        port = _free_port(cfg.host, cfg.port)
        update: dict[str, Any] = {"port": port}
        token = None
        if not cfg.users:
            token = new_token()
            user = ApiUser(identity="operator", token_hash=hash_secret(token))
            update["users"] = {"operator": user}
        self.site = self.site.model_copy(update={"api": cfg.model_copy(update=update)})
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        self.api_url = f"{'https' if cfg.tls_cert else 'http'}://{host}:{port}/"
        link = self.api_url + (f"login?token={token}" if token else "")
        path = run_dir / "dashboard-url"
        path.write_text(link + "\n")
        path.chmod(0o600)
        return link

    def _prepare_scada(self) -> None:
        """Check each outstation's port is free (in use: a one-line error now) and pin a
        port 0 to a free one, so that the run can say where its masters connect."""
        cfg = self.site.scada
        update: dict[str, Any] = {}
        for proto in ("iec104", "dnp3"):
            sub = getattr(cfg, proto)
            if not sub.enabled:
                continue
            port = _free_port(sub.host, sub.port, f"scada.{proto}.port")
            update[proto] = sub.model_copy(update={"port": port})
            host = f"[{sub.host}]" if ":" in sub.host else sub.host
            self.scada_ports[proto] = f"{host}:{port}"
        self.site = self.site.model_copy(update={"scada": cfg.model_copy(update=update)})

    def runs(self, name: str) -> bool:
        """Whether this launcher runs role or process ``name`` (``broker`` and ``plant``
        too); ``--only`` may name a shared process for all its roles."""
        if self.only is None or name in self.only:
            return True
        return any(name in roles and group in self.only
                   for group, roles in self.site.supervision.shared.items())  # fmt: skip

    def process_table(self) -> dict[str, dict[str, Any]]:
        """name -> {alive, pid, restarts, deaths, last_exit}."""
        return {
            n: {
                "alive": m.alive, "pid": m.pid, "restarts": m.restarts,
                "deaths": m.deaths, "last_exit": m.last_exit,
            }
            for n, m in self.procs.items()
        }

    async def _event(self, severity: s.Severity, text: str, **data: Any) -> None:
        if self._publisher is not None:
            ev = s.Event(kind="process", severity=severity, text=text, data=data)
            await self._publisher.publish(s.make(ev, "launcher"))

    async def _supervise(self) -> None:
        while True:
            for m in self.procs.values():
                delay = m.reap()
                if m.failure is not None and self.failure is None:
                    await self._fail(m)
                elif delay is not None:
                    log.warning(
                        "process %s exited (code %s); restart in %.1f s", m.name, m.last_exit,
                        delay,
                    )  # fmt: skip
                    await self._event(
                        "alarm", f"{m.name} exited with code {m.last_exit}",
                        process=m.name, exit=m.last_exit, restart_in_s=delay,
                    )  # fmt: skip
                elif m.due():
                    m.start()
                    m.restarts += 1
                    log.warning("process %s restarted (restart %d)", m.name, m.restarts)
                    await self._event(
                        "warning", f"{m.name} restarted", process=m.name, restarts=m.restarts
                    )
            await asyncio.sleep(0.1)

    async def _fail(self, m: Managed) -> None:
        """``m`` will not be restarted: stop the site, and say why."""
        kind = m.last_error.kind if m.last_error is not None else "crash"
        self.failure = _failure_error(m, kind)
        # Info only: `vpp run` ends with this error as its one line on standard error.
        log.info("%s; stopping the site", self.failure)
        await self._event("alarm", str(self.failure), process=m.name, exit=m.last_exit)
        if self._stop is not None:
            self._stop.set()

    async def _stop_processes(self) -> None:
        # The roles first, then the plant, so that no field controller sees its devices
        # and PMU vanish while it is still running.
        procs = list(self.procs.values())
        await self._stop_group([m for m in procs if m.role != "plant"])
        await self._stop_group([m for m in procs if m.role == "plant"])

    async def _stop_group(self, live: list[Managed]) -> None:
        for m in live:
            m.terminate()
        deadline = time.monotonic() + self.stop_timeout_s
        while any(m.alive for m in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for m in live:
            if m.alive:
                log.warning("process %s did not stop in %.1f s: killed", m.name,
                            self.stop_timeout_s)  # fmt: skip
            m.kill()

    # ---- bus: history and status ----

    def _loop(self, fn: Callable[[], Awaitable[None]], what: str) -> asyncio.Task[None]:
        """Run the background loop ``fn`` as a task that restarts it when it raises."""

        def failed(_exc: BaseException) -> None:
            self.loop_failures[what] += 1

        return start_supervised(fn, f"launcher {what}", on_failure=failed,
                                restart_after_s=self.loop_restart_s)  # fmt: skip

    async def _listen(self, sub: Subscriber) -> None:
        inbox = self._inbox
        while True:
            if not inbox:
                inbox.extend(await sub.recv_batch())
            while inbox:
                msg = inbox.popleft()
                # Recorded first (the recorder never raises): the history must not depend
                # on the live status, whose failure restarts this loop.
                if self.recorder is not None:
                    self.recorder.record(msg)
                self.status.update(msg)

    async def _flush(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.recorder is not None:
                await asyncio.to_thread(self.recorder.flush)

    def stalled_units(self, within_s: float) -> list[str]:
        """This host's units without a decision in the last ``within_s`` seconds: their
        field controller's loop has stopped (or never started)."""
        now = time.monotonic()
        return sorted(u.id for f in self.site.field if self.runs(f.id) for u in f.units
                      if now - self.status.decided_at.get(u.id, -math.inf) > within_s)  # fmt: skip

    async def _watchdog(self) -> None:
        # systemd restarts the service when no WATCHDOG=1 comes within WatchdogSec: sent
        # at half that, and only while every field controller here keeps deciding (a
        # controller's process alive with its loop stuck is what the watchdog is for; a
        # dead one is restarted by the launcher itself). The window is the watchdog's
        # half, at least 2 s: a decision goes out every frame, or every step without one.
        assert self.systemd.watchdog_s is not None
        half = self.systemd.watchdog_s / 2
        while True:
            stalled = self.stalled_units(max(2.0, half))
            if stalled:
                self.watchdog_withheld += 1
                log.warning("systemd watchdog withheld: no decision from %s", ", ".join(stalled))
                self.systemd.notify(f"STATUS=no decision from {', '.join(stalled)}")
            else:
                self.systemd.notify("WATCHDOG=1")
            await asyncio.sleep(half)

    async def _show(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval_s)
            if self.out is None:
                continue
            snap = self.status.snapshot(self.process_table())
            if self.as_json:
                self.out.write(json.dumps(snap) + "\n")
            elif self.screen is not None:
                # On a terminal a block redrawn at the bottom, the log lines above it.
                self.screen.show(render_text(snap))
            else:
                # In a pipe or a log, appended lines.
                self.out.write("\n".join(render_text(snap)) + "\n")
            self.out.flush()

    # ---- the run ----

    async def run(self, duration: float | None = None, stop: asyncio.Event | None = None) -> int:
        """Run until ``duration`` seconds have passed or ``stop`` is set; 0 when clean."""
        stop = stop or asyncio.Event()
        self._stop = stop
        run = self._claim_run_dir()
        history: History | None = None
        tasks: list[asyncio.Task[None]] = []
        broker: Broker | None = None
        sub: Subscriber | None = None
        try:
            topo = Topology.build(self.site.bus, [f.id for f in self.site.field], run.path,
                                  self.site.security, make_keys=True)  # fmt: skip
            self.topo = topo
            run.write(record_of(self.site, topo, self.config_path, self.only))
            if self.runs("broker"):
                broker = topo.broker()
                _start_broker(broker)
            sub = self.subscriber = topo.subscriber("launcher", hwm=100_000)
            self._publisher = topo.publisher("launcher")
            if self.site.history.enabled or self.history_path is not None:
                history = _open_history(
                    self.history_path or self.site.history.path, self.site.history.audit_key
                )
                # Only a process that serves commands may add to the commands audit.
                self.recorder = Recorder(history, command_servers=topo.commands.keys())
            tasks = [
                self._loop(functools.partial(self._listen, sub), "listen"),
                self._loop(
                    functools.partial(self._flush, self.site.history.flush_interval_s), "flush"
                ),
                self._loop(self._show, "show"),
            ]
            if self.site.simulation.enabled and self.runs("plant"):
                await self._start_plant()
            elif self.site.simulation.enabled:
                self._point_at_remote_plant()
            link = None
            if self.site.api.enabled and self.runs(API):
                link = self._prepare_api(run.path)
            if self.site.scada.enabled and self.runs(SCADA):
                self._prepare_scada()
            if link is not None or self.scada_ports:
                # ctl and other clients find the API and the outstations where they find
                # the bus.
                run.write({**record_of(self.site, topo, self.config_path, self.only),
                           "api": self.api_url, "scada": self.scada_ports})  # fmt: skip
            await self._start_roles(topo)
            tasks.append(self._loop(self._supervise, "supervise"))
            self._announce(f"vpp run: bus at {run.path}")
            if link is not None:
                self._announce(f"vpp run: dashboard at {link}")
            for proto, where in self.scada_ports.items():
                self._announce(f"vpp run: {_PROTOCOLS[proto]} outstation at {where}")
            self.ready.set()
            self.systemd.notify("READY=1", "STATUS=running")
            if self.systemd.watchdog_s is not None:
                tasks.append(self._loop(self._watchdog, "watchdog"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration)
        finally:
            self.systemd.notify("STOPPING=1")
            for task in await cancel_and_wait(tasks):
                log.error("launcher: %s ended with %r", task.get_name(), task.exception())
            await self._stop_processes()
            for end in self._plant_pipe:
                end.close()
            if self._publisher is not None:
                self._publisher.close()
            if sub is not None:
                sub.close()
            if broker is not None:
                broker.stop()
            if history is not None:
                history.close()
            self._release_run_dir(run)
            if self.screen is not None:
                self.screen.close()
        if self.failure is not None:
            raise self.failure
        return 0

    @staticmethod
    def _announce(text: str) -> None:
        # Once the processes are started (a site that fails to start says only why, in one
        # line); with a log file the terminal stays silent and the line goes there, at
        # warning level so that the default level keeps it.
        if settings().file is None:
            print(text, file=sys.stderr, flush=True)
        else:
            log.warning("%s", text)

    def _claim_run_dir(self) -> RunDir:
        bus = self.site.bus
        run = RunDir(site_dir(self.site), self.only)
        if bus.transport == "ipc":
            names = ["events-in", "events-out", *(f"{f.id}.cmd" for f in self.site.field),
                     *(f"{n}.cmd" for n in SERVICES)]  # fmt: skip
            check_ipc_paths(run.path, names)
        run.claim()
        return run

    def _release_run_dir(self, run: RunDir) -> None:
        topo, bus = self.topo, self.site.bus
        sockets = ipc_files(topo) if topo is not None else []
        # Keys made for this run only; a configured keys_dir is the user's.
        made = topo is not None and bus.keys_dir is None and topo.keys_dir is not None
        # The dashboard link holds a one-run operator token: it goes with the run.
        scoped = [run.path / "dashboard-url", *([run.path / "keys"] if made else [])]
        run.release(sockets, scoped)


def _failure_error(m: Managed, kind: str) -> VppError:
    """The error that stops the site when process ``m`` failed for good."""
    if kind in ("config", "bind") and m.last_error is not None:
        # The same type as the child raised, with its message: one line says it all.
        why = m.last_error.message
        if kind == "bind":
            return BindError(f"process {m.name}: {why}", address=why)
        err = ConfigError(f"process {m.name}: {why}")
        err.field = m.name
        return err
    why = m.failure or "failed"
    return ProcessFailedError(f"process {m.name} {why}", process=m.name, exit_code=m.last_exit)


def _start_broker(broker: Broker) -> None:
    try:
        broker.start()
    except (OSError, zmq.ZMQError) as exc:
        where = f"{broker.events_in} / {broker.events_out}"
        raise BindError(f"the events broker cannot bind {where}: {exc}", address=where) from exc


def _check_only(site: SiteConfig, only: Iterable[str] | None) -> frozenset[str] | None:
    """The processes named by ``--only``, checked against the site."""
    if only is None:
        return None
    names = frozenset(only)
    known = {f.id for f in site.field} | set(SERVICES) | {"broker", "plant", API, SCADA, LDC}
    known |= set(site.supervision.shared)
    unknown = sorted(names - known)
    if unknown or not names:
        err = ConfigError(f"--only: unknown process {unknown}; known: {sorted(known)}")
        err.field = "only"
        raise err
    return names


#: The simulated load despatch centre's process (``simulation.ldc``).
LDC = "ldc"
#: How the run names each outstation's protocol.
_PROTOCOLS = {"iec104": "IEC 60870-5-104", "dnp3": "DNP3"}


def _free_port(host: str, port: int, field: str = "api.port") -> int:
    """``port`` if it can be bound on ``host`` now (or a free one for 0); ConfigError
    naming ``field`` if not."""
    from vpp.orchestrator.api.listen import listen

    with listen(host, port, field) as sock:
        bound: int = sock.getsockname()[1]
        return bound


def _open_history(path: str | Path, audit_key: str | None) -> History:
    try:
        return History(path, audit_key=audit_key)
    except (OSError, sqlite3.Error) as exc:
        err = ConfigError(f"history: cannot open {str(path)!r}: {exc}")
        err.field = "history.path"
        raise err from exc


def main(
    config: str | None = None,
    duration: float | None = None,
    *,
    as_json: bool = False,
    history: str | None = None,
    out: TextIO | None = None,
    only: Iterable[str] | None = None,
) -> int:
    """``vpp run``: load the config and run the site (or the processes ``only`` names)
    until ``duration`` or a signal."""
    from vpp.config import load

    # The level and file of ``vpp --log-level/--log-file`` (or the defaults), named so.
    configure(settings(), "launcher")
    site = load(config)
    launcher = Launcher(site, history_path=history, out=out or sys.stdout, as_json=as_json,
                        only=only, config_path=config)  # fmt: skip

    async def go() -> int:
        with stop_on_signals() as stop:
            return await launcher.run(duration, stop)

    return asyncio.run(go())
