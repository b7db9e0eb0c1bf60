"""The simulated plant of a site: BESS simulators, a grid model and a PMU measuring it.

:func:`serve_plant` starts, from ``site.simulation``, one
:class:`~vpp.sim.bess.BessSimulator` (Modbus TCP on 127.0.0.1) per ``simulation.bess``
entry, rated as the unit it stands for; a :class:`~vpp.sim.grid_model.GridModel` with
the configured events (repeated every ``repeat_s`` when set); and a
:class:`~vpp.sim.pmu.PmuServer` streaming the model's frequency. The PMU's ticker steps
the model in real time (one sample per frame), and before each sample the model's
fleet input is set to the sum of the simulators' actual power, so a fleet that
discharges (positive) raises the frequency its own PMU measures. A unit whose ``bms`` is
a ``can_bms`` device gets a :class:`~vpp.sim.bms.BmsSimulator` following its BESS model
on that CAN bus: ``udp_loopback`` in the default site (UDP multicast confined to this
host, :mod:`vpp.drivers.can_bus`) with a free UDP port chosen at start. Every server of
the plant binds loopback: the BESS simulators' Modbus TCP, the PMU's C37.118 TCP, the
BMS buses. A BMS simulator that cannot start is logged and its unit runs without a BMS.

:func:`with_ports` (from :mod:`vpp.sim.ports`) points a site configuration at a running
plant: the field controllers' PMU source, each simulated unit's inverter address and its
BMS bus port. It also pins the plant's own ports, so that a plant restarted from the
returned config binds the same ones and the field controllers reconnect to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

import can

from vpp.aio import Startable
from vpp.config.models import DeviceConfig, SiteConfig, UnitConfig
from vpp.drivers.can_bms import CanBmsConfig
from vpp.drivers.can_bus import UDP_INTERFACES
from vpp.errors import ConfigError
from vpp.sim.bess import BessSimulator
from vpp.sim.bms import BmsSimulator
from vpp.sim.grid_model import GridEvent, GridFrequencySource, GridModel
from vpp.sim.pmu import PmuServer
from vpp.sim.ports import HOST, with_ports

__all__ = ["FleetGridSource", "Plant", "serve_plant", "with_ports"]

log = logging.getLogger(__name__)


class _ClientGone(logging.Filter):
    """Drops pymodbus's "Cancel send, because not connected!": its server answering a
    client that has just disconnected (every field controller's stop, or a restart), a
    race the simulated plant sees at each site stop. It is logged at ERROR with the
    frame, which told `vpp run`'s users of a fault that is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Cancel send, because not connected")


logging.getLogger("pymodbus.logging").addFilter(_ClientGone())



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
        if repeat_s is None:
            for e in events:
                model.add_event(e)
        else:
            self._schedule(0.0)

    def _schedule(self, t: float) -> None:
        if self._repeat_s is None:
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


class Plant(Startable):
    """The simulated plant of ``site`` (see the module docstring); an async context."""

    def __init__(self, site: SiteConfig) -> None:
        sim = site.simulation
        self.sims: dict[str, BessSimulator] = {}
        #: BMS simulators (CAN) of the units whose ``bms`` is a ``can_bms`` device.
        self.bms: dict[str, BmsSimulator] = {}
        for b in sim.bess:
            unit = _unit(site, b.unit)
            cfg = unit.inverter.config
            bess = self.sims[b.unit] = BessSimulator(
                host=HOST,
                port=b.port,
                device_id=int(cfg.get("device_id", 1)),
                capacity_kwh=unit.capacity_kwh,
                rated_power_kw=unit.rated_power_kw,
                initial_soc_pct=b.initial_soc_pct,
            )
            if unit.bms is not None and unit.bms.protocol == "can_bms":
                self.bms[b.unit] = _bms_simulator(unit.bms, bess)
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
        """``{"pmu": port, "<unit id>": port, "<unit id>/bms": port, ...}`` (after start;
        a BMS that could not start is absent)."""
        ports = {"pmu": self.pmu.port, **{u: s.port for u, s in self.sims.items()}}
        for uid, bms in self.bms.items():
            if bms.running:
                ports[f"{uid}/bms"] = int(bms.bus_options.get("port", 0))
        return ports

    async def start(self) -> None:
        """Start the simulators, then the PMU (which starts the grid model's clock)."""
        try:
            for s in self.sims.values():
                await s.start()
            for uid, bms in self.bms.items():
                try:
                    await bms.start()
                except (can.CanError, OSError, ImportError, ValueError) as exc:
                    # E.g. a bus python-can cannot open here: the unit runs without its BMS
                    # rather than the site not at all (with_ports drops its bms).
                    log.warning("plant: BMS simulator of %s cannot start: %s", uid, exc)
            await self.pmu.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the PMU and every simulator."""
        await self.pmu.close()
        for bms in self.bms.values():
            await bms.stop()
        for s in self.sims.values():
            await s.stop()


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


def _bms_simulator(dev: DeviceConfig, bess: BessSimulator) -> BmsSimulator:
    """A BMS simulator on ``dev``'s CAN bus following ``bess``'s model (a free port for a
    UDP bus that names none)."""
    # The driver's own config model, so that the simulator and the field controller read
    # the same bus (and the same defaults) from the same keys.
    cfg = CanBmsConfig.model_validate(dev.config)
    options = dict(cfg.bus_options)
    if cfg.interface in UDP_INTERFACES and not options.get("port"):
        options["port"] = _free_udp_port()
    bms = BmsSimulator(
        interface=cfg.interface, channel=cfg.channel, bus_options=options, battery=bess.model
    )
    # The pack's current limit scales with the unit: rated power at the lowest
    # pack voltage, with a margin, so that only a real overload trips it.
    m = bess.model
    bms.limits.current_max_a = 1.2 * 1000.0 * m.p_max_kw / (2.5 * m.cells)
    return bms


def _free_udp_port() -> int:
    """A UDP port free now on this host (for a simulated CAN-over-UDP bus)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
