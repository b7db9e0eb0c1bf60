"""Fleet state: registration, telemetry, liveness, errors, and the per-level totals
against brute-force sums over random fleets."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings

from vpp.errors import ConfigError, VppError
from vpp.orchestrator.campus.config import FleetConfig
from vpp.orchestrator.campus.fleet import LEVELS, Fleet, FleetInputError, UnknownUnitError
from vpp.validation import validate_model

from .helpers import NOW, TIMEOUT, Unit, build, units

LOC = "IN/KA/Bengaluru/north/B1/n1"


def _fleet(**kw: float) -> Fleet:
    fleet = Fleet(FleetConfig(offline_timeout_s=TIMEOUT, initial_capacity=2))
    fleet.heartbeat(
        "a", LOC, rated_charge_kw=100, rated_discharge_kw=120, energy_kwh=200, timestamp=0.0
    )
    return fleet


def _expected(us: list[Unit], level: int) -> dict[str, dict[str, float]]:
    """The totals by group, summed unit by unit."""
    out: dict[str, dict[str, float]] = {}
    for u in us:
        path = "/".join(u.location[: level + 1])
        g = out.setdefault(path, dict.fromkeys(
            ["units", "online", "dispatchable", "power_kw", "rated_charge_kw",
             "rated_discharge_kw", "available_charge_kw", "available_discharge_kw",
             "energy_kwh", "stored_kwh", "reporting_energy"], 0.0))  # fmt: skip
        online = NOW - u.seen <= TIMEOUT
        g["units"] += 1
        g["online"] += online
        g["rated_charge_kw"] += u.rated_charge
        g["rated_discharge_kw"] += u.rated_discharge
        g["energy_kwh"] += u.energy
        if online and u.telemetry is not None:
            power, soc, ch, dis, safety = u.telemetry
            g["power_kw"] += power
            g["stored_kwh"] += u.energy * soc / 100
            g["reporting_energy"] += u.energy
            if safety < 3:
                g["dispatchable"] += 1
                g["available_charge_kw"] += min(ch, u.rated_charge)
                g["available_discharge_kw"] += min(dis, u.rated_discharge)
    return out


@settings(max_examples=60, deadline=None)
@given(units())
def test_totals_at_every_level_equal_brute_force_sums(us: list[Unit]) -> None:
    fleet = build(us)
    rolled_up = fleet.totals(NOW)  # all levels at once: summed at node level, rolled up
    for level, name in enumerate(LEVELS):
        want = _expected(us, level)
        table = rolled_up[name]
        for path, w in want.items():
            g = table.paths.index(path)
            for key in ("units", "online", "power_kw", "available_charge_kw", "stored_kwh"):
                assert getattr(table, key)[g] == pytest.approx(w[key], rel=1e-9, abs=1e-9)
        got = fleet.aggregates(name, NOW)
        assert set(got) == set(want)
        for path, w in want.items():
            a = got[path]
            assert (a.level, a.path) == (name, path)
            assert a.units == w["units"] and a.online == w["online"]
            assert a.offline == w["units"] - w["online"]
            assert a.dispatchable == w["dispatchable"]
            for key in ("power_kw", "rated_charge_kw", "rated_discharge_kw",
                        "available_charge_kw", "available_discharge_kw",
                        "energy_kwh", "stored_kwh"):  # fmt: skip
                assert getattr(a, key) == pytest.approx(w[key], rel=1e-9, abs=1e-9), key
            if w["reporting_energy"] > 0:
                assert a.soc_pct == pytest.approx(100 * w["stored_kwh"] / w["reporting_energy"])
            else:
                assert math.isnan(a.soc_pct)


def test_node_level_groups_one_unit_and_country_all() -> None:
    fleet = _fleet()
    fleet.heartbeat(
        "b", "IN/KA/Mysuru/south/B2/n2", rated_charge_kw=50, rated_discharge_kw=50,
        energy_kwh=100, timestamp=0.0,
    )  # fmt: skip
    fleet.telemetry("a", 30.0, 50.0, 100.0, 120.0, "none", 1.0)
    fleet.telemetry("b", -10.0, 80.0, 40.0, 50.0, "none", 1.0)
    country = fleet.aggregates("country", 2.0)["IN"]
    assert (country.units, country.online, country.dispatchable) == (2, 2, 2)
    assert country.power_kw == 20.0
    assert country.available_charge_kw == 140.0
    assert country.available_discharge_kw == 170.0
    assert country.soc_pct == pytest.approx((200 * 50 + 100 * 80) / 300)
    assert set(fleet.aggregates("node", 2.0)) == {LOC, "IN/KA/Mysuru/south/B2/n2"}
    assert set(fleet.aggregates("state", 2.0)) == {"IN/KA"}


def test_unit_goes_offline_after_the_timeout_and_back_on_heartbeat() -> None:
    fleet = _fleet()
    fleet.telemetry("a", 0.0, 50.0, 10.0, 10.0, 0, 10.0)
    assert fleet.online(10.0 + TIMEOUT).tolist() == [True]
    assert fleet.online(10.0 + TIMEOUT + 0.01).tolist() == [False]
    agg = fleet.aggregates("campus", 20.0)["IN/KA/Bengaluru/north"]
    assert (agg.online, agg.offline, agg.dispatchable, agg.power_kw) == (0, 1, 0, 0.0)
    fleet.heartbeat(
        "a", LOC, rated_charge_kw=100, rated_discharge_kw=120, energy_kwh=200, timestamp=19.0
    )
    assert fleet.online(20.0).tolist() == [True]


def test_out_of_order_telemetry_is_dropped_and_counted() -> None:
    fleet = _fleet()
    assert fleet.telemetry("a", 5.0, 50.0, 10.0, 10.0, 0, 10.0) is True
    assert fleet.telemetry("a", 7.0, 40.0, 10.0, 10.0, 0, 9.0) is False
    assert fleet.out_of_order == 1
    assert fleet.power[fleet.slot("a")] == 5.0


def test_growth_removal_and_slot_reuse() -> None:
    fleet = Fleet(FleetConfig(initial_capacity=1))
    for i in range(9):
        fleet.heartbeat(
            f"u{i}", f"IN/S/C/K/B/n{i}", rated_charge_kw=1, rated_discharge_kw=1,
            energy_kwh=1, timestamp=0.0,
        )  # fmt: skip
        fleet.telemetry(f"u{i}", float(i), 50.0, 1.0, 1.0, 0, 0.0)
    assert len(fleet) == 9 and len(fleet.power) >= 9
    assert fleet.aggregates("country", 0.0)["IN"].power_kw == sum(range(9))
    slot = fleet.slot("u3")
    fleet.remove("u3")
    assert "u3" not in fleet
    assert fleet.aggregates("country", 0.0)["IN"].units == 8
    assert "IN/S/C/K/B/n3" not in fleet.aggregates("node", 0.0)
    fleet.heartbeat(
        "new", "IN/S/C/K/B/x", rated_charge_kw=1, rated_discharge_kw=1, energy_kwh=1,
        timestamp=0.0,
    )  # fmt: skip
    assert fleet.slot("new") == slot
    assert fleet.aggregates("country", 0.0)["IN"].power_kw == sum(range(9)) - 3
    assert fleet.aggregates("country", 0.0)["IN"].dispatchable == 8  # "new": no telemetry


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"location": "IN/KA/B1/n1"}, "location"),
        ({"location": "IN//x/y/z/n"}, "location"),
        ({"rated_charge_kw": -1.0}, "rated_charge_kw"),
        ({"rated_discharge_kw": math.nan}, "rated_discharge_kw"),
        ({"energy_kwh": 0.0}, "energy_kwh"),
        ({"efficiency": 1.5}, "efficiency"),
        ({"timestamp": math.inf}, "timestamp"),
        ({"unit_id": ""}, "unit"),
        ({"energy_kwh": "100"}, "energy_kwh"),
        ({"efficiency": None}, "efficiency"),
        ({"rated_charge_kw": True}, "rated_charge_kw"),
    ],
)
def test_bad_heartbeat_is_refused_with_the_field(kwargs: dict[str, object], field: str) -> None:
    fleet = Fleet()
    args: dict[str, object] = {
        "unit_id": "a", "location": LOC, "rated_charge_kw": 1.0, "rated_discharge_kw": 1.0,
        "energy_kwh": 1.0, "efficiency": 0.9, "timestamp": 0.0,
    }  # fmt: skip
    args.update(kwargs)
    with pytest.raises(FleetInputError) as info:
        fleet.heartbeat(**args)  # type: ignore[arg-type]
    assert isinstance(info.value, VppError) and isinstance(info.value, ValueError)
    assert info.value.field == field
    assert fleet.errors[field] == 1
    assert len(fleet) == 0


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ((0.0, 101.0, 1.0, 1.0, 0), "soc_pct"),
        ((0.0, math.nan, 1.0, 1.0, 0), "soc_pct"),
        ((0.0, 50.0, -1.0, 1.0, 0), "charge_limit_kw"),
        ((0.0, 50.0, 1.0, math.inf, 0), "discharge_limit_kw"),
        ((math.nan, 50.0, 1.0, 1.0, 0), "power_kw"),
        ((0.0, 50.0, 1.0, 1.0, "tripped"), "safety"),
        ((0.0, 50.0, 1.0, 1.0, 5), "safety"),
        ((0.0, 50.0, 1.0, 1.0, None), "safety"),
        ((0.0, "50", 1.0, 1.0, 0), "soc_pct"),
        ((None, 50.0, 1.0, 1.0, 0), "power_kw"),
        ((0.0, 50.0, [1.0], 1.0, 0), "charge_limit_kw"),
    ],
)
def test_bad_telemetry_is_refused_and_keeps_the_last_values(
    values: tuple[float, float, float, float, int | str], field: str
) -> None:
    fleet = _fleet()
    fleet.telemetry("a", 3.0, 40.0, 5.0, 6.0, "reduce", 1.0)
    with pytest.raises(FleetInputError) as info:
        fleet.telemetry("a", *values, timestamp=2.0)
    assert info.value.field == field and info.value.unit == "a"
    assert field in str(info.value) and "'a'" in str(info.value)
    s = fleet.slot("a")
    assert (fleet.power[s], fleet.soc[s], fleet.safety[s], fleet.telemetry_time[s]) == (
        3.0, 40.0, 2, 1.0,
    )  # fmt: skip
    assert fleet.errors[field] == 1


def test_a_unit_that_moves_is_counted_at_its_new_location_only() -> None:
    fleet = _fleet()
    fleet.telemetry("a", 10.0, 50.0, 1.0, 1.0, 0, 1.0)
    fleet.heartbeat(
        "a", "IN/KA/Bengaluru/north/B2/n1", rated_charge_kw=100, rated_discharge_kw=120,
        energy_kwh=200, timestamp=1.5,
    )  # fmt: skip
    buildings = fleet.aggregates("building", 2.0)
    assert set(buildings) == {"IN/KA/Bengaluru/north/B2"}
    assert buildings["IN/KA/Bengaluru/north/B2"].power_kw == 10.0
    assert fleet.aggregates("campus", 2.0)["IN/KA/Bengaluru/north"].units == 1


def test_telemetry_of_an_unknown_unit() -> None:
    fleet = _fleet()
    with pytest.raises(UnknownUnitError) as info:
        fleet.telemetry("ghost", 0.0, 50.0, 1.0, 1.0, 0, 1.0)
    assert isinstance(info.value, LookupError) and info.value.field == "unit"
    assert fleet.errors["unit"] == 1


def test_unknown_level_and_no_level() -> None:
    with pytest.raises(ValueError, match="region"):
        _fleet().aggregates("region", 0.0)
    assert _fleet().totals(0.0, ()) == {}
    assert Fleet().aggregates("campus", 0.0) == {}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"offline_timeout_s": 0}, "offline_timeout_s"),
        ({"offline_timeout_s": "soon"}, "offline_timeout_s"),
        ({"initial_capacity": 0}, "initial_capacity"),
        ({"timeout": 3}, "timeout"),
    ],
)
def test_fleet_config_errors_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_model(FleetConfig, data, "FleetConfig", "campus.fleet")
    assert info.value.field == f"campus.fleet.{field}"
    assert field in str(info.value)


def test_fleet_config_defaults() -> None:
    cfg = validate_model(FleetConfig, {"offline_timeout_s": 2.5}, "FleetConfig")
    assert (cfg.offline_timeout_s, cfg.initial_capacity) == (2.5, 1024)
