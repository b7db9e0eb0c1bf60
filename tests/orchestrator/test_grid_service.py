"""The grid service on real ZeroMQ sockets: a test PMU publishing a frequency dip, fake
field controllers that answer set_participation and respond by droop (one of them at
half gain), and the events and compliance the service publishes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.orchestrator.service_peers import Broker, FakeField, FakeUnit, site, topology, until
from tests.support.aio import run
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Client, Publisher, Subscriber
from vpp.orchestrator.grid.service import GridService

GRID = {"obligation_kw": 600.0, "events": {"hold_s": 0.5, "rocof_threshold_hz_s": None}}


class Dip:
    """50 Hz, then from ``t0``: 1 s ramp to 49.6 Hz, 2.5 s there, 1 s ramp back."""

    def __init__(self) -> None:
        self.t0: float | None = None

    def __call__(self) -> float:
        if self.t0 is None:
            return 50.0
        x = time.time() - self.t0
        if x < 0:
            return 50.0
        if x < 1.0:
            return 50.0 - 0.4 * x
        if x < 3.5:
            return 49.6
        if x < 4.5:
            return 49.6 + 0.4 * (x - 3.5)
        return 50.0


async def _pmu(pub: Publisher, hz: Dip) -> None:
    while True:
        f = hz()
        band = "normal" if 49.9 <= f <= 50.05 else "low"
        await pub.publish(s.make(s.Frequency(hz=f, band=band, t=time.time()), "field-a"))
        await asyncio.sleep(0.05)


def _units() -> tuple[list[FakeUnit], list[FakeUnit]]:
    return [FakeUnit("bess-1"), FakeUnit("bess-2", p_max_kw=100.0)], [FakeUnit("bess-3")]


def test_event_allocation_and_compliance(ipc_dir: Path) -> None:
    cfg = site(grid=GRID)
    topo = topology(cfg, ipc_dir)
    a, b = _units()
    dip = Dip()

    async def go() -> None:
        with Broker(topo):
            sub = Subscriber(topo.events_out, ("event/grid",))
            pmu_pub = Publisher(topo.events_in, bind=False)
            pmu = asyncio.create_task(_pmu(pmu_pub, dip))
            try:
                async with (
                    FakeField(topo, "field-a", a, hz=dip) as fa,
                    FakeField(topo, "field-b", b, hz=dip, gain=0.5) as fb,
                    GridService(cfg, topo, allocate_every_s=0.1) as grid,
                    Client(topo.commands["grid"]) as cli,
                ):
                    units = {**fa.units, **fb.units}
                    await until(lambda: all(u.participation_kw for u in units.values()))
                    shares = {k: u.participation_kw for k, u in units.items()}
                    # Pro rata to headroom (500, 100, 500 kW), summing to the obligation.
                    assert sum(v or 0.0 for v in shares.values()) == pytest.approx(600.0)
                    assert shares["bess-1"] == pytest.approx(600.0 * 500 / 1100)
                    assert shares["bess-2"] == pytest.approx(600.0 * 100 / 1100)
                    dip.t0 = time.time() + 0.5
                    got: dict[str, s.Event] = {}
                    while "compliance" not in got:
                        msg = await asyncio.wait_for(sub.recv(), 10)
                        assert isinstance(msg, s.EventMsg)
                        got[msg.body.data.get("phase") or msg.body.kind] = msg.body
                    start, end, comp = got["start"].data, got["end"].data, got["compliance"].data
                    assert start["trigger"] == "low" and start["end"] is None
                    assert end["nadir_hz"] == pytest.approx(49.6, abs=1e-9)
                    assert end["direction"] == "under"
                    assert end["end"] - end["start"] == pytest.approx(3.9 + 0.5, abs=0.3)
                    report = comp["units"]
                    assert report["bess-1"]["passed"] and report["bess-2"]["passed"]
                    assert report["bess-1"]["source"] == "measured"
                    assert not report["bess-3"]["passed"]
                    assert report["bess-3"]["metrics"]["gain_ratio"] == pytest.approx(0.5, abs=0.05)
                    assert report["bess-1"]["metrics"]["gain_ratio"] == pytest.approx(1.0, abs=0.05)
                    assert comp["shares"]["bess-3"] == pytest.approx(600.0 * 500 / 1100)
                    events = (await cli.request("events")).result
                    assert len(events) == 1 and events[0]["event"]["nadir_hz"] == end["nadir_hz"]
                    status = (await cli.request("status")).result
                    assert status["obligation_kw"] == 600.0 and status["active_event"] is None
                    assert status["allocated_kw"] == pytest.approx(600.0)
                    assert grid.detector.invalid_count == 0
            finally:
                pmu.cancel()
                await asyncio.gather(pmu, return_exceptions=True)
                pmu_pub.close()
                sub.close()

    run(go(), timeout=40)


def test_dead_field_controller_share_is_reallocated(ipc_dir: Path) -> None:
    cfg = site(grid=GRID)
    topo = topology(cfg, ipc_dir)
    a, b = _units()

    async def go() -> None:
        with Broker(topo):
            async with (
                FakeField(topo, "field-a", a) as fa,
                FakeField(topo, "field-b", b) as fb,
                GridService(cfg, topo, allocate_every_s=0.1) as grid,
            ):
                await until(lambda: fb.units["bess-3"].participation_kw is not None)
                await fb.stop()
                # bess-3 offline: bess-1 takes 500 kW (its headroom), bess-2 its 100 kW.
                await until(lambda: fa.units["bess-1"].participation_kw == pytest.approx(500.0))
                assert fa.units["bess-2"].participation_kw == pytest.approx(100.0)
                assert grid.allocation is not None
                assert grid.allocation.excluded == {"bess-3": "offline"}
                assert grid.allocation.allocated_kw == pytest.approx(600.0)
                assert grid.sent["bess-3"] == 0.0
                assert grid.errors["command_timeout"] == 0  # no command to the dead one

    run(go())


def test_malformed_and_repeated_samples_are_counted(ipc_dir: Path) -> None:
    cfg = site(grid=GRID)
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        with Broker(topo):
            pub = Publisher(topo.events_in, bind=False)
            try:
                async with GridService(cfg, topo) as grid:
                    sub = grid.subscriber
                    assert sub is not None
                    t = 0.0
                    while not grid.frequency.samples:
                        t = time.time()
                        await pub.publish(s.make(s.Frequency(hz=50.0, band="n", t=t), "field-a"))
                        await asyncio.sleep(0.05)
                    await pub.publish(s.make(s.Frequency(hz=49.0, band="n", t=t - 1), "field-a"))
                    await pub.publish_raw(b"frequency/field-a", b'{"v":2,"type":"frequency"}')
                    await pub.publish_raw(b"frequency/field-a", b"\xff")
                    await pub.publish(s.make(s.Frequency(hz=49.5, band="low", t=t + 1), "field-a"))
                    await until(lambda: grid.detector.active is not None)
                    assert grid.duplicates == 1
                    assert sub.errors["field"] >= 1 and sub.errors["json"] >= 1
                    assert grid.detector.active.nadir_hz == 49.5
            finally:
                pub.close()

    run(go())


def test_unanswered_participation_is_counted_and_retried(ipc_dir: Path) -> None:
    # field-b publishes but never answers: its share times out (counted, tried again),
    # and field-a gets its shares all the same.
    cfg = site(grid=GRID)
    topo = topology(cfg, ipc_dir)
    a, b = _units()

    async def go() -> None:
        with Broker(topo):
            async with (
                FakeField(topo, "field-b", b, answers=False),
                FakeField(topo, "field-a", a) as fa,
                GridService(cfg, topo, allocate_every_s=0.1) as grid,
            ):
                await until(lambda: grid.errors["command_timeout"] >= 2)
                assert fa.units["bess-1"].participation_kw == pytest.approx(600 * 500 / 1100)
                assert "bess-3" not in grid.sent

    run(go())
