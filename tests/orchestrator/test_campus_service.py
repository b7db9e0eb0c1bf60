"""The campus aggregator on real ZeroMQ sockets: a broker thread, fake field controllers
(real Servers and Publishers) and command clients, all over ipc."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from tests.orchestrator.service_peers import Broker, FakeField, FakeUnit, site, topology, until
from tests.support.aio import free_port, run
from vpp.config.models import SiteConfig
from vpp.errors import CommandError
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.command_models import Level
from vpp.orchestrator.bus.curve import ClientCurve
from vpp.orchestrator.bus.keys import site_keys
from vpp.orchestrator.bus.pubsub import Client, Subscriber
from vpp.orchestrator.bus.topology import Topology, identities
from vpp.orchestrator.campus.fleet import LEVELS
from vpp.orchestrator.campus.service import MAX_SCHEDULES, RESEND_ROUNDS, Campus, serve

#: Where each unit is: the campus takes locations (and ratings) from the configuration.
LOCATIONS = {"bess-1": "IN/KA/B/campus-1/building-1/node-1",
             "bess-2": "IN/KA/B/campus-1/building-2/node-2",
             "bess-3": "IN/KA/B/campus-2/building-3/node-3"}  # fmt: skip


def _site(**sections: Any) -> SiteConfig:
    """The test site (service_peers.site) with the units at :data:`LOCATIONS`."""

    def unit(uid: str) -> dict[str, Any]:
        return {"id": uid, "rated_power_kw": 500, "capacity_kwh": 1000,
                "inverter": {"protocol": "modbus_tcp", "config": {}},
                "location": dict(zip(LEVELS, LOCATIONS[uid].split("/"), strict=True))}  # fmt: skip

    fields = [{"id": "field-a", "units": [unit("bess-1"), unit("bess-2")]},
              {"id": "field-b", "units": [unit("bess-3")]}]  # fmt: skip
    return site(**{"field": fields, **sections})


def _fields() -> tuple[list[FakeUnit], list[FakeUnit]]:
    a = [FakeUnit("bess-1", p_max_kw=400.0, location="IN/KA/B/campus-1/building-1/node-1"),
         FakeUnit("bess-2", p_max_kw=500.0, location="IN/KA/B/campus-1/building-2/node-2")]
    b = [FakeUnit("bess-3", p_max_kw=300.0, location="IN/KA/B/campus-2/building-3/node-3")]
    return a, b  # fmt: skip


@contextlib.asynccontextmanager
async def _rig(
    cfg: SiteConfig, topo: Topology
) -> AsyncIterator[tuple[FakeField, FakeField, Campus]]:
    """A broker, field-a (bess-1, bess-2), field-b (bess-3) and the campus, all running."""
    a, b = _fields()
    with Broker(topo):
        async with (
            FakeField(topo, "field-a", a) as fa,
            FakeField(topo, "field-b", b) as fb,
            Campus(cfg, topo) as campus,
        ):
            yield fa, fb, campus


def test_dispatch_sums_to_target_within_limits_and_is_published(ipc_dir: Path) -> None:
    cfg = _site()
    topo = topology(cfg, ipc_dir)
    a, b = _fields()

    async def go() -> None:
        with Broker(topo):
            sub = Subscriber(topo.events_out, ("event/campus",))
            try:
                async with (
                    FakeField(topo, "field-a", a) as fa,
                    FakeField(topo, "field-b", b) as fb,
                    Campus(cfg, topo) as campus,
                    Client(topo.commands["campus"], name="test") as cli,
                ):
                    ack = await cli.request("set_target", {"kw": 900.0})
                    assert ack.ok, ack.error
                    await until(lambda: len(campus.fleet) == 3 and campus.last is not None
                                and len(campus.last.setpoints) == 3)  # fmt: skip
                    await until(lambda: abs(sum(fa.bases().values()) + fb.bases()["bess-3"]
                                            - 900.0) < 1e-6)  # fmt: skip
                    bases = {**fa.bases(), **fb.bases()}
                    # Proportional to the (equal) ratings, capped at each unit's limit.
                    assert bases["bess-1"] == pytest.approx(300.0)
                    assert bases["bess-2"] == pytest.approx(300.0)
                    assert bases["bess-3"] == pytest.approx(300.0)
                    # Beyond what the fleet can reach: every unit at its limit.
                    await cli.request("set_target", {"kw": 1500.0})
                    await until(lambda: {**fa.bases(), **fb.bases()} == pytest.approx(
                        {"bess-1": 400.0, "bess-2": 500.0, "bess-3": 300.0}))  # fmt: skip
                    while True:
                        ev = await asyncio.wait_for(sub.recv(), 5)
                        assert isinstance(ev, s.EventMsg)
                        if ev.body.kind == "command":  # the audit of set_target
                            continue
                        assert ev.body.kind == "dispatch"
                        if ev.body.data["target_kw"] == 1500.0:
                            break
                    d = ev.body.data
                    assert d["delivered_kw"] == pytest.approx(1200.0)
                    assert d["shortfall_kw"] == pytest.approx(300.0)
                    assert sum(d["setpoints"].values()) == pytest.approx(1200.0)
                    totals = (await cli.request("fleet")).result
                    assert totals["units"] == 3
                    assert list(totals["levels"]) == list(LEVELS)
                    part = (await cli.request("fleet", {"levels": ["campus"]})).result
                    assert list(part["levels"]) == ["campus"]
                    assert not (await cli.request("fleet", {"levels": ["planet"]})).ok
                    campus_level = totals["levels"]["campus"]
                    assert campus_level["IN/KA/B/campus-1"]["rated_discharge_kw"] == 1000.0
                    assert campus_level["IN/KA/B/campus-2"]["available_discharge_kw"] == 300.0
            finally:
                sub.close()

    run(go())


def test_dead_field_controller_goes_offline_and_its_share_moves(ipc_dir: Path) -> None:
    cfg = _site()
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        async with _rig(cfg, topo) as (fa, fb, campus):
            campus.target_kw = 600.0
            await until(lambda: fb.bases()["bess-3"] == pytest.approx(200.0))
            await fb.stop()
            await until(lambda: not campus.fields["field-b"].online)
            # The next rounds give bess-3's 200 kW to field-a's two units.
            await until(lambda: sum(fa.bases().values()) == pytest.approx(600.0))
            assert fa.bases() == pytest.approx({"bess-1": 300.0, "bess-2": 300.0})
            assert campus.last is not None
            assert "bess-3" not in campus.last.setpoints
            assert campus.last.excluded["bess-3"] == "offline"
            rounds = campus.rounds
            await until(lambda: campus.rounds >= rounds + 3)  # the loop goes on

    run(go())


def test_command_timeout_marks_the_field_offline_at_once(ipc_dir: Path) -> None:
    # field-b's heartbeats and telemetry keep coming (a publisher alone), but nothing
    # answers its commands: the first timeout takes its unit out of the next round.
    # Rounds of 0.6 s give commands 0.3 s (half a round, at most the bus's): at 0.1 s
    # field-a's own acks were once late in the full suite on a loaded machine.
    cfg = _site(campus={"dispatch_interval_s": 0.6, "fleet": {"offline_timeout_s": 30.0}})
    topo = topology(cfg, ipc_dir)
    a, b = _fields()

    async def go() -> None:
        with Broker(topo):
            async with (
                FakeField(topo, "field-b", b, answers=False),
                FakeField(topo, "field-a", a) as fa,
                Campus(cfg, topo) as campus,
            ):
                campus.target_kw = 600.0
                await until(lambda: campus.fields.get("field-b") is not None
                            and campus.fields["field-b"].failures >= 1)  # fmt: skip
                await until(lambda: sum(fa.bases().values()) == pytest.approx(600.0))
                assert campus.errors["command_timeout"] >= 1

    run(go())


def test_malformed_input_is_counted_and_the_loops_go_on(ipc_dir: Path) -> None:
    cfg = _site()
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        async with (
            _rig(cfg, topo) as (fa, _, campus),
            Client(topo.commands["campus"], name="test") as cli,
        ):
            campus.target_kw = 300.0
            await until(lambda: len(campus.fleet) == 3)
            pub = fa.publisher
            await pub.publish_raw(b"telemetry/x", b"{not json")
            bad_soc = (b'{"v":2,"type":"telemetry","sender":"f","id":"1","ts":1,'
                       b'"body":{"unit":"bess-1","p_kw":1,"soc_pct":150,"temp_c":1,'
                       b'"limits":{"p_min_kw":0,"p_max_kw":0}}}')  # fmt: skip
            await pub.publish_raw(b"telemetry/bess-1", bad_soc)
            tel = s.Telemetry(unit="ghost", p_kw=0.0, soc_pct=50.0, temp_c=20.0,
                              limits=s.Limits(p_min_kw=-1.0, p_max_kw=1.0))  # fmt: skip
            await pub.publish(s.make(tel, "field-a"))
            bad_limits = s.Telemetry(unit="bess-1", p_kw=0.0, soc_pct=50.0, temp_c=20.0,
                                     limits=s.Limits(p_min_kw=5.0, p_max_kw=1.0))  # fmt: skip
            await pub.publish(s.make(bad_limits, "field-a"))
            sub = campus.subscriber
            assert sub is not None
            await until(lambda: sub.errors["json"] >= 1 and sub.errors["field"] >= 1
                        and campus.errors["telemetry"] >= 1
                        and campus.errors["unknown_unit"] >= 1)  # fmt: skip
            ack = await cli.request("set_target", {"kw": "lots"})
            assert not ack.ok and "kw" in (ack.error or "")
            ack = await cli.request("set_schedule", {"start": 0, "kw": []})
            assert not ack.ok
            rounds = campus.rounds
            await until(lambda: campus.rounds >= rounds + 2)
            assert campus.last is not None
            assert campus.last.delivered_kw == pytest.approx(300.0)
            assert "ghost" not in campus.fleet

    run(go())


def test_schedule_sets_the_target_block_by_block(ipc_dir: Path) -> None:
    cfg = _site(campus={"dispatch_interval_s": 5.0, "target_kw": 50.0})
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        with Broker(topo):
            async with Campus(cfg, topo) as campus, Client(topo.commands["campus"]) as cli:
                now = time.time()
                assert campus.target(now) == (50.0, "config")
                ack = await cli.request("set_schedule",
                                        {"start": now - 10, "block_s": 100, "kw": [-200, 700]})
                assert ack.ok, ack.error
                assert campus.target(now) == (-200.0, "schedule")
                assert campus.target(now + 95) == (700.0, "schedule")
                assert campus.target(now + 500) == (50.0, "config")  # after the schedule
                await cli.request("set_target", {"kw": 10.0})
                assert campus.target(now) == (10.0, "set_target")
                await cli.request("set_target", {"kw": None})
                assert campus.target(now) == (-200.0, "schedule")
                # The next delivery day's schedule is kept beside today's, not instead of
                # it; one for the same start replaces the old one.
                ack = await cli.request("set_schedule",
                                        {"start": now + 190, "block_s": 100, "kw": [300]})
                assert ack.ok, ack.error
                assert campus.target(now) == (-200.0, "schedule")
                assert campus.target(now + 200) == (300.0, "schedule")
                await cli.request("set_schedule", {"start": now + 190, "block_s": 100,
                                                   "kw": [400]})  # fmt: skip
                assert campus.target(now + 200) == (400.0, "schedule")
                assert len(campus.schedules) == 2

    run(go())


@pytest.fixture
def _gc_restored() -> Iterator[None]:
    # serve() tunes the garbage collector of its (own) process; undo it for the others.
    old = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*old)


@pytest.mark.usefixtures("_gc_restored")
def test_restarted_campus_relearns_the_fleet_from_heartbeats(ipc_dir: Path) -> None:
    cfg = _site()
    topo = topology(cfg, ipc_dir)
    a, b = _fields()

    async def go() -> None:
        with Broker(topo):
            async with FakeField(topo, "field-a", a) as fa, FakeField(topo, "field-b", b):
                stop = asyncio.Event()
                first = asyncio.create_task(serve(cfg, topo, "campus", stop))
                async with Client(topo.commands["campus"]) as cli:
                    await until(lambda: len(fa.commands) > 0)
                    stop.set()
                    await first
                    async with Campus(cfg, topo) as campus:
                        assert len(campus.fleet) == 0
                        campus.target_kw = -450.0
                        await until(lambda: len(campus.fleet) == 3)
                        ack = await cli.request("fleet")
                        assert ack.ok and ack.result["units"] == 3
                        await until(lambda: sum(fa.bases().values()) == pytest.approx(-300.0))
                assert gc.get_threshold()[0] == 100_000  # serve() tuned the collector

    run(go())


def test_unchanged_setpoints_are_not_resent_every_round(ipc_dir: Path) -> None:
    cfg = _site()
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        async with _rig(cfg, topo) as (fa, _, campus):
            campus.target_kw = 300.0
            await until(lambda: sum(fa.bases().values()) == pytest.approx(200.0))
            n0, r0 = len(fa.commands), campus.rounds
            await until(lambda: campus.rounds >= r0 + 4)
            assert len(fa.commands) == n0  # the same setpoints: nothing sent
            campus.target_kw = 600.0  # a change goes out in the next round
            await until(lambda: sum(fa.bases().values()) == pytest.approx(400.0))
            n1, r1 = len(fa.commands), campus.rounds
            assert n1 == n0 + 2
            # And every RESEND_ROUNDS rounds anyway (a restarted field controller).
            await until(lambda: campus.rounds >= r1 + RESEND_ROUNDS + 1, timeout=10)
            assert len(fa.commands) >= n1 + 2

    run(go())


def test_level_type_names_the_fleet_levels() -> None:
    assert get_args(Level) == LEVELS


def test_campus_over_tcp_with_curve_keys(tmp_path: Path) -> None:
    # One keys directory for the site, as vpp keys --site makes it: each identity's pair
    # named after it; the broker and every command server know all the public keys.
    keys = tmp_path / "keys"
    site_keys(keys, identities(["field-a", "field-b"]))
    names = ["field-a", "field-b", "campus", "grid", "market"]
    ports = {n: free_port() for n in ["events_in", "events_out", *names]}
    cfg = _site(bus={"transport": "tcp", "ports": ports, "keys_dir": str(keys),
                    "command_timeout_s": 0.5, "command_retries": 0})  # fmt: skip
    topo = topology(cfg, tmp_path)
    assert topo.authenticated
    a, b = _fields()

    async def go() -> None:
        async with topo.broker():
            operator = ClientCurve(keys / "operator.key_secret", keys / "campus.key")
            async with (
                FakeField(topo, "field-a", a, curve=topo.server_curve("field-a")) as fa,
                FakeField(topo, "field-b", b, curve=topo.server_curve("field-b")) as fb,
                Campus(cfg, topo) as campus,
                Client(topo.commands["campus"], name="operator", curve=operator) as cli,
            ):
                ack = await cli.request("set_target", {"kw": 900.0})
                assert ack.ok, ack.error
                await until(lambda: sum({**fa.bases(), **fb.bases()}.values())
                            == pytest.approx(900.0))  # fmt: skip
                assert campus.errors["command_timeout"] == 0
                # The campus heard the field controllers through the Curve broker, each
                # message's sender its authenticated publisher.
                assert campus.subscriber is not None and not campus.subscriber.errors

    run(go())


def test_fleet_of_units_without_telemetry_reports_soc_none(ipc_dir: Path) -> None:
    # A group whose units have not reported yet has no SOC: NaN in the fleet's totals,
    # which the bus refuses (issue 8), so the whole "fleet" answer used to fail. None.
    cfg = _site()
    topo = topology(cfg, ipc_dir)

    async def go() -> s.Ack:
        async with Campus(cfg, topo) as campus:
            campus.fleet.heartbeat("bess-1", "IN/KA/B/campus-1/building-1/node-1",
                                   rated_charge_kw=100.0, rated_discharge_kw=100.0,
                                   energy_kwh=200.0, timestamp=campus.clock())  # fmt: skip
            async with Client(topo.commands["campus"], timeout=2.0) as cli:
                return await cli.request("fleet", {"levels": ["campus"]})

    ack = run(go())
    assert ack.ok, ack.error
    group = ack.result["levels"]["campus"]["IN/KA/B/campus-1"]
    assert group["units"] == 1 and group["soc_pct"] is None and group["energy_kwh"] == 200.0


def test_schedules_kept_are_bounded(ipc_dir: Path) -> None:
    # One per start time: a stream of schedules for ever new starts must not grow the map.
    cfg = _site()
    campus = Campus(cfg, topology(cfg, ipc_dir))
    now = campus.clock()

    def schedule(start: float) -> s.CommandMsg:
        cmd = s.make(s.Command(name="set_schedule",
                               params={"start": start, "block_s": 900, "kw": [1.0]}), "market")
        assert isinstance(cmd, s.CommandMsg)
        return cmd

    async def go() -> None:
        for k in range(MAX_SCHEDULES):
            await campus._set_schedule(schedule(now + 3600 * (k + 1)))
        with pytest.raises(CommandError) as info:
            await campus._set_schedule(schedule(now + 3600 * (MAX_SCHEDULES + 1)))
        assert info.value.field == "start"
        await campus._set_schedule(schedule(now + 3600))  # a replacement is taken
        assert len(campus.schedules) == MAX_SCHEDULES

    run(go())
