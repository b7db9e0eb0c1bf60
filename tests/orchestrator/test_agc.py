"""The AGC handler: its safety rules as properties over generated sequences of set-points,
fleet states and times, and the statuses it reports in plain cases."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.orchestrator.grid.agc import AgcConfig, AgcHandler, AgcInputError, AgcStep, FleetState

T0 = 1_763_700_000.0
EXAMPLES = int(os.environ.get("VPP_PROPERTY_EXAMPLES_AGC", "200"))
EPS = 1e-6

configs = st.builds(
    AgcConfig,
    reserved_up_mw=st.floats(0, 50),
    reserved_down_mw=st.floats(0, 50),
    ramp_mw_per_min=st.floats(0.1, 200),
    soc_min_pct=st.floats(0, 45),
    soc_max_pct=st.floats(55, 100),
    soc_horizon_s=st.floats(60, 7200),
    timeout_s=st.floats(1, 60),
)
socs = st.one_of(st.floats(0, 100), st.just(math.nan))
fleets = st.builds(
    FleetState,
    up_mw=st.one_of(st.floats(0, 100), st.just(math.nan)),
    down_mw=st.one_of(st.floats(0, 100), st.just(math.nan)),
    soc_pct=socs,
    energy_mwh=st.floats(0, 200),
    schedule_mw=st.floats(-50, 50),
)


@dataclass(frozen=True)
class Event:
    """What happens before one step: time passes, maybe a set-point, a fleet state."""

    dt: float
    setpoint: float | None
    fleet: FleetState


events = st.builds(
    Event,
    dt=st.one_of(st.floats(0, 60), st.just(4.0)),
    setpoint=st.one_of(st.none(), st.floats(-100, 100)),
    fleet=fleets,
)


def _within_soc(cfg: AgcConfig, fleet: FleetState, step: AgcStep) -> None:
    """Held for up to the horizon, the schedule plus an offset that adds discharge (or
    charge) leaves the SOC inside the band it started inside (the offset is never what
    pushes it out)."""
    soc, energy = fleet.soc_pct, fleet.energy_mwh
    if not (math.isfinite(soc) and energy > 0):
        assert step.offset_mw == 0.0  # no SOC: no energy to spend
        return
    net = fleet.schedule_mw + step.offset_mw
    after = soc - net * cfg.soc_horizon_s / 3600.0 / energy * 100.0
    if step.offset_mw > EPS and soc >= cfg.soc_min_pct:
        assert after >= cfg.soc_min_pct - 1e-6
    if step.offset_mw < -EPS and soc <= cfg.soc_max_pct:
        assert after <= cfg.soc_max_pct + 1e-6


@settings(max_examples=EXAMPLES, deadline=None)
@given(cfg=configs, seq=st.lists(events, min_size=1, max_size=60))
def test_offset_stays_in_the_reserve_ramps_and_spares_the_soc(
    cfg: AgcConfig, seq: list[Event]
) -> None:
    agc = AgcHandler(cfg)
    t, prev = T0, 0.0
    last_sp = -math.inf
    for ev in seq:
        t += ev.dt
        if ev.setpoint is not None:
            agc.setpoint(t, ev.setpoint)
            last_sp = t
        step = agc.step(t, ev.fleet)
        new = step.offset_mw
        # The reserve: never more than was reserved each way.
        assert -cfg.reserved_down_mw - EPS <= new <= cfg.reserved_up_mw + EPS
        assert step.low_mw <= new <= step.high_mw
        # The ramp, unless a hard limit cut the offset toward zero (to that limit).
        room = cfg.ramp_mw_per_min / 60.0 * ev.dt
        if abs(new - prev) > room + EPS:
            assert abs(new) < abs(prev) and new * prev >= 0
            assert new in (step.low_mw, step.high_mw)
        _within_soc(cfg, ev.fleet, step)
        # A stale or missing set-point: the offset only goes toward zero, and says so.
        if t - last_sp > cfg.timeout_s:
            assert step.status == "stale" and step.setpoint_mw is None
            assert abs(new) <= abs(prev) + EPS and new * prev >= 0
            assert step.requested_mw == 0.0
        prev = new


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    cfg=configs,
    soc0=st.floats(0, 100),
    energy=st.floats(0.1, 100),
    seq=st.lists(st.tuples(st.floats(0.5, 60), st.floats(-100, 100)), min_size=1,
                 max_size=80),
)  # fmt: skip
def test_a_plant_that_follows_the_offset_keeps_its_soc_in_the_band(
    cfg: AgcConfig, soc0: float, energy: float, seq: list[tuple[float, float]]
) -> None:
    # The plant delivers the offset exactly over each step (schedule 0): the SOC that
    # started inside the band stays there, and one outside it is never pushed further.
    agc = AgcHandler(cfg)
    t, soc = T0, soc0
    for dt, sp in seq:
        agc.setpoint(t, sp)
        step = agc.step(t, FleetState(1e3, 1e3, soc, energy, 0.0))
        before = soc
        soc -= step.offset_mw * dt / 3600.0 / energy * 100.0
        if cfg.soc_min_pct <= before:
            assert soc >= cfg.soc_min_pct - 1e-6
        else:
            assert step.offset_mw <= 0.0
        if before <= cfg.soc_max_pct:
            assert soc <= cfg.soc_max_pct + 1e-6
        else:
            assert step.offset_mw >= 0.0
        t += dt


@settings(max_examples=EXAMPLES, deadline=None)
@given(cfg=configs, sp=st.floats(-100, 100), hold=st.integers(1, 40))
def test_a_stale_setpoint_decays_to_zero_at_the_ramp(cfg: AgcConfig, sp: float,
                                                    hold: int) -> None:  # fmt: skip
    agc = AgcHandler(cfg)
    fleet = FleetState(1e3, 1e3, 50.0, 1e4, 0.0)
    t = T0
    agc.setpoint(t, sp)
    for _ in range(hold):
        t += 0.25 * cfg.timeout_s  # set-points stop coming after the first
        agc.step(t, fleet)
    offset = agc.offset_mw
    # From the step it goes stale, at most |offset| / ramp to zero; after that it stays.
    t = max(t, T0 + cfg.timeout_s + 1e-3)
    agc.step(t, fleet)
    t += abs(offset) / (cfg.ramp_mw_per_min / 60.0) + 1.0
    assert agc.step(t, fleet).offset_mw == 0.0
    assert agc.step(t + 100.0, fleet) == agc.last
    assert agc.last is not None and agc.last.status == "stale"


BIG = FleetState(up_mw=100.0, down_mw=100.0, soc_pct=50.0, energy_mwh=1000.0,
                 schedule_mw=0.0)  # fmt: skip


def test_a_step_is_followed_at_the_ramp_then_exactly() -> None:
    agc = AgcHandler(AgcConfig(reserved_up_mw=2.0, reserved_down_mw=2.0, ramp_mw_per_min=6))
    agc.setpoint(T0, 1.0)
    first = agc.step(T0, BIG)
    assert first.offset_mw == 0.0 and first.status == "limited_by_ramp"
    # 6 MW/min = 0.1 MW/s: 0.4 MW after one 4-second cycle, 0.8 after two, 1.0 after three.
    got = []
    for k in (1, 2, 3):
        agc.setpoint(T0 + 4 * k, 1.0)
        got.append(agc.step(T0 + 4 * k, BIG))
    assert [g.offset_mw for g in got] == pytest.approx([0.4, 0.8, 1.0])
    assert [g.status for g in got] == ["limited_by_ramp", "limited_by_ramp", "following"]
    assert got[-1].requested_mw == 1.0 and got[-1].setpoint_mw == 1.0


def test_a_request_beyond_the_reserve_or_the_fleet_is_limited_by_headroom() -> None:
    agc = AgcHandler(AgcConfig(reserved_up_mw=2.0, reserved_down_mw=1.0, ramp_mw_per_min=600))
    agc.setpoint(T0, 5.0)
    agc.step(T0, BIG)
    s = agc.step(T0 + 4, BIG)
    assert (s.offset_mw, s.status, s.requested_mw) == (2.0, "limited_by_headroom", 2.0)
    # The fleet can discharge 3 MW and the schedule already takes 2.5 of it.
    tight = FleetState(3.0, 3.0, 50.0, 1000.0, 2.5)
    s = agc.step(T0 + 8, tight)
    assert s.offset_mw == pytest.approx(0.5) and s.status == "limited_by_headroom"
    agc.setpoint(T0 + 8, -5.0)
    s = agc.step(T0 + 12, tight)
    assert s.offset_mw == -1.0 and s.status == "limited_by_headroom"


def test_a_low_soc_limits_the_upward_offset_and_says_so() -> None:
    cfg = AgcConfig(reserved_up_mw=2.0, reserved_down_mw=2.0, ramp_mw_per_min=600,
                    soc_min_pct=20, soc_horizon_s=1800)  # fmt: skip
    agc = AgcHandler(cfg)
    # 2 MWh at 25 %: 0.1 MWh above the band, to last half an hour: 0.2 MW.
    low = FleetState(100.0, 100.0, 25.0, 2.0, 0.0)
    agc.setpoint(T0, 1.0)
    agc.step(T0, low)
    s = agc.step(T0 + 4, low)
    assert s.offset_mw == pytest.approx(0.2) and s.status == "limited_by_soc"
    # Downward (charging) it may follow: the room is there.
    agc.setpoint(T0 + 4, -1.0)
    s = agc.step(T0 + 8, low)
    assert s.offset_mw == -1.0 and s.status == "following"
    # Unknown SOC: no offset at all.
    s = agc.step(T0 + 12, FleetState(100.0, 100.0, math.nan, 0.0, 0.0))
    assert s.offset_mw == 0.0 and s.status == "limited_by_soc"


def test_non_finite_setpoints_are_refused_and_keep_the_last() -> None:
    agc = AgcHandler(AgcConfig(reserved_up_mw=1.0, ramp_mw_per_min=600))
    agc.setpoint(T0, 0.5)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(AgcInputError):
            agc.setpoint(T0 + 1, bad)
    assert agc.step(T0 + 2, BIG).setpoint_mw == 0.5


def test_config_refuses_an_empty_soc_band() -> None:
    with pytest.raises(ValueError, match="soc_min_pct"):
        AgcConfig(soc_min_pct=60, soc_max_pct=40)


def test_the_schedules_own_drain_counts_against_the_soc_band() -> None:
    cfg = AgcConfig(reserved_up_mw=2.0, reserved_down_mw=2.0, ramp_mw_per_min=600,
                    soc_min_pct=20, soc_max_pct=80, soc_horizon_s=1800)  # fmt: skip
    agc = AgcHandler(cfg)
    # 0.2 MW would last the half hour; the schedule discharges 0.15 of it already.
    draining = FleetState(100.0, 100.0, 25.0, 2.0, 0.15)
    agc.setpoint(T0, 1.0)
    agc.step(T0, draining)
    assert agc.step(T0 + 4, draining).offset_mw == pytest.approx(0.05)
    # At 75 % (0.1 MWh below the top), a charging schedule of 0.15 MW leaves 0.05 MW down.
    charging = FleetState(100.0, 100.0, 75.0, 2.0, -0.15)
    agc.setpoint(T0 + 4, -1.0)
    assert agc.step(T0 + 8, charging).offset_mw == pytest.approx(-0.05)
