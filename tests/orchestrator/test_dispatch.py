"""Dispatch strategies: exact totals, limits, shortfall, the shape of each strategy,
and exclusion of offline and stopped units."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.errors import ConfigError
from vpp.orchestrator.campus.config import STRATEGIES, DispatchConfig, FleetConfig, Strategy
from vpp.orchestrator.campus.dispatch import Dispatcher, DispatchError, allocate
from vpp.orchestrator.campus.fleet import Fleet
from vpp.validation import validate_model

from .helpers import NOW, TIMEOUT, Unit, build, units


def _caps(u: Unit) -> tuple[float, float]:
    assert u.telemetry is not None
    return min(u.telemetry[2], u.rated_charge), min(u.telemetry[3], u.rated_discharge)


def _eligible(u: Unit) -> bool:
    return NOW - u.seen <= TIMEOUT and u.telemetry is not None and u.telemetry[4] < 3


@settings(max_examples=150, deadline=None)
@given(units(), st.floats(-1.5, 1.5), st.sampled_from(STRATEGIES))
def test_totals_limits_and_shortfall(us: list[Unit], fraction: float, strategy: Strategy) -> None:
    fleet = build(us)
    eligible = [u for u in us if _eligible(u)]
    reach = sum(_caps(u)[1 if fraction > 0 else 0] for u in eligible)
    # A target inside or beyond what the eligible units can reach (fraction > 1: beyond).
    target = fraction * max(reach, 1.0)
    result = Dispatcher(fleet).dispatch(target, NOW, strategy)
    assert result.strategy == strategy
    assert result.unit_ids == [u.uid for u in eligible]
    assert set(result.excluded) == {u.uid for u in us} - {u.uid for u in eligible}
    sp = result.setpoints
    for u in eligible:
        charge, discharge = _caps(u)
        assert -charge <= sp[u.uid] <= discharge
        assert sp[u.uid] * target >= 0  # never against the target's direction
    assert result.delivered_kw == pytest.approx(sum(sp.values()), abs=1e-9)
    # Within rounding of the fleet's reach there is no shortfall (the dispatcher's rule).
    if abs(target) - reach <= 1e-9 * max(1.0, reach):
        assert abs(result.delivered_kw - target) <= 1e-6
        assert result.shortfall_kw == 0.0
    else:
        # Infeasible: every unit at its cap, and the shortfall is what is missing.
        for u in eligible:
            assert sp[u.uid] == _caps(u)[1] if target > 0 else sp[u.uid] == -_caps(u)[0]
        assert result.shortfall_kw == pytest.approx(target - math.copysign(reach, target))
        assert math.copysign(1, result.shortfall_kw) == math.copysign(1, target)


def _fleet(rows: list[tuple[str, float, float, float, float]], timeout: float = 5.0) -> Fleet:
    """Units (id, rated kW both ways, energy kWh, soc %, limit kW both ways), online at 0."""
    fleet = Fleet(FleetConfig(offline_timeout_s=timeout))
    for uid, rated, energy, soc, limit in rows:
        fleet.heartbeat(
            uid, f"IN/KA/BLR/c1/b1/{uid}", rated_charge_kw=rated, rated_discharge_kw=rated,
            energy_kwh=energy, timestamp=0.0,
        )  # fmt: skip
        fleet.telemetry(uid, 0.0, soc, limit, limit, "none", 0.0)
    return fleet


def test_proportional_splits_by_rating_and_redistributes_what_a_clipped_unit_cannot_take() -> None:
    fleet = _fleet([("a", 100, 100, 50, 100), ("b", 300, 100, 50, 300)])
    assert Dispatcher(fleet).dispatch(200.0, 0.0, "proportional").setpoints == {
        "a": 50.0, "b": 150.0,
    }  # fmt: skip
    fleet.telemetry("b", 0.0, 50.0, 300.0, 120.0, "reduce", 0.5)  # envelope: b <= 120 kW
    r = Dispatcher(fleet).dispatch(200.0, 1.0, "proportional")
    assert r.setpoints == pytest.approx({"a": 80.0, "b": 120.0})
    r = Dispatcher(fleet).dispatch(-200.0, 1.0, "proportional")  # charge limit still 300
    assert r.setpoints == pytest.approx({"a": -50.0, "b": -150.0})


def test_balanced_drives_units_to_one_soc_over_the_horizon() -> None:
    # k = E / (100 % * 0.25 h) = 4 kW per % for both units (efficiency 1).
    fleet = _fleet([("hi", 500, 100, 80, 500), ("lo", 500, 100, 60, 500)])
    d = Dispatcher(fleet, DispatchConfig(balance_horizon_h=0.25))
    assert d.dispatch(40.0, 0.0, "balanced").setpoints == pytest.approx({"hi": 40.0, "lo": 0.0})
    # 4 (80 - L) + 4 (60 - L) = 120 -> L = 55
    assert d.dispatch(120.0, 0.0, "balanced").setpoints == pytest.approx({"hi": 100.0, "lo": 20.0})
    # charging fills the low one first: 4 (L - 60) = 40 -> L = 70
    assert d.dispatch(-40.0, 0.0, "balanced").setpoints == pytest.approx({"hi": 0.0, "lo": -40.0})


def test_balanced_counts_efficiency() -> None:
    # Discharging p for 1 h takes p / eta from the cells: k = eta E / 100 = 0.5 kW per %.
    fleet = Fleet()
    for uid, soc in (("a", 90.0), ("b", 70.0)):
        fleet.heartbeat(uid, f"IN/a/b/c/d/{uid}", rated_charge_kw=100, rated_discharge_kw=100,
                        energy_kwh=100, efficiency=0.5, timestamp=0.0)  # fmt: skip
        fleet.telemetry(uid, 0.0, soc, 100.0, 100.0, 0, 0.0)
    r = Dispatcher(fleet, DispatchConfig(balance_horizon_h=1.0)).dispatch(20.0, 0.0, "balanced")
    # 0.5 (90 - L) + 0.5 (70 - L) = 20 -> L = 60
    assert r.setpoints == pytest.approx({"a": 15.0, "b": 5.0})


def test_balanced_converges_the_soc_spread() -> None:
    rng = np.random.default_rng(7)
    n, horizon = 50, 0.25
    energy = rng.uniform(50, 500, n)
    soc = rng.uniform(20, 90, n)
    fleet = _fleet([(f"u{i}", 200, energy[i], soc[i], 200) for i in range(n)], timeout=3600)
    d = Dispatcher(fleet, DispatchConfig(balance_horizon_h=horizon))
    spreads = [float(np.ptp(soc))]
    for step in range(12):
        target = 2000.0 if step % 2 == 0 else -2000.0
        r = d.dispatch(target, 0.0, "balanced")
        assert abs(r.delivered_kw - target) <= 1e-6
        soc = soc - 100 * r.setpoints_kw * horizon / energy  # efficiency 1
        for i in range(n):
            fleet.telemetry(f"u{i}", 0.0, float(soc[i]), 200.0, 200.0, 0, float(step + 1))
        spreads.append(float(np.ptp(soc)))
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(spreads))
    assert spreads[-1] < 0.2 * spreads[0]
    # and the fleet did start widely spread
    assert spreads[0] > 50


def test_priority_takes_units_in_soc_order() -> None:
    rows = [("a", 100, 100, 30, 100), ("b", 100, 100, 90, 100), ("c", 100, 100, 60, 100)]
    d = Dispatcher(_fleet(rows))
    assert d.dispatch(150.0, 0.0, "priority").setpoints == {"a": 0.0, "b": 100.0, "c": 50.0}
    assert d.dispatch(-150.0, 0.0, "priority").setpoints == {"a": -100.0, "b": 0.0, "c": -50.0}
    assert d.dispatch(250.0, 0.0, "priority").setpoints == {"a": 50.0, "b": 100.0, "c": 100.0}


def test_an_offline_unit_is_excluded_and_its_share_moves_to_the_others() -> None:
    fleet = _fleet([("a", 100, 100, 50, 100), ("b", 100, 100, 50, 100), ("c", 100, 100, 50, 100)])
    d = Dispatcher(fleet)
    assert d.dispatch(150.0, 1.0).setpoints == pytest.approx({"a": 50, "b": 50, "c": 50})
    for uid in ("a", "b"):
        fleet.telemetry(uid, 50.0, 50.0, 100.0, 100.0, 0, 4.0)  # c stays silent
    r = d.dispatch(150.0, 6.0)
    assert r.excluded == {"c": "offline"}
    assert r.setpoints == pytest.approx({"a": 75.0, "b": 75.0})
    r = d.dispatch(250.0, 6.0)  # more than a and b can do
    assert r.setpoints == {"a": 100.0, "b": 100.0} and r.shortfall_kw == 50.0


def test_units_without_telemetry_or_stopped_by_safety_are_excluded() -> None:
    fleet = _fleet([("a", 100, 100, 50, 100), ("b", 100, 100, 50, 100), ("c", 100, 100, 50, 100)])
    fleet.heartbeat("d", "IN/KA/BLR/c1/b1/d", rated_charge_kw=100, rated_discharge_kw=100,
                    energy_kwh=100, timestamp=0.0)  # fmt: skip
    fleet.telemetry("b", 0.0, 50.0, 100.0, 100.0, "stop", 0.5)
    fleet.telemetry("c", 0.0, 50.0, 100.0, 100.0, "emergency_shutdown", 0.5)
    for strategy in STRATEGIES:
        r = Dispatcher(fleet).dispatch(-80.0, 1.0, strategy)
        assert r.excluded == {
            "b": "safety stop", "c": "safety emergency_shutdown", "d": "no telemetry",
        }  # fmt: skip
        assert r.setpoints == {"a": -80.0}


def test_zero_target_and_empty_fleet() -> None:
    d = Dispatcher(_fleet([("a", 100, 100, 50, 100)]))
    for strategy in STRATEGIES:
        r = d.dispatch(0.0, 0.0, strategy)
        assert r.setpoints == {"a": 0.0} and r.shortfall_kw == 0.0
    r = Dispatcher(Fleet()).dispatch(10.0, 0.0, "balanced")
    assert (r.unit_ids, r.delivered_kw, r.shortfall_kw) == ([], 0.0, 10.0)


def test_default_strategy_comes_from_the_config() -> None:
    rows = [("a", 100, 100, 10, 100), ("b", 100, 100, 90, 100)]
    r = Dispatcher(_fleet(rows), DispatchConfig(default_strategy="priority")).dispatch(50.0, 0.0)
    assert r.strategy == "priority" and r.setpoints == {"a": 0.0, "b": 50.0}


@pytest.mark.parametrize("unit_kw", [250.0, 2500.0])
def test_exact_total_over_10000_units(unit_kw: float) -> None:
    rng = np.random.default_rng(3)
    n = 10_000
    cap = rng.uniform(0, unit_kw, n)
    args = {
        "cap": cap, "rating": rng.uniform(1, unit_kw, n), "soc": rng.uniform(0, 100, n),
        "energy": rng.uniform(10, 1000, n), "efficiency": rng.uniform(0.8, 1, n),
    }  # fmt: skip
    for strategy in STRATEGIES:
        for target in (0.3, 1234.567, float(cap.sum()) * 0.999999):
            p = allocate(strategy, target, **args)  # type: ignore[arg-type]
            assert abs(float(p.sum()) - target) <= 1e-6, (strategy, target)
            assert np.all(p >= 0) and np.all(p <= cap)


@pytest.mark.parametrize(
    ("target", "strategy", "field"),
    [(math.nan, "balanced", "target_kw"), (math.inf, "priority", "target_kw"),
     (1.0, "random", "strategy")],
)  # fmt: skip
def test_bad_requests_are_refused(target: float, strategy: str, field: str) -> None:
    with pytest.raises(DispatchError) as info:
        Dispatcher(Fleet()).dispatch(target, 0.0, strategy)  # type: ignore[arg-type]
    assert info.value.field == field and isinstance(info.value, ValueError)


def test_allocate_refuses_a_capped_unit_without_rating() -> None:
    one = np.ones(2)
    with pytest.raises(DispatchError) as info:
        allocate("proportional", 1.0, cap=one, rating=np.array([1.0, 0.0]), soc=one,
                 energy=one, efficiency=one)  # fmt: skip
    assert info.value.field == "rating"


@pytest.mark.parametrize(
    ("data", "field"),
    [({"default_strategy": "greedy"}, "default_strategy"),
     ({"balance_horizon_h": 0}, "balance_horizon_h"), ({"horizon": 1}, "horizon")],
)  # fmt: skip
def test_dispatch_config_errors_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_model(DispatchConfig, data, "DispatchConfig", "campus.dispatch")
    assert info.value.field == f"campus.dispatch.{field}"
