"""The market gateway, the campus and the grid service together on one bus, with fake
field controllers: the market's accepted volumes become the campus target block by block,
the campus dispatches it, and the grid shares its obligation on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.orchestrator.service_peers import Broker, FakeField, FakeUnit, site, topology, until
from tests.orchestrator.test_market_gateway import NOON, gateway
from tests.support.aio import run
from vpp.orchestrator.campus.service import Campus
from vpp.orchestrator.grid.service import GridService


def test_market_schedule_drives_campus_dispatch(ipc_dir: Path) -> None:
    cfg = site(grid={"obligation_kw": 300.0})
    topo = topology(cfg, ipc_dir)
    offset = [0.0]

    async def go() -> None:
        with Broker(topo):
            async with (
                FakeField(topo, "field-a", [FakeUnit("bess-1"), FakeUnit("bess-2")]) as fa,
                FakeField(topo, "field-b", [FakeUnit("bess-3")]) as fb,
                # The campus on the market's clock: it refuses schedules far from its now.
                Campus(cfg, topo, clock=lambda: NOON + offset[0]) as campus,
                GridService(cfg, topo, allocate_every_s=0.1),
                gateway(cfg, topo, settle_s=0.2, clock=lambda: NOON) as market,
            ):
                await until(lambda: bool(campus.schedules) and market.delivered)
                (sch,) = campus.schedules.values()
                block = next(i for i, kw in enumerate(sch.kw) if kw > 0)
                # Move the campus clock into the first block the market sold.
                offset[0] = sch.start + (block + 0.5) * sch.block_s - NOON
                want = sch.kw[block]
                assert campus.target(NOON + offset[0]) == (want, "schedule")
                await until(lambda: sum({**fa.bases(), **fb.bases()}.values())
                            == pytest.approx(want))  # fmt: skip
                # The grid's shares on top of that base (pro rata to the headroom left)
                # settle to the obligation once the allocation follows the new base.
                units = [*fa.units.values(), *fb.units.values()]
                await until(lambda: sum(u.participation_kw or 0.0 for u in units)
                            == pytest.approx(300.0, abs=1e-6))  # fmt: skip
                assert all((u.participation_kw or 0.0) > 0 for u in units)

    run(go(), timeout=40)
