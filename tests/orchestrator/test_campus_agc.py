"""AGC through the campus on real ZeroMQ sockets: an operator's ``agc`` set-point moves the
dispatch target by the offset the reserve allows, the ``agc`` event reports it, and who
may send it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.orchestrator.service_peers import topology, until
from tests.orchestrator.test_campus_service import _rig, _site
from tests.support.aio import run
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.auth import BUILTIN_IDENTITIES, Policy, SecuritySection
from vpp.orchestrator.bus.pubsub import Client, Subscriber

#: 0.3 MW up and 0.2 MW down reserved; a ramp fast enough to be there the next round;
#: a set-point lapses after 1 s.
AGC = {"reserved_up_mw": 0.3, "reserved_down_mw": 0.2, "ramp_mw_per_min": 600.0,
       "timeout_s": 1.0}  # fmt: skip


async def _event(sub: Subscriber, kind: str, cond: Any) -> dict[str, Any]:
    """The data of the next event of ``kind`` for which ``cond(data)`` holds."""
    while True:
        ev = await asyncio.wait_for(sub.recv(), 5)
        if isinstance(ev, s.EventMsg) and ev.body.kind == kind and cond(ev.body.data):
            return ev.body.data


def test_an_agc_setpoint_moves_the_target_by_the_limited_offset(ipc_dir: Path) -> None:
    cfg = _site(campus={"dispatch_interval_s": 0.2, "fleet": {"offline_timeout_s": 0.6},
                        "agc": AGC})  # fmt: skip
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        sub = Subscriber(topo.events_out, ("event/campus",))
        try:
            async with (
                _rig(cfg, topo) as (fa, fb, campus),
                Client(topo.commands["campus"], name="operator") as cli,
            ):

                def total() -> float:
                    return sum({**fa.bases(), **fb.bases()}.values())

                assert (await cli.request("set_target", {"kw": 300.0})).ok
                await until(lambda: total() == pytest.approx(300.0))
                assert campus.agc_report is None  # no set-point yet: nothing to report
                # 0.5 MW asked, 0.3 reserved: the target moves by 300 kW.
                ack = await cli.request("agc", {"mw": 0.5})
                assert ack.ok, ack.error
                await until(lambda: total() == pytest.approx(600.0))
                d = await _event(sub, "dispatch", lambda d: d["agc_kw"] == pytest.approx(300))
                assert (d["base_kw"], d["target_kw"], d["source"]) == (300.0, 600.0, "set_target")
                rep = await _event(sub, "agc", lambda d: d["offset_mw"] == pytest.approx(0.3))
                assert rep["status"] == "limited_by_headroom"
                assert (rep["setpoint_mw"], rep["requested_mw"]) == (0.5, 0.3)
                assert rep["period"]["criteria"] and rep["signal"]["metrics"]["to_mw"] == 0.3
                # The plant follows (its power is its base): the response is measured full.
                await cli.request("agc", {"mw": 0.5})
                rep = await _event(sub, "agc", lambda d: d["signal"]["criteria"][1]["value"]
                                   is not None)  # fmt: skip
                assert rep["delivered_mw"] == pytest.approx(0.3)
                assert rep["signal"]["passed"]
                # Downward: 0.2 MW reserved.
                assert (await cli.request("agc", {"mw": -0.5})).ok
                await until(lambda: total() == pytest.approx(100.0))
                # Refused before anything changes: beyond the site's 1.5 MW, not a number.
                for bad in ({"mw": 2.0}, {"mw": "0.1"}, {}, {"mw": 0.1, "kw": 1}):
                    ack = await cli.request("agc", bad)
                    assert not ack.ok
                ack = await cli.request("agc", {"mw": -2.0})
                assert "mw" in (ack.error or "") and "rating" in (ack.error or "")
                assert campus.agc.last is not None and campus.agc.last.setpoint_mw == -0.5
                fleet = (await cli.request("fleet", {"levels": ["campus"]})).result
                assert fleet["agc"]["offset_mw"] == pytest.approx(-0.2)
                # No set-point for 1 s: stale, the offset back to zero, the base alone.
                await until(lambda: campus.agc_report is not None
                            and campus.agc_report["status"] == "stale")  # fmt: skip
                await until(lambda: total() == pytest.approx(300.0))
        finally:
            sub.close()

    run(go())


def test_the_scada_role_may_send_set_points_switch_units_and_read_but_nothing_else() -> None:
    policy = Policy.build(SecuritySection(identities={"ldc": ("scada",)}), ["field-a"])
    assert policy.decide("ldc", "agc", "campus:campus", None).ok
    assert policy.decide("ldc", "set_target", "campus:campus", None).ok
    assert policy.decide("ldc", "control", "field:field-a", "bess-1").ok
    for read in ("status", "fleet", "events"):
        assert policy.decide("ldc", read, "campus:campus", None).ok
    assert not policy.decide("ldc", "set_schedule", "campus:campus", None).ok
    assert not policy.decide("ldc", "set_base", "field:field-a", "bess-1").ok
    assert not policy.decide("ldc", "set_droop", "field:field-a", "bess-1").ok
    assert not policy.decide("ldc", "agc", "field:field-a", None).ok
    assert not policy.decide("ldc", "run", "market:market", None).ok
    # The SCADA gateway publishes what its masters did.
    assert policy.may_publish("ldc")
    # Only the SCADA gateway's own identity holds it; the operator may send agc too.
    assert [i for i, roles in BUILTIN_IDENTITIES.items() if "scada" in roles] == ["scada"]
    assert policy.decide("operator", "agc", "campus:campus", None).ok
    assert not policy.decide("viewer", "agc", "campus:campus", None).ok


def test_a_new_set_point_is_dispatched_at_once_not_at_the_next_tick(ipc_dir: Path) -> None:
    # Rounds every 30 s: without the wake, the set-point would wait for the next tick.
    cfg = _site(campus={"dispatch_interval_s": 30.0, "agc": AGC})
    topo = topology(cfg, ipc_dir)

    async def go() -> None:
        async with (
            _rig(cfg, topo) as (_fa, _fb, campus),
            Client(topo.commands["campus"], name="operator") as cli,
        ):
            await asyncio.sleep(0.5)
            rounds = campus.rounds
            assert rounds == 0  # the first tick is 30 s away
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert (await cli.request("agc", {"mw": 0.1})).ok
            await until(lambda: campus.rounds > rounds)
            assert loop.time() - t0 < 5.0
            assert campus.agc_report is not None and campus.agc_report["setpoint_mw"] == 0.1

    run(go())
