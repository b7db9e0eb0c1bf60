"""The battery schedule LP: known optima, every constraint recomputed, beats the heuristic."""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vpp.errors import ConfigError, VppError
from vpp.orchestrator.market import (
    BatteryParams,
    BidLimits,
    ScheduleError,
    greedy_schedule,
    optimise,
    round_schedule,
)
from vpp.validation import validate_model

DT = 0.25


def prices(seed: int, n: int = 96) -> list[float]:
    """A two-peak day with noise, Rs/MWh on the 1-rupee tick."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / n
    p = 4000 + 2500 * np.sin(2 * np.pi * 2 * t + seed) + rng.normal(0, 600, n)
    return [float(x) for x in np.clip(np.round(p), 0, 10_000)]


def big(**kw: float | None) -> BatteryParams:
    base: dict[str, float | None] = dict(
        p_charge_max_mw=10.0, p_discharge_max_mw=8.0, soc_min_mwh=2.0, soc_max_mwh=20.0,
        soc_initial_mwh=10.0, eta_charge=0.95, eta_discharge=0.92, degradation_rs_mwh=150.0,
        reserve_mw=2.0, reserve_duration_h=0.5,
    )  # fmt: skip
    base.update(kw)
    return BatteryParams(**base)  # type: ignore[arg-type]


def replay(net: tuple[float, ...], b: BatteryParams) -> list[float]:
    """SOC at every boundary, computed here independently of the package."""
    soc = [b.soc_initial_mwh]
    for p in net:
        energy = p * DT
        soc.append(soc[-1] - (energy / b.eta_discharge if p > 0 else energy * b.eta_charge))
    return soc


def assert_feasible(net: tuple[float, ...], b: BatteryParams) -> None:
    r, h = b.reserve_mw, b.reserve_duration_h
    for p in net:
        assert p <= b.p_discharge_max_mw - r + 1e-6
        assert -p <= b.p_charge_max_mw - r + 1e-6
    soc = replay(net, b)
    lo = b.soc_min_mwh + r * h / b.eta_discharge
    hi = b.soc_max_mwh - r * h * b.eta_charge
    for s in soc[1:]:
        assert lo - 1e-6 <= s <= hi + 1e-6
    if b.soc_final_mwh is not None:
        assert soc[-1] >= b.soc_final_mwh - 1e-6


def test_two_block_optimum_by_hand() -> None:
    # Charge 4 MW x 0.25 h = 1 MWh at Rs 1000, store 0.9; deliver 0.81 MWh at Rs 5000.
    b = BatteryParams(p_charge_max_mw=4, p_discharge_max_mw=4, soc_max_mwh=1,
                      soc_initial_mwh=0, eta_charge=0.9, eta_discharge=0.9,
                      degradation_rs_mwh=100)  # fmt: skip
    s = optimise([1000, 5000], b)
    assert s.net_mw == pytest.approx((-4.0, 3.24))
    assert s.soc_mwh == pytest.approx((0.0, 0.9, 0.0), abs=1e-9)
    assert s.revenue_rs == pytest.approx(5000 * 0.81 - 1000 * 1.0 - 100 * 1.81)  # 2869


def test_lossless_optimum_and_no_trade_when_the_spread_does_not_pay() -> None:
    b = BatteryParams(p_charge_max_mw=4, p_discharge_max_mw=4, soc_max_mwh=1,
                      soc_initial_mwh=0, eta_charge=1, eta_discharge=1)  # fmt: skip
    assert optimise([1000, 5000], b).revenue_rs == pytest.approx(4000.0)
    # Spread Rs 100/MWh, round-trip degradation Rs 200/MWh: stay idle.
    costly = b.model_copy(update={"degradation_rs_mwh": 100.0})
    s = optimise([1000, 1100], costly)
    assert s.net_mw == (0.0, 0.0)
    assert s.revenue_rs == 0.0


def test_a_full_battery_sells_in_the_dearest_blocks_first() -> None:
    b = BatteryParams(p_charge_max_mw=4, p_discharge_max_mw=4, soc_max_mwh=1,
                      soc_initial_mwh=1, eta_charge=1, eta_discharge=1)  # fmt: skip
    s = optimise([3000, 7000, 2000, 6000], b)
    assert s.net_mw == pytest.approx((0.0, 4.0, -4.0, 4.0))
    assert s.revenue_rs == pytest.approx(7000 - 2000 + 6000)


@pytest.mark.parametrize("seed", range(6))
def test_every_constraint_holds_before_and_after_rounding(seed: int) -> None:
    b = big(soc_final_mwh=10.0)
    s = optimise(prices(seed), b)
    assert len(s.net_mw) == 96 and len(s.soc_mwh) == 97
    assert_feasible(s.net_mw, b)
    assert s.soc_mwh == pytest.approx(replay(s.net_mw, b))
    r = round_schedule(s, b)
    assert_feasible(r.net_mw, b)
    assert all(math.isclose(p * 10, round(p * 10), abs_tol=1e-9) for p in r.net_mw)
    assert all(p == 0 or abs(p) >= 0.1 - 1e-9 for p in r.net_mw)
    # Rounding to 0.1 MW costs little: a few blocks' worth of 0.05 MW at most.
    assert r.revenue_rs <= s.revenue_rs + 1e-6
    assert r.revenue_rs >= s.revenue_rs - 96 * 0.05 * DT * 10_000


@pytest.mark.parametrize("seed", range(6))
def test_lp_beats_the_threshold_heuristic(seed: int) -> None:
    b = big()
    p = prices(seed)
    lp, naive = optimise(p, b), greedy_schedule(p, b)
    assert_feasible(naive.net_mw, b)
    assert lp.revenue_rs >= naive.revenue_rs - 1e-6
    assert lp.revenue_rs > 0


def test_reserve_holds_back_power_and_energy() -> None:
    # Prices that reward emptying and filling flat out.
    p = [100.0] * 24 + [9000.0] * 24 + [100.0] * 24 + [9000.0] * 24
    free = big(reserve_mw=0.0, reserve_duration_h=0.0)
    held = big(reserve_mw=3.0, reserve_duration_h=1.0)
    s_free, s_held = optimise(p, free), optimise(p, held)
    assert max(s_free.net_mw) == pytest.approx(8.0)
    assert max(s_held.net_mw) == pytest.approx(5.0)
    assert min(s_held.net_mw) == pytest.approx(-7.0)
    soc = replay(s_held.net_mw, held)
    # Enough energy to discharge 3 MW for 1 h (through eta 0.92) and to absorb 3 MW for 1 h.
    assert min(soc) == pytest.approx(2.0 + 3.0 / 0.92)
    assert max(soc) == pytest.approx(20.0 - 3.0 * 0.95)
    assert s_held.revenue_rs < s_free.revenue_rs


def test_infeasible_final_soc_and_bad_input_are_typed_errors() -> None:
    b = BatteryParams(p_charge_max_mw=1, p_discharge_max_mw=1, soc_max_mwh=10,
                      soc_initial_mwh=0, soc_final_mwh=9)  # fmt: skip
    with pytest.raises(ScheduleError, match="no feasible schedule") as e:
        optimise([1000.0, 2000.0], b)
    assert e.value.field == "battery"
    with pytest.raises(ScheduleError, match="finite"):
        optimise([1000.0, float("nan")], b)
    with pytest.raises(ScheduleError):
        optimise([], b)
    with pytest.raises(pydantic.ValidationError, match="reserve_mw exceeds"):
        big(reserve_mw=9.0)
    with pytest.raises(pydantic.ValidationError, match="soc_initial_mwh"):
        big(soc_initial_mwh=25.0)
    with pytest.raises(pydantic.ValidationError, match="does not fit"):
        big(reserve_mw=5.0, reserve_duration_h=4.0)


def test_configuration_from_a_mapping_gives_config_errors_with_the_field() -> None:
    good = {"p_charge_max_mw": 2, "p_discharge_max_mw": 2, "soc_max_mwh": 4,
            "soc_initial_mwh": 1}  # fmt: skip
    assert validate_model(BatteryParams, good, "BatteryParams").charge_limit_mw == 2.0
    with pytest.raises(ConfigError) as e:
        validate_model(BatteryParams, {**good, "eta_charge": 1.5}, "BatteryParams")
    assert e.value.field == "eta_charge" and isinstance(e.value, VppError)
    with pytest.raises(ConfigError, match="reserve_mw exceeds") as e:
        validate_model(BatteryParams, {**good, "reserve_mw": 3}, "BatteryParams")
    assert e.value.field == "BatteryParams"
    with pytest.raises(ConfigError) as e:
        validate_model(BidLimits, {"price_tick": 1}, "BidLimits")
    assert e.value.field == "price_tick"


# ---- the secondary reserve (AGC) on top of the frequency response ----


@st.composite
def reserved(draw: st.DrawFn) -> tuple[BatteryParams, list[float]]:
    """A battery holding a frequency-response reserve and an SRAS reserve up and down
    (inside an AGC band), an initial SOC inside the range they leave, and prices."""
    p = draw(st.floats(1.0, 50.0))
    e = p * draw(st.floats(1.0, 6.0))
    r = p * draw(st.floats(0.0, 0.3))
    up, down = (p * draw(st.floats(0.0, 0.3)) for _ in range(2))
    floor, ceiling = e * draw(st.floats(0.0, 0.3)), e * draw(st.floats(0.7, 1.0))
    kw = dict(p_charge_max_mw=p, p_discharge_max_mw=p, soc_min_mwh=0.1 * e, soc_max_mwh=0.9 * e,
              soc_initial_mwh=0.5 * e, eta_charge=draw(st.floats(0.8, 1.0)),
              eta_discharge=draw(st.floats(0.8, 1.0)), degradation_rs_mwh=100.0,
              reserve_mw=r, reserve_duration_h=0.25, reserve_up_mw=up, reserve_down_mw=down,
              reserve_sustain_h=draw(st.floats(0.0, 1.0)), reserve_floor_mwh=floor,
              reserve_ceiling_mwh=ceiling)  # fmt: skip
    try:
        b = BatteryParams(**kw)  # type: ignore[arg-type]
    except pydantic.ValidationError:
        assume(False)
        raise
    lo, hi = b.soc_bounds()
    initial = lo + (hi - lo) * draw(st.floats(0.0, 1.0))
    b = b.model_copy(update={"soc_initial_mwh": max(b.soc_min_mwh, min(b.soc_max_mwh, initial))})
    n = draw(st.integers(1, 96))
    return b, draw(st.lists(st.floats(0.0, 10_000.0), min_size=n, max_size=n))


def assert_reserve_kept(net: tuple[float, ...], b: BatteryParams) -> None:
    """Recomputed here from the fields, not from soc_bounds()."""
    fr = b.reserve_mw * b.reserve_duration_h
    for p in net:
        # Schedule plus reserve within the power limits, either way.
        assert p + b.reserve_mw + b.reserve_up_mw <= b.p_discharge_max_mw + 1e-6
        assert -p + b.reserve_mw + b.reserve_down_mw <= b.p_charge_max_mw + 1e-6
    floor = max(b.soc_min_mwh, b.reserve_floor_mwh or 0.0)
    ceiling = min(b.soc_max_mwh, b.reserve_ceiling_mwh or math.inf)
    for s in replay(net, b)[1:]:
        # The energy to deliver both reserves up for their hours is there, above the
        # floor; and the room to take them down, below the ceiling.
        assert s - (fr + b.reserve_up_mw * b.reserve_sustain_h) / b.eta_discharge >= floor - 1e-6
        assert s + (fr + b.reserve_down_mw * b.reserve_sustain_h) * b.eta_charge <= ceiling + 1e-6


@settings(max_examples=60, deadline=None)
@given(reserved())
def test_the_schedule_leaves_the_reserves_power_and_energy(case: tuple[BatteryParams, list[float]]
                                                           ) -> None:  # fmt: skip
    b, price = case
    lp = optimise(price, b)
    assert_reserve_kept(lp.net_mw, b)
    rounded = round_schedule(lp, b, BidLimits())
    if not rounded.relaxed:  # what the grid could not meet is listed, and checked apart
        assert_reserve_kept(rounded.net_mw, b)


def test_the_sras_reserve_costs_revenue_and_power() -> None:
    free = big()
    held = big(reserve_up_mw=3.0, reserve_down_mw=1.0, reserve_sustain_h=0.5,
               reserve_floor_mwh=4.0, reserve_ceiling_mwh=18.0)  # fmt: skip
    # Discharge 8 - 2 - 3, charge 10 - 2 - 1; SOC 4 + (1 + 1.5) / 0.92 .. 18 - 1.5 x 0.95.
    assert (held.discharge_limit_mw, held.charge_limit_mw) == (3.0, 7.0)
    assert held.soc_bounds() == pytest.approx((4.0 + 2.5 / 0.92, 18.0 - 1.5 * 0.95))
    s_free, s_held = optimise(prices(5), free), optimise(prices(5), held)
    assert max(s_held.net_mw) <= 3.0 + 1e-9 < max(s_free.net_mw)
    assert s_held.revenue_rs < s_free.revenue_rs
    with pytest.raises(pydantic.ValidationError, match="reserve_mw \\+ reserve_up_mw exceeds"):
        big(reserve_up_mw=6.5)
    with pytest.raises(pydantic.ValidationError, match="reserve_mw \\+ reserve_down_mw exceeds"):
        big(reserve_down_mw=8.5)
