"""Property: what a field unit writes to its inverter stays inside the safety envelope and
within the ramp, across everything that happens in operation.

Hypothesis generates segments of frames with, between them, what operation brings: a
new participation share, base power, schedule or droop settings, a restarted field
controller (a new FieldUnit), the inverter going offline and coming back, a disable and
an enable, a latch reset; and in them, the PMU misbehaving and telemetry going stale,
NaN or past its limits, the BMS falling silent. The inverter here follows what is
written to it at once and reports that power. After every write, `check_step` holds
against the setpoint in force: the previous write, or the power the inverter reported
when the controller (re)gained the unit.
"""

from __future__ import annotations

import math
import os
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.ramp import InForce, check_step
from vpp.config.models import DeviceConfig, DroopSettings, UnitConfig
from vpp.orchestrator.field.unit import FieldUnit, Schedule

RATED = 500.0
ID = 7734
T0 = 1_763_700_000.0
EXAMPLES = int(os.environ.get("VPP_PROPERTY_EXAMPLES_UNIT", "50"))


class Clock:
    """The controller's clocks, advanced by the test (a clock of its own, not a mock)."""

    def __init__(self) -> None:
        self.mono = 0.0

    def __call__(self) -> tuple[float, float]:
        return T0 + self.mono, self.mono


def unit_cfg() -> UnitConfig:
    inv = DeviceConfig(protocol="modbus_tcp", config={"host": "127.0.0.1", "port": 1},
                       poll_interval_s=0.2)  # fmt: skip
    bms = DeviceConfig(protocol="can_bms", config={"channel": "x"}, poll_interval_s=0.1)
    return UnitConfig(id="u1", rated_power_kw=RATED, capacity_kwh=1000, inverter=inv, bms=bms)


CHANGES = st.one_of(
    st.none(),
    st.tuples(st.just("base"), st.floats(-RATED, RATED)),
    st.tuples(st.just("share"), st.floats(0.0, RATED)),
    st.tuples(st.just("droop"), st.floats(1.0, 20.0), st.floats(0.01, 0.5)),
    st.tuples(
        st.just("schedule"),
        st.floats(1.0, 30.0),
        st.lists(st.floats(-RATED, RATED), min_size=1, max_size=20),
    ),
    st.tuples(st.just("restart")),
    st.tuples(st.just("offline"), st.integers(1, 100)),
    st.tuples(st.just("disable"), st.integers(1, 100)),
    st.tuples(st.just("reset")),
)
segment = st.fixed_dictionaries(
    {
        "frames": st.integers(150, 250),
        "freq": st.sampled_from(["nominal", "low", "high", "noise", "implausible", "late"]),
        "tel": st.sampled_from(
            ["fresh", "stale", "nan", "soc_low", "hot", "critical", "bms_silent", "missing"]
        ),
        "change": CHANGES,
        "seed": st.integers(0, 2**32 - 1),
    }
)

steps_made = 0


class Site:
    """One unit, its inverter, and the invariant checked on every write."""

    def __init__(self, start_kw: float) -> None:
        self.clock = Clock()
        self.inverter_kw = start_kw  # what the inverter runs at (a restart finds it so)
        self.unit = self._new_unit()
        self.in_force: InForce | None = None
        self.t = T0
        self.writes = 0

    def _new_unit(self) -> FieldUnit:
        u = FieldUnit(unit_cfg(), clock=self.clock)
        u.online = None
        return u

    def status(self, mode: str) -> None:
        st_: dict[str, float | bool | str] = {
            "active_power": self.inverter_kw, "dc_voltage": 792.0, "dc_current": 0.0,
            "soc": 50.0, "temperature_max": 25.0, "temperature_min": 24.0,
        }  # fmt: skip
        if mode == "nan":
            st_["temperature_max"] = math.nan
        elif mode == "soc_low":
            st_["soc"] = 3.0
        elif mode == "hot":
            st_["temperature_max"] = 50.0
        elif mode == "critical":
            st_["temperature_max"] = 80.0
        elif mode == "missing":
            del st_["dc_voltage"]
        u = self.unit
        was_pending = u.resume_pending
        if u.online is not True:
            u.resume()
            u.online = True
        u.on_status(st_)
        if was_pending and not u.resume_pending:
            # Anchored: the ramp runs from the power the inverter reported.
            self.in_force = InForce(min(max(self.inverter_kw, -RATED), RATED), self.clock.mono)

    def bms(self) -> None:
        wall = self.clock()[0]
        self.unit.on_bms_status({"cell_v_min": 3.30, "cell_v_max": 3.31, "temp_max_c": 25.0,
                                 "temp_min_c": 24.0, "data_time": wall})  # fmt: skip

    def decide(self, f: float, dt_pmu: float, what: str) -> None:
        self.clock.mono += 0.02
        ft = self.t + dt_pmu
        d = self.unit.on_frame(ft, f, math.nan, 0, ID)
        if d is None:
            return
        self.t = max(self.t, d.time)
        global steps_made
        steps_made += 1
        if not self.unit.writable:
            return
        assert self.in_force is not None, "a write before the ramp was anchored"
        check_step(self.in_force, d, self.clock.mono, RATED, what)
        self.in_force = InForce(d.setpoint_kw, self.clock.mono)
        self.inverter_kw = d.setpoint_kw
        self.writes += 1

    def change(self, change: tuple[Any, ...] | None) -> int:
        """Apply a change; returns for how many frames the unit stays away (0: none)."""
        if change is None:
            return 0
        u, kind = self.unit, change[0]
        if kind == "base":
            u.set_base(change[1])
        elif kind == "share":
            u.set_participation(change[1])
        elif kind == "droop":
            band = change[2]
            u.set_droop(DroopSettings(droop_percent=change[1], deadband_low_hz=50.0 - band,
                                      deadband_high_hz=50.0 + band))  # fmt: skip
        elif kind == "schedule":
            wall = self.clock()[0]
            u.set_schedule(Schedule(wall - 0.5, change[1], tuple(change[2])))
        elif kind == "restart":
            self.unit = self._new_unit()
            self.in_force = None
        elif kind == "offline":
            u.online = False
            return int(change[1])
        elif kind == "disable":
            u.enabled = False
            return -int(change[1])
        elif kind == "reset":
            u.reset_safety()
        return 0


def run_scenario(start_kw: float, segments: list[dict[str, Any]]) -> None:
    site = Site(start_kw)
    for seg in segments:
        rng = random.Random(seg["seed"])
        away = site.change(seg["change"])
        mode, what = seg["tel"], f"{seg['freq']}/{seg['tel']}/{seg['change']}"
        for k in range(seg["frames"]):
            if away > 0 and k == away:
                site.unit.online = None  # the next status brings it back
            if away < 0 and k == -away:
                site.unit.resume()  # enabled again: from the power it runs at
                site.unit.enabled = True
            if k % 10 == 0 and mode != "stale" and not (away > 0 and k < away):
                site.status(mode)
            if k % 5 == 0 and mode != "bms_silent":
                site.bms()
            f = {"nominal": 50.0, "low": 49.4, "high": 50.6}.get(seg["freq"], 50.0)
            dt = 0.02
            if seg["freq"] == "noise":
                f = 49.9 + rng.gauss(0.0, 0.3)
            elif seg["freq"] == "implausible":
                f = rng.choice([56.0, 40.0, math.nan])
            elif seg["freq"] == "late" and rng.random() < 0.3:
                dt = -rng.uniform(0.0, 1.0)
            site.decide(f, dt, what)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.floats(-RATED, RATED), st.lists(segment, min_size=15, max_size=25))
def _scenarios(start_kw: float, segments: list[dict[str, Any]]) -> None:
    run_scenario(start_kw, segments)


def test_writes_never_break_the_envelope_or_the_ramp_in_operation() -> None:
    global steps_made
    steps_made = 0
    _scenarios()
    print(f"{steps_made} decisions checked")  # shown with -s (the long run in docs)
    assert steps_made >= 100_000 * EXAMPLES // 50, steps_made


def test_a_restarted_controller_starts_from_the_reported_power() -> None:
    # Before: a restarted controller ramped from 0 (or wrote 0 before its first status),
    # a 400 kW unit was commanded to 0 at once.
    site = Site(400.0)
    site.unit.set_base(400.0)
    for _ in range(3):
        site.decide(50.0, 0.02, "before the first status")
    assert site.writes == 0
    site.status("fresh")
    site.bms()
    site.decide(50.0, 0.02, "first")
    assert site.writes == 1 and site.inverter_kw == 400.0
