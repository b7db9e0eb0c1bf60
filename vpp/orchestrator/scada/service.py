"""The ``scada`` role process: the plant's outstations for the grid operator.

``serve(site, topo, name, stop)`` (what the launcher runs, as for every role) reads the
bus into a :class:`~vpp.orchestrator.scada.image.PlantImage`, starts the IEC 104 and
DNP3 outstations ``scada.iec104`` and ``scada.dnp3`` enable, and every ``update_s``
hands them the points (an outstation sends what changed beyond a deadband at once, and
everything on interrogation). Their masters' commands go to
:class:`~vpp.orchestrator.scada.commands.ScadaCommands`, which sends them with this
process's key (identity ``scada``). Every ``status_s`` the outstations' counters go out
as an ``scada`` event {what: status}, which the history keeps.

When a master goes silent nothing here changes the plant: the AGC handler lets a
set-point that is not renewed decay to zero at its ramp (``campus.agc.timeout_s``), and
every other command stays as it was: the last safe state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from vpp.config.models import SiteConfig
from vpp.errors import CommandTimeoutError, MessageError
from vpp.orchestrator.api.gateway import BusGateway
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Publisher
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.scada.commands import ScadaCommands
from vpp.orchestrator.scada.image import PlantImage
from vpp.orchestrator.scada.points import Outstation

__all__ = ["ScadaGateway", "make_outstations", "serve"]

log = logging.getLogger(__name__)


def make_outstations(site: SiteConfig, sink: ScadaCommands) -> dict[str, Outstation]:
    """The outstations ``site.scada`` enables, with their point maps loaded (a map that
    does not load is a ConfigError naming the file)."""
    # Imported here: a site without SCADA loads neither protocol's code.
    cfg = site.scada
    units = [u.id for f in site.field for u in f.units]
    out: dict[str, Outstation] = {}
    if cfg.iec104.enabled:
        from vpp.orchestrator.scada.iec104 import Iec104Outstation
        from vpp.orchestrator.scada.iec104_map import Iec104PointMap

        imap = Iec104PointMap.load(cfg.iec104.point_map, units)
        out["iec104"] = Iec104Outstation(cfg.iec104, imap, sink)
    if cfg.dnp3.enabled:
        from vpp.orchestrator.scada.dnp3 import Dnp3Outstation
        from vpp.orchestrator.scada.dnp3_map import Dnp3PointMap

        dmap = Dnp3PointMap.load(cfg.dnp3.point_map, units)
        out["dnp3"] = Dnp3Outstation(cfg.dnp3, dmap, sink)
    return out


class ScadaGateway:
    """The SCADA process of one site (see the module docstring)."""

    def __init__(self, site: SiteConfig, topo: Topology, name: str = "scada") -> None:
        self.site = site
        self.topo = topo
        self.name = name
        self.clock = time.time
        self.image = PlantImage(site)
        self.gateway = BusGateway(site, topo, self.image.update, name=name)
        self.publisher: Publisher | None = None
        self.commands = ScadaCommands(site, site.scada.commands, self._send, self._publish)
        self.outstations = make_outstations(site, self.commands)
        self.publish_errors = 0

    async def _send(self, server: str, name: str, params: dict[str, Any]) -> s.Ack:
        try:
            return await self.gateway.command(self.name, server, name, params)
        except CommandTimeoutError:  # a TimeoutError, so an OSError: keep it as it is
            raise
        except OSError as exc:  # a socket that could not be made: the command is refused
            raise MessageError(str(exc), kind="send", where=self.name) from exc

    async def _publish(self, kind: str, data: dict[str, Any], text: str,
                       severity: s.Severity) -> None:  # fmt: skip
        if self.publisher is None:
            return
        try:
            msg = s.make(s.Event(kind=kind, severity=severity, text=text, data=data), self.name)
        except ValueError:  # a value the schema refuses (NaN): counted, the command stands
            self.publish_errors += 1
            return
        await self.publisher.publish(msg)

    def stats(self) -> dict[str, Any]:
        """Counters of the outstations, the commands and the bus."""
        sub = self.gateway.subscriber
        return {
            "outstations": {k: o.stats() for k, o in self.outstations.items()},
            "ports": {k: o.port for k, o in self.outstations.items()},
            "commands": dict(self.commands.counts),
            "bus": {"received": self.gateway.received, "handler_errors": self.gateway.errors,
                    **(dict(sub.errors) if sub is not None else {})},
        }  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        cfg = self.site.scada
        self.publisher = self.topo.publisher(self.name)
        await self.gateway.start()
        started: list[Outstation] = []
        try:
            for o in self.outstations.values():
                await o.start()  # BindError: the launcher reports it and does not retry
                started.append(o)
            where = ", ".join(f"{k} on port {o.port}" for k, o in self.outstations.items())
            log.info("scada: serving %s", where or "nothing (no outstation enabled)")
            await self._publish("scada", {"what": "listening", **self.stats()["ports"]},
                                f"outstations: {where or 'none'}", "info")  # fmt: skip
            next_status = self.clock() + cfg.status_s
            while not stop.is_set():
                now = self.clock()
                points = self.image.points(now)
                for o in started:
                    o.update(points)
                if now >= next_status:
                    next_status = now + cfg.status_s
                    await self._publish("scada", {"what": "status", **self.stats()},
                                        "scada status", "info")  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), cfg.update_s)
        finally:
            for o in started:
                with contextlib.suppress(Exception):
                    await o.close()
            await self.gateway.close()
            if self.publisher is not None:
                self.publisher.close()


async def serve(site: SiteConfig, topo: Topology, name: str, stop: asyncio.Event) -> None:
    """Run the SCADA outstations of ``site`` until ``stop`` is set."""
    await ScadaGateway(site, topo, name).run(stop)
