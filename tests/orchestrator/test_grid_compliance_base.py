"""Compliance of units whose base is not where the share would put it, judged by a real
grid service on ZeroMQ sockets (the dip and the fake field controllers of
test_grid_service.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.orchestrator.service_peers import Broker, FakeField, FakeUnit, site, topology
from tests.orchestrator.test_grid_service import GRID, Dip, _pmu
from tests.support.aio import run
from vpp.config.models import SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Publisher, Subscriber
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.grid.service import GridService


async def _judged(
    cfg: SiteConfig, topo: Topology, a: list[FakeUnit], b: list[FakeUnit],
    during: Callable[[FakeField], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """The compliance report of one dip judged by a real grid service: fields ``a`` and
    ``b`` respond faithfully; ``during(field_a)`` runs from 1.5 s into the dip."""
    dip = Dip()
    with Broker(topo):
        sub = Subscriber(topo.events_out, ("event/grid",))
        pmu_pub = Publisher(topo.events_in, bind=False)
        pmu = asyncio.create_task(_pmu(pmu_pub, dip))
        try:
            async with (
                FakeField(topo, "field-a", a, hz=dip) as fa,
                FakeField(topo, "field-b", b, hz=dip),
                GridService(cfg, topo, allocate_every_s=0.1),
            ):
                await asyncio.sleep(1.0)
                dip.t0 = time.time() + 0.5
                if during is not None:
                    await asyncio.sleep(1.5)
                    await during(fa)
                while True:
                    msg = await asyncio.wait_for(sub.recv(), 10)
                    assert isinstance(msg, s.EventMsg)
                    if msg.body.kind == "compliance":
                        return dict(msg.body.data)
        finally:
            pmu.cancel()
            await asyncio.gather(pmu, return_exceptions=True)
            pmu_pub.close()
            sub.close()


def test_a_unit_charging_beyond_its_share_is_judged_from_where_it_is(ipc_dir: Path) -> None:
    # bess-1 charges at -480 kW: its share of the 600 kW obligation (about 400 kW) is
    # less than that. Its response starts from -480 kW within its own rating; an
    # expectation clipped to +-share would want it at -400 kW from the start and fail it.
    cfg = site(grid=GRID)
    comp = run(_judged(cfg, topology(cfg, ipc_dir), [FakeUnit("bess-1", base_kw=-480.0)],
                       [FakeUnit("bess-3")]), timeout=40)  # fmt: skip
    assert comp["shares"]["bess-1"] < 480.0
    one = comp["units"]["bess-1"]
    assert one["passed"], one["failures"]
    assert one["metrics"]["gain_ratio"] == pytest.approx(1.0, abs=0.05)


def test_a_base_that_moves_during_the_event_is_not_counted_as_response(ipc_dir: Path) -> None:
    # During the dip an AGC set-point moves bess-1's base up by 150 kW in steps; the
    # unit responds faithfully on top of it. Measured against its baseline, that
    # movement would look like 150 kW of excess response and fail the unit.
    async def agc(fa: FakeField) -> None:
        for _ in range(3):
            fa.units["bess-1"].base_kw += 50.0
            await asyncio.sleep(0.5)

    cfg = site(grid=GRID)
    comp = run(_judged(cfg, topology(cfg, ipc_dir), [FakeUnit("bess-1")],
                       [FakeUnit("bess-3")], agc), timeout=40)  # fmt: skip
    one = comp["units"]["bess-1"]
    assert one["passed"], one["failures"]
    assert one["metrics"]["gain_ratio"] == pytest.approx(1.0, abs=0.05)
