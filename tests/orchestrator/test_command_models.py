"""Commands make physical sense before they change anything: the parameter models and
the checks against a target and the time, on the field controller and the campus."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpp.config.commands import CommandLimits
from vpp.config.models import DeviceConfig, FieldConfig, SiteConfig, UnitConfig
from vpp.errors import CommandError
from vpp.orchestrator.bus import command_models as cm
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.bus.topology import BusSection, Topology
from vpp.orchestrator.campus.service import Campus
from vpp.orchestrator.field.controller import FieldController

RATED = 500.0


def unit(uid: str = "u1") -> UnitConfig:
    inv = DeviceConfig(protocol="modbus_tcp", config={"host": "127.0.0.1", "port": 1})
    return UnitConfig(id=uid, rated_power_kw=RATED, capacity_kwh=1000, inverter=inv)


def field() -> FieldController:
    return FieldController(FieldConfig(id="f", units=[unit()]))


def refused(ctl: FieldController, name: str, params: dict[str, Any]) -> CommandError:
    with pytest.raises(CommandError) as err:
        asyncio.run(ctl.command(name, params))
    return err.value


NOT_NUMBERS = [math.nan, math.inf, -math.inf, True, "1", None, [1.0], {"kw": 1}]


@pytest.mark.parametrize("bad", NOT_NUMBERS)
def test_every_number_is_a_finite_number(bad: object) -> None:
    ctl = field()
    before = ctl.units["u1"].base_kw
    err = refused(ctl, "set_base", {"unit": "u1", "kw": bad})
    assert err.field == "kw" and err.where == "f"
    assert ctl.units["u1"].base_kw == before
    for name, params in [
        ("set_participation", {"unit": "u1", "p_max_kw": bad}),
        ("set_schedule", {"unit": "u1", "start": time.time(), "block_s": bad, "base_kw": [1]}),
        ("set_schedule", {"unit": "u1", "start": time.time(), "block_s": 60, "base_kw": [bad]}),
        ("set_droop", {"unit": "u1", "droop_percent": bad}),
    ]:
        refused(ctl, name, params)


def test_powers_within_the_rating_and_unknown_keys_refused() -> None:
    ctl = field()
    assert "rating" in str(refused(ctl, "set_base", {"unit": "u1", "kw": RATED + 0.1}))
    assert refused(ctl, "set_participation", {"unit": "u1", "p_max_kw": -1}).field == "p_max_kw"
    assert refused(ctl, "set_participation", {"unit": "u1", "p_max_kw": 600}).field == "p_max_kw"
    assert refused(ctl, "set_base", {"unit": "u1", "kw": 1, "force": True}).field == "force"
    assert refused(ctl, "set_base", {"unit": "u9", "kw": 1}).field == "unit"
    assert ctl.units["u1"].participation_kw == RATED and ctl.units["u1"].base_kw == 0.0


def test_schedules_have_sane_blocks_counts_and_starts() -> None:
    ctl = field()
    now = time.time()
    sched = {"unit": "u1", "start": now, "block_s": 900.0, "base_kw": [100.0] * 96}
    out = asyncio.run(ctl.command("set_schedule", sched))
    assert out["blocks"] == 96 and out["end"] == pytest.approx(now + 96 * 900)
    first = ctl.units["u1"].schedule
    for change, field_ in [
        ({"block_s": 1e-300}, "block_s"),
        ({"block_s": 0.5}, "block_s"),
        ({"block_s": 2 * 86_400.0}, "block_s"),
        ({"base_kw": [1.0] * 1001}, "base_kw"),
        ({"base_kw": []}, "base_kw"),
        ({"base_kw": [1.0, RATED * 2]}, "base_kw"),
        ({"start": now + 30 * 86_400}, "start"),
        ({"start": now - 2 * 86_400}, "start"),
        ({"start": now - 3600, "block_s": 60.0, "base_kw": [1.0]}, "start"),  # over already
    ]:
        assert refused(ctl, "set_schedule", {**sched, **change}).field == field_, change
    assert ctl.units["u1"].schedule is first  # the previous schedule stays in force


def test_droop_settings_that_make_no_sense_are_refused() -> None:
    ctl = field()
    before = ctl.units["u1"].droop_settings
    for params in [
        {"droop_percent": 0.0},
        {"droop_percent": 50.0},
        {"deadband_low_hz": 50.2, "deadband_high_hz": 50.3},  # 50 Hz outside the band
        {"ramp_kw_per_s": -1.0},
        {"inertia_kw_per_hz_s": -1.0},
    ]:
        refused(ctl, "set_droop", {"unit": "u1", **params})
    assert ctl.units["u1"].droop_settings is before
    out = asyncio.run(ctl.command("set_droop", {"unit": "u1", "droop_percent": 4.0}))
    assert out["droop_percent"] == 4.0 and ctl.units["u1"].droop_settings.droop_percent == 4.0


def test_set_droop_takes_a_knee_to_the_core_and_refuses_a_bad_one() -> None:
    ctl = field()
    dc = {"deadband_low_hz": 49.985, "deadband_high_hz": 50.015, "knee_hz": 0.2,
          "knee_percent": 5.0, "full_hz": 0.5}  # fmt: skip
    bads: list[dict[str, Any]] = [{"knee_hz": 0.01}, {"knee_percent": 0.0}, {"full_hz": 0.1},
                                  {"knee_percent": math.nan}, {"knee_hz": "0.2"}]  # fmt: skip
    for bad in bads:
        refused(ctl, "set_droop", {"unit": "u1", **dc, **bad})
    out = asyncio.run(ctl.command("set_droop", {"unit": "u1", **dc}))
    assert (out["knee_hz"], out["knee_percent"], out["full_hz"]) == (0.2, 5.0, 0.5)
    # The pipeline's droop (what the real-time loop runs) has the knee: 5 % of the share
    # at 49.80 Hz, 100 % at 49.50 Hz.
    droop = ctl.units["u1"].pipeline.droop
    share = ctl.units["u1"].participation_kw
    assert droop.droop_kw(49.8) == pytest.approx(0.05 * share)
    assert droop.droop_kw(49.5) == pytest.approx(share)
    # And back to the straight droop.
    asyncio.run(ctl.command("set_droop", {"unit": "u1", "droop_percent": 5.0}))
    assert ctl.units["u1"].pipeline.droop.droop_kw(49.8) == pytest.approx(0.1 * share / 2.5)


@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(), st.integers(0, 2000))
def test_check_schedule_accepts_only_what_makes_sense(start: float, block: float, n: int) -> None:
    now = 1_763_700_000.0
    lim = CommandLimits()
    try:
        end = cm.check_schedule(now + start, block, [0.0] * n, limits=lim, rating_kw=RATED,
                                now=now, where="t")  # fmt: skip
    except CommandError:
        return
    assert lim.schedule_block_min_s <= block <= lim.schedule_block_max_s
    assert 1 <= n <= lim.schedule_max_blocks or n == 0
    assert -lim.schedule_max_age_s <= start <= lim.schedule_max_lead_s
    assert math.isfinite(end) and end > now


def test_the_campus_refuses_targets_and_schedules_beyond_the_site(ipc_dir: Any) -> None:
    site = SiteConfig(field=[FieldConfig(id="f", units=[unit("u1"), unit("u2")])])
    topo = Topology.build(BusSection(), ["f"], ipc_dir)
    campus = Campus(site, topo)
    assert campus.rating_kw == 2 * RATED

    def cmd(name: str, params: dict[str, Any]) -> s.CommandMsg:
        msg = s.make(s.Command(name=name, params=params), "test")
        assert isinstance(msg, s.CommandMsg)
        return msg

    for kw in (1e300, -1001.0):
        with pytest.raises(CommandError, match="rating"):
            asyncio.run(campus._set_target(cmd("set_target", {"kw": kw})))
    assert campus.target_kw is None
    asyncio.run(campus._set_target(cmd("set_target", {"kw": 1000.0})))
    assert campus.target_kw == 1000.0
    now = time.time()
    with pytest.raises(CommandError, match="block_s"):
        asyncio.run(campus._set_schedule(cmd("set_schedule", {"start": now, "block_s": 1e-300,
                                                              "kw": [1.0]})))  # fmt: skip
    assert campus.schedules == {}
    # A tiny block once raised in every dispatch round (floor of infinity).
    assert campus.target(now) == (1000.0, "set_target")
