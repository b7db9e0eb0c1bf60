"""Real ZeroMQ peers for the service tests: an events broker and fake field controllers.

The broker is an XSUB/XPUB ``zmq.proxy`` in a thread with its own context (stopped by
terminating that context). A :class:`FakeField` is a field controller's bus face with
real sockets: a command Server taking ``set_base``, ``set_schedule`` and
``set_participation``, and a Publisher of its heartbeats and its units' telemetry, whose
measured power is the base the campus sent (a plant that follows its setpoint exactly).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from vpp.config.models import SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.curve import ServerCurve
from vpp.orchestrator.bus.pubsub import Server
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.grid.compliance import DroopCharacteristic


class Broker:
    """The events proxy between ``events_in`` (XSUB) and ``events_out`` (XPUB)."""

    def __init__(self, topo: Topology) -> None:
        self.ctx = zmq.Context()
        self.xsub = self.ctx.socket(zmq.XSUB)
        self.xpub = self.ctx.socket(zmq.XPUB)
        self.xsub.bind(topo.events_in)
        self.xpub.bind(topo.events_out)
        self.thread = threading.Thread(target=self._run, name="test broker")

    def _run(self) -> None:
        # The sockets are closed however the proxy ends: ``ctx.term()`` waits for every
        # socket of the context, and one left open would hang the test for good.
        try:
            while True:
                try:
                    zmq.proxy(self.xsub, self.xpub)
                except zmq.InterruptedSystemCall:
                    continue  # a signal to the process landed on this thread
                except zmq.ContextTerminated:
                    return
        finally:
            self.xsub.close(linger=0)
            self.xpub.close(linger=0)

    def __enter__(self) -> Broker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Terminated from a helper thread, so that a broker that cannot stop fails the
        # test with its reason instead of blocking it until the suite's timeout.
        closer = threading.Thread(target=self.ctx.term, name="test broker term", daemon=True)
        closer.start()
        closer.join(10)
        self.thread.join(5)
        if closer.is_alive() or self.thread.is_alive():
            raise AssertionError("the test broker did not stop within 10 s")


@dataclasses.dataclass
class FakeUnit:
    id: str
    rated_kw: float = 500.0
    rated_kwh: float = 1000.0
    soc_pct: float = 50.0
    p_max_kw: float = 500.0
    p_min_kw: float = -500.0
    location: str = "IN/KA/Bengaluru/campus-1/building-1/node-1"
    base_kw: float = 0.0
    participation_kw: float | None = None


class FakeField:
    """A field controller on the bus (see the module docstring); ``async with`` runs it."""

    def __init__(
        self,
        topo: Topology,
        fid: str,
        units: list[FakeUnit],
        period: float = 0.05,
        *,
        hz: Callable[[], float] = lambda: 50.0,
        gain: float = 1.0,
        curve: ServerCurve | None = None,
        answers: bool = True,
    ) -> None:
        """``answers=False``: a field controller that publishes but whose command server is
        never bound, so every command to it goes unanswered."""
        self.topo = topo
        self.answers = answers
        self.hz = hz
        self.gain = gain
        self.id = fid
        self.units = {u.id: u for u in units}
        self.period = period
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.schedules: dict[str, dict[str, Any]] = {}
        # With its own keys when the site has them: the broker stamps it as ``fid``.
        self.publisher = topo.publisher(fid)
        handlers = {"set_base": self._set_base, "set_participation": self._set_participation,
                    "set_schedule": self._set_schedule}  # fmt: skip
        self.server = Server(topo.commands[fid], handlers, name=fid, curve=curve)
        self._task: asyncio.Task[None] | None = None

    async def _set_base(self, cmd: s.CommandMsg) -> None:
        p = cmd.body.params
        self.commands.append(("set_base", p))
        self.units[p["unit"]].base_kw = float(p["kw"])

    async def _set_participation(self, cmd: s.CommandMsg) -> None:
        p = cmd.body.params
        self.commands.append(("set_participation", p))
        self.units[p["unit"]].participation_kw = float(p["p_max_kw"])

    async def _set_schedule(self, cmd: s.CommandMsg) -> None:
        p = cmd.body.params
        self.commands.append(("set_schedule", p))
        self.schedules[p["unit"]] = p

    def bases(self) -> dict[str, float]:
        return {u.id: u.base_kw for u in self.units.values()}

    def response_kw(self, u: FakeUnit, hz: float) -> float:
        """The droop response (5 %, deadband 49.90-50.05 Hz) at ``gain``, within limits."""
        share = u.participation_kw or 0.0
        if share <= 0:
            return 0.0
        droop = DroopCharacteristic(rated_kw=share).droop_kw(hz)
        return self.gain * float(np.clip(droop, -share, share))

    async def publish_state(self) -> None:
        pub = self.publisher
        hz = self.hz()
        now = time.time()
        await pub.publish(s.make(s.Heartbeat(role="field", id=self.id,
                                             endpoint=self.topo.commands[self.id]), self.id))
        for u in self.units.values():
            caps = s.Capabilities(rated_kw=u.rated_kw, rated_kwh=u.rated_kwh, services=("fcr",))
            hb = s.Heartbeat(role="unit", id=u.id, owner=self.id, location=u.location,
                             capabilities=caps)  # fmt: skip
            await pub.publish(s.make(hb, self.id))
            resp = self.response_kw(u, hz)
            dec = s.Decision(unit=u.id, t=now, hz=hz, response_kw=resp, base_kw=u.base_kw,
                             setpoint_kw=u.base_kw + resp)  # fmt: skip
            await pub.publish(s.make(dec, self.id))
            tel = s.Telemetry(unit=u.id, p_kw=u.base_kw + resp, soc_pct=u.soc_pct, temp_c=25.0,
                              limits=s.Limits(p_min_kw=u.p_min_kw, p_max_kw=u.p_max_kw),
                              location=u.location)  # fmt: skip
            await pub.publish(s.make(tel, self.id))

    async def _run(self) -> None:
        while True:
            await self.publish_state()
            await asyncio.sleep(self.period)

    async def __aenter__(self) -> FakeField:
        if self.answers:
            await self.server.__aenter__()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Go silent and stop answering (a dead field controller)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            await self.server.aclose()
            self.publisher.close()


def site(**sections: Any) -> SiteConfig:
    """A two-field, three-unit site with fast test timings; ``sections`` override."""
    unit = {"rated_power_kw": 500, "capacity_kwh": 1000,
            "inverter": {"protocol": "modbus_tcp", "config": {}}}  # fmt: skip
    data: dict[str, Any] = {
        "field": [
            {"id": "field-a", "units": [{"id": "bess-1", **unit}, {"id": "bess-2", **unit}]},
            {"id": "field-b", "units": [{"id": "bess-3", **unit}]},
        ],
        "bus": {"command_timeout_s": 0.3, "command_retries": 0},
        "campus": {"dispatch_interval_s": 0.2, "fleet": {"offline_timeout_s": 0.6}},
    }
    data.update(sections)
    return SiteConfig.model_validate(data)


def topology(cfg: SiteConfig, run_dir: Path) -> Topology:
    return Topology.build(cfg.bus, [f.id for f in cfg.field], run_dir)


async def until(cond: Any, timeout: float = 5.0, step: float = 0.02) -> None:
    """Wait until ``cond()`` is true (AssertionError after ``timeout`` s)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)
