"""The market gateway on real ZeroMQ sockets: a fake campus (a real command Server) takes
the schedule; bids and results come from the bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.orchestrator.service_peers import Broker, FakeField, FakeUnit, site, topology, until
from tests.support.aio import run
from vpp.config.models import SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.pubsub import Client, Publisher, Server, Subscriber
from vpp.orchestrator.bus.topology import Topology
from vpp.orchestrator.market import IST, BidWindowError, ScheduleError, day_start
from vpp.orchestrator.market.exchanges import from_config
from vpp.orchestrator.market.gateway import MarketGateway

NOON = datetime(2026, 11, 21, 12, 0, 1, tzinfo=IST).timestamp()  # block 48 under way


def gateway(cfg: SiteConfig, topo: Topology, **kw: Any) -> MarketGateway:
    """The gateway on the exchange ``cfg.market.exchange`` names, as ``serve`` makes it."""
    exchange, forecast = from_config(cfg.market)
    return MarketGateway(cfg, topo, exchange=exchange, forecast=forecast, **kw)


class FakeCampus:
    def __init__(self, endpoint: str) -> None:
        self.schedules: list[dict[str, Any]] = []
        self.server = Server(endpoint, {"set_schedule": self._set}, name="campus")

    async def _set(self, cmd: s.CommandMsg) -> None:
        self.schedules.append(cmd.body.params)


@contextlib.asynccontextmanager
async def _running(
    cfg: SiteConfig, topo: Topology, **kw: Any
) -> AsyncIterator[tuple[FakeCampus, MarketGateway]]:
    """A broker, a fake campus and the gateway (``kw``: its keyword arguments)."""
    with Broker(topo):
        campus = FakeCampus(topo.commands["campus"])
        async with campus.server, gateway(cfg, topo, **kw) as gw:
            yield campus, gw


def test_schedule_matches_accepted_bids_within_reserve_and_limits(ipc_dir: Path) -> None:
    cfg = site(market={"reserve_fraction": 0.3, "seed": 7})
    topo = topology(cfg, ipc_dir)
    units = [FakeUnit("bess-1", soc_pct=80.0), FakeUnit("bess-2", soc_pct=80.0)]

    async def go() -> None:
        with Broker(topo):
            sub = Subscriber(topo.events_out, ("event/market",))
            campus = FakeCampus(topo.commands["campus"])
            try:
                async with (
                    campus.server,
                    FakeField(topo, "field-a", units),
                    FakeField(topo, "field-b", [FakeUnit("bess-3", soc_pct=80.0)]),
                    gateway(cfg, topo, settle_s=0.5, resend_s=0.3, clock=lambda: NOON) as gw,
                ):
                    await until(lambda: len(campus.schedules) >= 2)  # first send and a resend
                    # SOC from telemetry: 80 % of 3 MWh.
                    assert gw.battery().soc_initial_mwh == pytest.approx(2.4)
                    sch = campus.schedules[-1]
                    kw = sch["kw"]
                    assert sch["start"] == day_start(datetime.fromtimestamp(NOON, IST).date())
                    assert sch["block_s"] == 900.0 and len(kw) == 96
                    assert all(v == 0.0 for v in kw[:49])  # past and under way: not bid
                    limit = 1500.0 * (1 - 0.3)  # the reserve held back both ways
                    assert max(abs(v) for v in kw) <= limit + 1e-6
                    assert max(kw) > 0 and min(kw) < 0  # evening sell, cheaper buys
                    bids: dict[str, dict[str, Any]] = {}
                    results: dict[str, dict[str, Any]] = {}
                    while len(results) < len(gw.bids) or not results:
                        msg = await asyncio.wait_for(sub.recv(), 5)
                        assert isinstance(msg, s.EventMsg)
                        d = msg.body.data
                        (bids if msg.body.kind == "bid" else results)[d["bid_id"]] = d
                    assert set(bids) == set(results)
                    expected = [0.0] * 96
                    for r in results.values():
                        sign = 1.0 if r["side"] == "sell" else -1.0
                        expected[r["block"]] += sign * 1000.0 * r["accepted_mw"]
                        assert r["clearing_price"] is not None
                        vol = sum(st["volume_mw"] for st in bids[r["bid_id"]]["steps"])
                        assert 0 < r["accepted_mw"] <= vol + 1e-9
                    assert kw == pytest.approx(expected)
            finally:
                sub.close()

    run(go(), timeout=40)


def test_late_in_the_day_plans_the_next_day_and_rerun_command(ipc_dir: Path) -> None:
    cfg = site()
    topo = topology(cfg, ipc_dir)
    late = datetime(2026, 11, 21, 23, 50, tzinfo=IST).timestamp()  # block 95

    async def go() -> None:
        async with (
            _running(cfg, topo, settle_s=0.1, clock=lambda: late) as (campus, gw),
            Client(topo.commands["market"]) as cli,
        ):
            await until(lambda: len(campus.schedules) == 1)
            next_day = datetime(2026, 11, 22, tzinfo=IST).timestamp()
            assert campus.schedules[0]["start"] == next_day
            assert any(v != 0.0 for v in campus.schedules[0]["kw"])
            assert {b.delivery for b in gw.bids} == {date(2026, 11, 22)}
            ack = await cli.request("run", timeout=10)
            assert ack.ok, ack.error
            assert ack.result["runs"] == 2 and ack.result["delivered"]
            assert len(campus.schedules) == 2
            status = (await cli.request("status")).result
            assert status["fleet"]["reserve_mw"] == pytest.approx(0.2 * 1.5)
            assert gw.errors["command_timeout"] == 0

    run(go(), timeout=40)


def test_dead_campus_is_counted_and_gets_the_schedule_when_back(ipc_dir: Path) -> None:
    cfg = site()
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        with Broker(topo):
            async with gateway(cfg, topo, settle_s=0.1, resend_s=0.3, clock=lambda: NOON) as gw:
                await until(lambda: gw.errors["command_timeout"] >= 1)
                assert gw.runs == 1 and not gw.delivered
                # Bad telemetry on the bus is counted; the gateway goes on.
                pub = Publisher(topo.events_in, bind=False)
                sub = gw.subscriber
                assert sub is not None
                try:
                    while sub.errors["json"] == 0:
                        await pub.publish_raw(b"telemetry/bess-1", b"{broken")
                        await asyncio.sleep(0.05)
                finally:
                    pub.close()
                campus = FakeCampus(topo.commands["campus"])
                async with campus.server:
                    await until(lambda: gw.delivered)
                    assert campus.schedules[-1]["kw"] == list(gw.schedule.kw)  # type: ignore[union-attr]

    run(go(), timeout=40)


def test_inside_the_dam_window_it_also_bids_the_next_day(ipc_dir: Path) -> None:
    # 10:30 IST: today's schedule at start, then tomorrow's 96 blocks in the DAM window.
    morning = datetime(2026, 11, 21, 10, 30, tzinfo=IST).timestamp()
    cfg = site(market={"seed": 3})
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        kw = {"settle_s": 0.2, "resend_s": 0.2, "clock": lambda: morning}
        async with _running(cfg, topo, **kw) as (campus, gw):
            tomorrow = day_start(date(2026, 11, 22))
            await until(lambda: any(x["start"] == tomorrow for x in campus.schedules))
            starts = {x["start"] for x in campus.schedules}
            assert starts == {day_start(date(2026, 11, 21)), tomorrow}
            nxt = next(x for x in campus.schedules if x["start"] == tomorrow)
            assert len(nxt["kw"]) == 96 and any(v != 0.0 for v in nxt["kw"])
            assert gw.runs == 2
            assert not gw.next_day_due()  # tomorrow is done: no third run

    run(go(), timeout=40)


def test_outside_the_window_the_next_day_is_refused() -> None:
    cfg = site()
    gw = gateway(cfg, topology(cfg, Path("/tmp")), clock=lambda: NOON)
    assert not gw.next_day_due()  # 12:00:01 IST: the window closed at 12:00

    async def go() -> None:
        with pytest.raises(BidWindowError, match="closed"):
            await gw.run_next_day()

    run(go())


def test_an_open_rtm_session_is_bid_once_and_its_awards_join_the_schedule(
    ipc_dir: Path,
) -> None:
    # 14:50 IST: the RTM session delivering 16:00-16:30 (blocks 64, 65; session 32) takes
    # bids until its gate closes at 15:00.
    t = datetime(2026, 11, 21, 14, 50, tzinfo=IST).timestamp()
    cfg = site(market={"seed": 5, "reserve_fraction": 0.2})
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        kw = {"settle_s": 0.2, "resend_s": 0.2, "clock": lambda: t}
        async with _running(cfg, topo, **kw) as (campus, gw):
            await until(lambda: gw.rtm_runs == 1 and gw.delivered)
            await asyncio.sleep(0.5)  # more loops: the session is not bid again
            assert gw.rtm_runs == 1 and gw.rtm_done == {(date(2026, 11, 21), 32)}
            # The first schedule sent is the DAM's; the last adds the RTM awards, which
            # are at most what was bid (the LP may also keep the DAM position).
            dam, final = campus.schedules[0]["kw"], campus.schedules[-1]["kw"]
            traded = [final[b] - dam[b] for b in range(96)]
            assert all(v == pytest.approx(0.0) for b, v in enumerate(traded)
                       if b not in (64, 65))  # fmt: skip
            bids = {b.block: b for b in gw.rtm_bids}
            assert set(bids) <= {64, 65}
            for b in (64, 65):
                vol = sum(st.volume_mw for st in bids[b].steps) if b in bids else 0.0
                assert abs(traded[b]) <= 1000.0 * vol + 1e-6
            assert max(abs(v) for v in final) <= 1500.0 * (1 - 0.2) + 1e-6

    run(go(), timeout=40)


def test_rtm_trades_the_difference_from_the_dam_position(ipc_dir: Path) -> None:
    # With no day-ahead position, 2 evening blocks at RTM prices well above the
    # degradation cost are worth selling: the RTM trade is a sale in both.
    t = datetime(2026, 11, 21, 14, 50, tzinfo=IST).timestamp()
    cfg = site(market={"seed": 5, "reserve_fraction": 0.2})
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        async with _running(cfg, topo, settle_s=3600, clock=lambda: t) as (campus, gw):
            day = date(2026, 11, 21)
            out = await gw.run_rtm(day, 32)
            assert out["session"] == 32 and out["bids"] == 2
            assert all(b.side.value == "sell" and b.session == 32 for b in gw.rtm_bids)
            assert [b.block for b in gw.rtm_bids] == [64, 65]
            kw = campus.schedules[-1]["kw"]
            assert kw[64] > 0 and kw[65] > 0
            assert kw[64:66] == pytest.approx(out["traded_kw"])
            assert all(v == 0.0 for b, v in enumerate(kw) if b not in (64, 65))
            assert max(kw) <= 1500.0 * (1 - 0.2) + 1e-6

    run(go(), timeout=40)


def test_the_accepted_agc_reserve_is_left_free(ipc_dir: Path) -> None:
    agc = {"reserved_up_mw": 0.3, "reserved_down_mw": 0.2, "sustain_s": 1800.0}
    cfg = site(market={"reserve_fraction": 0.2, "seed": 7}, campus={"agc": agc})
    topo = topology(cfg, ipc_dir)
    b = gateway(cfg, topo, clock=lambda: NOON).battery()
    # 1.5 MW less 0.3 for frequency response, less the SRAS reserve each way.
    assert b.discharge_limit_mw == pytest.approx(1.5 - 0.3 - 0.3)
    assert b.charge_limit_mw == pytest.approx(1.5 - 0.3 - 0.2)
    # The AGC band (20-80 % of 3 MWh) less the energy of 0.3 MW x 0.25 h (response) and
    # of the SRAS reserve for 30 min.
    lo, hi = b.soc_bounds()
    assert lo == pytest.approx(0.6 + (0.075 + 0.3 * 0.5) / 0.95)
    assert hi == pytest.approx(2.4 - (0.075 + 0.2 * 0.5) * 0.95)

    async def go() -> None:
        async with _running(cfg, topo, settle_s=0.1, clock=lambda: NOON) as (campus, gw):
            await until(lambda: bool(campus.schedules))
            kw = campus.schedules[-1]["kw"]
            assert max(kw) <= 900.0 + 1e-6 and min(kw) >= -1000.0 - 1e-6
            assert gw.summary()["fleet"]["reserved_up_mw"] == 0.3

    run(go(), timeout=40)


def test_a_reserve_beyond_the_fleet_is_a_typed_error() -> None:
    cfg = site(campus={"agc": {"reserved_up_mw": 1.4}})
    gw = gateway(cfg, topology(cfg, Path("/tmp")), clock=lambda: NOON)
    with pytest.raises(ScheduleError, match=r"reserve_up_mw exceeds.*reserved_up_mw 1\.4"):
        gw.battery()
