"""The plant's points from bus messages: sums, headroom, validity when data is stale."""

from __future__ import annotations

import time

import pytest

from vpp.config.loader import load
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.scada.image import PlantImage
from vpp.orchestrator.scada.points import PLANT_POINTS, UNIT_POINTS

SITE = load(None, env={})
UNITS = [u.id for u in SITE.units()]


def tel(unit: str, p_kw: float, soc: float, *, lo: float = -500.0, hi: float = 500.0,
        safety: s.SafetyState = "none", enabled: bool = True) -> s.Message:  # fmt: skip
    body = s.Telemetry(unit=unit, p_kw=p_kw, q_kvar=10.0, soc_pct=soc, temp_c=25.0,
                       limits=s.Limits(p_min_kw=lo, p_max_kw=hi), safety=safety,
                       enabled=enabled)  # fmt: skip
    return s.make(body, "field-a")


def test_every_point_is_there_and_the_sums_add_up() -> None:
    img = PlantImage(SITE)
    img.update(tel("bess-1", 200.0, 60.0, hi=400.0))
    img.update(tel("bess-2", -100.0, 40.0, lo=-300.0))
    img.update(tel("bess-3", 0.0, 50.0))
    img.update(s.make(s.Frequency(hz=49.93, band="normal", t=time.time()), "field-a"))
    agc = {"setpoint_mw": 0.3, "offset_mw": 0.1, "status": "limited_by_ramp"}
    img.update(s.make(s.Event(kind="agc", data=agc), "campus"))
    img.update(s.make(s.Event(kind="dispatch", data={"target_kw": 150.0}), "campus"))
    pts = img.points(time.time())
    names = set(PLANT_POINTS) | {f"unit.{u}.{p}" for u in UNITS for p in UNIT_POINTS}
    assert set(pts) == names
    assert pts["plant.p_mw"].value == pytest.approx(0.1)
    assert pts["plant.q_mvar"].value == pytest.approx(0.03)
    # Energy-weighted SOC of equal units: the mean.
    assert pts["plant.soc_pct"].value == pytest.approx(50.0)
    # Up: (400-200) + (500+100) + 500; down: (200+500) + (-100+300) + 500.
    assert pts["plant.up_mw"].value == pytest.approx(1.3)
    assert pts["plant.down_mw"].value == pytest.approx(1.4)
    assert pts["grid.frequency_hz"].value == pytest.approx(49.93)
    assert pts["agc.offset_mw"].value == pytest.approx(0.1)
    assert pts["agc.following"].value is False
    assert pts["plant.enabled"].value is True and pts["plant.breaker_closed"].value is True
    assert pts["plant.alarm"].value is False
    assert pts["plant.target_mw"].value == pytest.approx(0.15)
    assert [n for n, p in pts.items() if not p.valid] == []
    assert pts["unit.bess-2.p_mw"].value == pytest.approx(-0.1)


def test_a_unit_that_trips_or_is_disabled_shows_in_the_plant_points() -> None:
    img = PlantImage(SITE)
    img.update(tel("bess-1", 0.0, 60.0, safety="stop"))
    img.update(tel("bess-2", 0.0, 60.0, enabled=False))
    img.update(tel("bess-3", 0.0, 60.0))
    pts = img.points(time.time())
    assert pts["plant.alarm"].value is True
    assert pts["unit.bess-1.alarm"].value is True
    assert pts["plant.enabled"].value is False


def test_stale_data_keeps_its_last_value_marked_invalid() -> None:
    img = PlantImage(SITE)
    for u in UNITS:
        img.update(tel(u, 100.0, 50.0))
    now = time.time()
    assert img.points(now)["plant.p_mw"].value == pytest.approx(0.3)
    later = img.points(now + 60.0)
    # No unit has reported for a minute: the sums keep their last value, invalid; the
    # units are offline, the plant's breaker is open and a unit lost is an alarm.
    assert later["plant.p_mw"].value == pytest.approx(0.3) and not later["plant.p_mw"].valid
    assert later["unit.bess-1.online"].value is False
    assert later["plant.breaker_closed"].value is False
    assert later["plant.alarm"].value is True
    # Before any frequency or AGC round came, those points are invalid zeros.
    assert later["grid.frequency_hz"].valid is False
    assert later["agc.setpoint_mw"].valid is False
