"""The simulated plant of a site: BESS simulators, a grid model and a PMU measuring it.

:func:`serve_plant` starts, from ``site.simulation``, one
:class:`~vpp.sim.bess.BessSimulator` (Modbus TCP on 127.0.0.1) per ``simulation.bess``
entry, rated as the unit it stands for; a :class:`~vpp.sim.grid_model.GridModel` with
the configured events (repeated every ``repeat_s`` when set); and a
:class:`~vpp.sim.pmu.PmuServer` streaming the model's frequency. The PMU's ticker steps
the model in real time (one sample per frame), and before each sample the model's
fleet input is set to the sum of the simulators' actual power, so a fleet that
discharges (positive) raises the frequency its own PMU measures.

:func:`with_ports` points a site configuration at a running plant: the field
controllers' PMU source and each simulated unit's inverter address. It also pins the
plant's own ports, so that a plant restarted from the returned config binds the same
ones and the field controllers reconnect to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from vpp.config.models import SiteConfig, UnitConfig
from vpp.errors import ConfigError
from vpp.sim.bess import BessSimulator
from vpp.sim.grid_model import GridEvent, GridFrequencySource, GridModel
from vpp.sim.pmu import PmuServer

__all__ = ["FleetGridSource", "Plant", "serve_plant", "with_ports"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class FleetGridSource(GridFrequencySource):
    """The grid model as a PMU source whose fleet input is the simulators' power.

    ``events`` (time from the start) repeat every ``repeat_s`` when it is set: the next
    period's copies are scheduled one period ahead of the model's time.
    """

    def __init__(
        self,
        model: GridModel,
        sims: list[BessSimulator],
        events: list[GridEvent],
        repeat_s: float | None = None,
        noise_hz: float = 0.0,
    ) -> None:
        super().__init__(model, noise_hz)
        self.sims = sims
        self._events = events
        self._repeat_s = repeat_s
        self._periods = 0
        self._schedule(0.0)

    def _schedule(self, t: float) -> None:
        if self._repeat_s is None:
            if self._periods == 0:
                for e in self._events:
                    self.model.add_event(e)
                self._periods = 1
            return
        while self._periods * self._repeat_s <= t + self._repeat_s:
            offset = self._periods * self._repeat_s
            for e in self._events:
                self.model.add_event(GridEvent(e.time_s + offset, e.delta_mw, e.label))
            self._periods += 1

    def sample(self, t: float) -> tuple[float, float]:
        """Set the fleet input from the simulators, then (frequency, ROCOF) at ``t``."""
        self._schedule(t)
        self.fleet_kw = sum(s.model.power_kw for s in self.sims)
        return super().sample(t)


def _unit(site: SiteConfig, unit_id: str) -> UnitConfig:
    for u in site.units():
        if u.id == unit_id:
            return u
    # SiteConfig's validator already refuses this; kept for configs built by hand.
    err = ConfigError(f"simulation.bess names unit {unit_id!r}, which no field has")
    err.field = "simulation.bess"
    raise err


class Plant:
    """The simulated plant of ``site`` (see the module docstring); an async context."""

    def __init__(self, site: SiteConfig) -> None:
        sim = site.simulation
        self.sims: dict[str, BessSimulator] = {}
        for b in sim.bess:
            unit = _unit(site, b.unit)
            cfg = unit.inverter.config
            self.sims[b.unit] = BessSimulator(
                host=HOST,
                port=b.port,
                device_id=int(cfg.get("device_id", 1)),
                capacity_kwh=unit.capacity_kwh,
                rated_power_kw=unit.rated_power_kw,
                initial_soc_pct=b.initial_soc_pct,
            )
        events = [GridEvent(e.time_s, e.delta_mw) for e in sim.events]
        self.model = GridModel(sim.grid)
        self.source = FleetGridSource(
            self.model, list(self.sims.values()), events, sim.repeat_s, sim.pmu.noise_hz
        )
        self.pmu = PmuServer(
            sim.pmu.idcode, sim.pmu.rate, host=HOST, port=sim.pmu.port, source=self.source
        )

    @property
    def ports(self) -> dict[str, int]:
        """``{"pmu": port, "<unit id>": port, ...}`` (after start)."""
        return {"pmu": self.pmu.port, **{u: s.port for u, s in self.sims.items()}}

    async def start(self) -> None:
        """Start the simulators, then the PMU (which starts the grid model's clock)."""
        try:
            for s in self.sims.values():
                await s.start()
            await self.pmu.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop the PMU and every simulator."""
        await self.pmu.close()
        for s in self.sims.values():
            await s.stop()

    async def __aenter__(self) -> Plant:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve_plant(
    site: SiteConfig, stop: asyncio.Event, ready: Callable[[dict[str, int]], None]
) -> None:
    """Run the plant of ``site`` until ``stop`` is set; ``ready`` gets its ports once
    everything listens."""
    async with Plant(site) as plant:
        log.info("plant: listening on %s", plant.ports)
        ready(plant.ports)
        await stop.wait()
    # Let the closed transports run their callbacks before the loop ends.
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0)


def with_ports(site: SiteConfig, ports: Mapping[str, int]) -> SiteConfig:
    """A copy of ``site`` pointing at a plant listening on ``ports`` (from :func:`serve_plant`):
    every field controller's PMU source, each simulated unit's inverter host and port, and
    the plant's own ports (so that a restart binds the same ones)."""
    data: dict[str, Any] = site.model_dump(mode="json")
    sim = data["simulation"]
    if "pmu" in ports:
        sim["pmu"]["port"] = ports["pmu"]
        for f in data["field"]:
            f["pmu"].update(host=HOST, port=ports["pmu"], idcode=sim["pmu"]["idcode"])
            f["pmu"]["transport"] = "tcp"
    for b in sim["bess"]:
        if b["unit"] in ports:
            b["port"] = ports[b["unit"]]
    for f in data["field"]:
        for u in f["units"]:
            if u["id"] in ports:
                u["inverter"]["config"].update(host=HOST, port=ports[u["id"]])
    return SiteConfig.model_validate(data)
