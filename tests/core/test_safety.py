"""SafetyEnvelope: every check, latch and reset, stale telemetry, ramp, clamp property."""

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.core import Action, SafetyEnvelope, SafetyStatus, Telemetry, ViolationCode
from vpp.errors import ConfigError

NOW = 1_763_700_000.0
V = ViolationCode


def tel(**kw: Any) -> Telemetry:
    base: dict[str, Any] = {
        "timestamp": NOW - 0.5,
        "pack_voltage_v": 52.8,
        "current_a": 10.0,
        "cell_v_min": 3.29,
        "cell_v_max": 3.31,
        "temp_min_c": 24.0,
        "temp_max_c": 26.0,
        "soc_pct": 50.0,
        "soh_pct": 95.0,
        "bms_faults": 0,
        "power_kw": 0.0,
    }
    base.update(kw)
    if "cells" in kw:
        del base["cell_v_min"], base["cell_v_max"]
    return Telemetry(**base)


def envelope(preset: str = "lfp_16s", **limits: float) -> SafetyEnvelope:
    return SafetyEnvelope(preset, ramp_kw_per_s=math.inf, **limits)  # type: ignore[arg-type]


def test_healthy_pack_gets_the_full_range() -> None:
    s = envelope().evaluate(tel(), NOW)
    assert (s.action, s.min_kw, s.max_kw, s.violations) == (Action.NONE, -5.0, 5.0, [])


CHECKS: list[tuple[dict[str, Any], ViolationCode, Action, float, float]] = [
    ({"cell_v_min": 3.58, "cell_v_max": 3.60}, V.CELL_OVERVOLTAGE_WARN, Action.REDUCE, 0.0, 5.0),
    ({"cell_v_min": 3.64, "cell_v_max": 3.66}, V.CELL_OVERVOLTAGE_TRIP, Action.STOP, 0.0, 0.0),
    ({"cell_v_min": 2.70, "cell_v_max": 2.72}, V.CELL_UNDERVOLTAGE_WARN, Action.REDUCE, -5.0, 0.0),
    ({"cell_v_min": 2.45, "cell_v_max": 2.47}, V.CELL_UNDERVOLTAGE_TRIP, Action.STOP, 0.0, 0.0),
    ({"pack_voltage_v": 58.5}, V.PACK_OVERVOLTAGE, Action.STOP, 0.0, 0.0),
    ({"pack_voltage_v": 39.9}, V.PACK_UNDERVOLTAGE, Action.STOP, 0.0, 0.0),
    ({"current_a": -101.0}, V.CHARGE_OVERCURRENT, Action.REDUCE, 0.0, 5.0),
    ({"current_a": 101.0}, V.DISCHARGE_OVERCURRENT, Action.REDUCE, -5.0, 0.0),
    ({"temp_min_c": -0.5}, V.CHARGE_TEMPERATURE, Action.REDUCE, 0.0, 5.0),  # no charging < 0 C
    ({"temp_max_c": 46.0}, V.CHARGE_TEMPERATURE, Action.REDUCE, 0.0, 5.0),
    ({"temp_min_c": -21.0}, V.DISCHARGE_TEMPERATURE, Action.REDUCE, 0.0, 0.0),
    ({"temp_max_c": 61.0}, V.DISCHARGE_TEMPERATURE, Action.REDUCE, 0.0, 0.0),
    ({"temp_max_c": 70.0}, V.CRITICAL_TEMPERATURE, Action.EMERGENCY_SHUTDOWN, 0.0, 0.0),
    ({"cell_v_max": 3.35}, V.CELL_IMBALANCE_WARN, Action.LOG, -5.0, 5.0),
    ({"cell_v_max": 3.40}, V.CELL_IMBALANCE_TRIP, Action.REDUCE, -2.5, 2.5),
    ({"soc_pct": 5.0}, V.SOC_LOW, Action.REDUCE, -5.0, 0.0),  # charging still allowed
    ({"soc_pct": 95.0}, V.SOC_HIGH, Action.REDUCE, 0.0, 5.0),  # discharging still allowed
    ({"soh_pct": 69.0}, V.SOH_LOW, Action.REDUCE, -2.5, 2.5),
    ({"bms_faults": 0x10}, V.BMS_FAULT, Action.STOP, 0.0, 0.0),
    ({"power_kw": 6.0}, V.POWER_OUTSIDE_ENVELOPE, Action.LOG, -5.0, 5.0),
    ({"timestamp": NOW - 2.5}, V.STALE_TELEMETRY, Action.STOP, 0.0, 0.0),
    ({"timestamp": NOW + 2.5}, V.STALE_TELEMETRY, Action.STOP, 0.0, 0.0),
    ({"soc_pct": math.nan}, V.INVALID_TELEMETRY, Action.STOP, 0.0, 0.0),
    ({"current_a": math.inf}, V.INVALID_TELEMETRY, Action.STOP, 0.0, 0.0),
]


@pytest.mark.parametrize(("change", "code", "action", "lo", "hi"), CHECKS)
def test_each_check(
    change: dict[str, Any], code: ViolationCode, action: Action, lo: float, hi: float
) -> None:
    e = envelope()
    s = e.evaluate(tel(**change), NOW)
    assert s.has(code), s.violations
    assert (s.action, s.min_kw, s.max_kw) == (action, lo, hi)
    v = next(v for v in s.violations if v.code == code)
    assert v.action <= s.action
    assert e.clamp(10.0) == hi and e.clamp(-10.0) == lo


def test_violation_reports_value_and_limit() -> None:
    s = envelope().evaluate(tel(cell_v_min=3.64, cell_v_max=3.66), NOW)
    v = next(v for v in s.violations if v.code == V.CELL_OVERVOLTAGE_TRIP)
    assert (v.value, v.limit, v.action, v.code.label) == (
        3.66,
        3.65,
        Action.STOP,
        "cell_overvoltage_trip",
    )


def test_presets_differ_by_chemistry() -> None:
    nmc = tel(pack_voltage_v=64.0, cell_v_min=4.0, cell_v_max=4.01)
    assert envelope("nmc_16s").evaluate(nmc, NOW).action == Action.NONE
    assert envelope("lfp_16s").evaluate(nmc, NOW).has(V.CELL_OVERVOLTAGE_TRIP)
    lfp = envelope("lfp_16s").limits
    assert (lfp["cell_v_max_trip"], lfp["cell_v_min_trip"], lfp["pack_v_max"]) == (3.65, 2.5, 58.4)
    n = envelope("nmc_16s").limits
    assert (n["cell_v_max_trip"], n["cell_v_min_trip"], n["pack_v_max"]) == (4.2, 2.75, 67.2)
    assert n["charge_temp_min_c"] == 0.0


def test_cells_array() -> None:
    t = tel(cells=[3.30, 3.28, 3.61, 3.31])
    assert (t.cell_v_min, t.cell_v_max) == (3.28, 3.61)
    s = envelope(imbalance_trip_mv=400.0, imbalance_warn_mv=350.0).evaluate(t, NOW)
    assert s.has(V.CELL_OVERVOLTAGE_WARN)
    with pytest.raises(ConfigError):
        Telemetry(
            timestamp=NOW,
            pack_voltage_v=52.0,
            current_a=0.0,
            temp_min_c=20.0,
            temp_max_c=25.0,
            soc_pct=50.0,
        )


def test_stale_telemetry_and_bad_now_stop() -> None:
    e = envelope(stale_after_s=1.0)
    assert e.evaluate(tel(timestamp=NOW - 0.9), NOW).action == Action.NONE
    s = e.evaluate(tel(timestamp=NOW - 1.1), NOW)
    assert (s.action, s.min_kw, s.max_kw) == (Action.STOP, 0.0, 0.0)
    s = e.evaluate(tel(), math.nan)
    assert (s.action, s.min_kw, s.max_kw) == (Action.STOP, 0.0, 0.0)
    assert e.clamp(3.0) == 0.0


def test_emergency_latches_until_reset() -> None:
    e = envelope()
    s = e.evaluate(tel(temp_max_c=72.0), NOW)
    assert (s.action, s.latched, e.latched) == (Action.EMERGENCY_SHUTDOWN, True, True)
    assert not e.reset()  # condition still present
    s = e.evaluate(tel(), NOW + 1)  # condition gone, still latched
    assert (s.action, s.min_kw, s.max_kw) == (Action.EMERGENCY_SHUTDOWN, 0.0, 0.0)
    assert s.has(V.LATCHED)
    assert e.clamp(4.0) == 0.0
    assert e.reset()
    s = e.evaluate(tel(timestamp=NOW + 1.5), NOW + 2)
    assert (s.action, s.latched, s.max_kw) == (Action.NONE, False, 5.0)


def test_reset_refused_on_stale_telemetry() -> None:
    e = envelope()
    e.evaluate(tel(temp_max_c=72.0), NOW)
    e.evaluate(tel(), NOW + 10)  # stale: cannot tell whether the condition is gone
    assert not e.reset()


def test_bms_emergency_bits_latch() -> None:
    e = envelope(bms_emergency_mask=0x8000)
    s = e.evaluate(tel(bms_faults=0x8001), NOW)
    assert s.has(V.BMS_EMERGENCY) and s.latched


def test_temperature_rise_rate() -> None:
    def run(rate: float) -> Action:
        e = envelope()
        worst = Action.NONE
        for k in range(40):
            t = NOW + k * 0.5
            s = e.evaluate(tel(timestamp=t, temp_max_c=26.0 + rate * k * 0.5), t)
            worst = max(worst, s.action)
        return worst

    assert run(0.05) == Action.NONE
    assert run(0.3) == Action.EMERGENCY_SHUTDOWN


def test_power_ramp_limit() -> None:
    e = SafetyEnvelope("lfp_16s", ramp_kw_per_s=5.0)
    s = e.evaluate(tel(timestamp=NOW), NOW)
    assert (s.min_kw, s.max_kw, s.max_discharge_kw) == (0.0, 0.0, 5.0)  # starts at measured 0 kW
    assert e.clamp(5.0) == 0.0
    e.evaluate(tel(timestamp=NOW + 0.2), NOW + 0.2)
    assert e.clamp(5.0) == pytest.approx(1.0)
    e.evaluate(tel(timestamp=NOW + 0.4), NOW + 0.4)
    assert e.clamp(5.0) == pytest.approx(2.0)
    # a stop is immediate, not ramped
    e.evaluate(tel(timestamp=NOW + 0.6, bms_faults=1), NOW + 0.6)
    assert e.clamp(5.0) == 0.0


def test_clamp_nan_is_zero() -> None:
    e = envelope()
    e.evaluate(tel(soc_pct=96.0), NOW)  # range [0, 5]
    assert e.clamp(math.nan) == 0.0
    assert e.clamp(math.inf) == 5.0
    assert e.clamp(-math.inf) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cell_v_max_trip": 3.5}, "cell_v_max_trip"),
        ({"stale_after_s": 0.0}, "stale_after_s"),
        ({"soc_min_pct": 96.0}, "soc_max_pct"),
        ({"critical_temp_c": 50.0}, "critical_temp_c"),
        ({"imbalance_derate": 1.5}, "imbalance_derate"),
        ({"max_charge_kw": math.nan}, "max_charge_kw"),
        ({"charge_temp_min_c": 50.0}, "charge_temp_max_c"),
        ({"nonsense": 1.0}, "limits"),
    ],
)
def test_bad_limits(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        SafetyEnvelope("lfp_16s", **kwargs)
    assert exc.value.field == field


def test_bad_preset() -> None:
    with pytest.raises(ConfigError) as exc:
        SafetyEnvelope("lead_acid")  # type: ignore[arg-type]
    assert exc.value.field == "preset"


floats = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-200.0, 200.0)
Step = tuple[dict[str, Any], float, float, float]
steps = st.lists(
    st.tuples(
        st.fixed_dictionaries(
            {
                "pack_voltage_v": floats,
                "current_a": floats,
                "cell_v_min": floats,
                "cell_v_max": floats,
                "temp_min_c": floats,
                "temp_max_c": floats,
                "soc_pct": floats,
                "soh_pct": floats,
                "power_kw": floats,
            }
        ),
        st.floats(-1.0, 3.0) | st.sampled_from([math.nan, math.inf]),  # telemetry age
        st.floats(0.0, 1.0),  # time step
        floats,  # request
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(preset=st.sampled_from(["lfp_16s", "nmc_16s"]), seq=steps, faults=st.integers(0, 3))
def test_clamp_never_leaves_envelope(preset: str, seq: list[Step], faults: int) -> None:
    e = SafetyEnvelope(preset)  # type: ignore[arg-type]
    now = NOW
    for fields, age, dt, request in seq:
        now += dt
        t = Telemetry(timestamp=now - age, bms_faults=faults, **fields)
        s: SafetyStatus = e.evaluate(t, now)
        out = e.clamp(request)
        assert math.isfinite(out)
        assert s.min_kw <= out <= s.max_kw
        assert -s.max_charge_kw <= out <= s.max_discharge_kw
        assert -5.0 <= out <= 5.0
        if s.action >= Action.STOP:
            assert out == 0.0
