"""A stand-in role for the launcher tests (the real roles are tested on their own).

As a field controller it publishes telemetry for its units every 0.2 s; as any role it
announces itself with an event of kind ``command`` (recorded in the commands table) and
one of kind ``standin`` (the events table), each carrying its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from vpp.config.models import SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.topology import Topology


async def serve(site: SiteConfig, topo: Topology, name: str, stop: asyncio.Event) -> None:
    """Publish until ``stop`` is set."""
    pub = topo.publisher(name)
    units = [u for f in site.field if f.id == name for u in f.units]
    limits = s.Limits(p_min_kw=-100.0, p_max_kw=100.0)
    try:
        # A PUB socket drops what it sends before its connection is up.
        await asyncio.sleep(0.2)
        k = 0
        while not stop.is_set():
            if k % 5 == 0:
                info = {"pid": os.getpid(), "pmu_port": site.field[0].pmu.port}
                await pub.publish(s.make(s.Event(kind="standin", data=info), name))
                cmd = {"target": name, "command": "hello", "params": {"k": k},
                       "identity": "standin", "ok": True, "detail": ""}  # fmt: skip
                await pub.publish(s.make(s.Event(kind="command", data=cmd), name))
            for i, u in enumerate(units):
                tel = s.Telemetry(unit=u.id, p_kw=10.0 * (i + 1), soc_pct=50.0, temp_c=25.0,
                                  limits=limits)  # fmt: skip
                await pub.publish(s.make(tel, name))
            k += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        pub.close()
