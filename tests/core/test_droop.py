"""DroopController: continuity, slope, limits, timestamp ramp, derating, inertia, bad input."""

import math

import numpy as np
import pytest

from vpp.core import DroopController
from vpp.errors import ConfigError

P_MAX = 100.0  # kW


def fast(**kw: float) -> DroopController:
    return DroopController(p_max_kw=P_MAX, ramp_kw_per_s=math.inf, **kw)


def test_zero_inside_deadband_and_continuous_at_edges() -> None:
    d = fast()
    for f in np.linspace(49.90, 50.05, 31):
        assert d.droop_kw(float(f)) == 0.0
    for edge in (49.90, 50.05):
        for eps in (1e-3, 1e-6, 1e-9):
            assert abs(d.droop_kw(edge - eps)) <= 40.0 * eps + 1e-9
            assert abs(d.droop_kw(edge + eps)) <= 40.0 * eps + 1e-9


@pytest.mark.parametrize("droop_percent", [3.0, 5.0, 10.0])
def test_slope_and_sign(droop_percent: float) -> None:
    d = fast(droop_percent=droop_percent)
    gain = P_MAX / (droop_percent / 100.0) / 50.0  # kW per Hz
    # low frequency -> discharge (positive); high -> charge (negative)
    assert d.droop_kw(49.80) == pytest.approx(gain * 0.10)
    assert d.droop_kw(50.15) == pytest.approx(-gain * 0.10)
    f = np.linspace(49.0, 49.85, 10)
    p = np.array([d.droop_kw(float(x)) for x in f])
    assert np.allclose(np.diff(p) / np.diff(f), -gain)
    # full power R * f_nom beyond the edge
    full = 49.90 - droop_percent / 100.0 * 50.0
    assert d.droop_kw(full) == pytest.approx(P_MAX)


def test_asymmetric_limits() -> None:
    d = fast(max_charge_kw=30.0, max_discharge_kw=60.0)
    assert d.update(0.0, 47.0, soc_pct=50.0, temp_c=25.0).target_kw == 60.0
    assert d.update(1.0, 53.0, soc_pct=50.0, temp_c=25.0).target_kw == -30.0
    o = d.update(2.0, 49.85, soc_pct=50.0, temp_c=25.0)
    assert o.target_kw == pytest.approx(2.0) and o.output_kw == pytest.approx(2.0)


@pytest.mark.parametrize("fps", [10, 25, 50])
def test_ramp_is_the_same_at_any_frame_rate(fps: int) -> None:
    d = DroopController(p_max_kw=P_MAX, ramp_kw_per_s=20.0)
    t0 = 1_763_700_000.0
    seen = {}
    for k in range(4 * fps + 1):
        o = d.update(t0 + k / fps, 48.0, soc_pct=50.0, temp_c=25.0)
        assert o.target_kw == pytest.approx(76.0)  # 1.9 Hz x 40 kW/Hz
        if k % fps == 0:
            seen[k // fps] = o.output_kw
    assert seen == pytest.approx({0: 0.0, 1: 20.0, 2: 40.0, 3: 60.0, 4: 76.0})


def test_ramp_uses_timestamps_across_missing_frames() -> None:
    d = DroopController(p_max_kw=P_MAX, ramp_kw_per_s=10.0)
    d.update(0.0, 48.0, soc_pct=50.0, temp_c=25.0)
    assert d.update(2.5, 48.0, soc_pct=50.0, temp_c=25.0).output_kw == pytest.approx(25.0)
    # an out-of-order timestamp holds the output and is counted
    assert d.update(2.0, 48.0, soc_pct=50.0, temp_c=25.0).output_kw == pytest.approx(25.0)
    assert d.invalid_count == 1


def test_default_ramp_is_p_max_per_second() -> None:
    d = DroopController(p_max_kw=P_MAX)
    d.update(0.0, 40.0, soc_pct=50.0, temp_c=25.0)
    assert d.update(0.5, 40.0, soc_pct=50.0, temp_c=25.0).output_kw == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("f", "soc", "temp", "factor"),
    [
        (49.0, 50.0, 25.0, 1.0),
        (49.0, 20.0, 25.0, 1.0),  # at the low knee
        (49.0, 15.0, 25.0, 0.5),  # halfway from knee (20) to min (10)
        (49.0, 10.0, 25.0, 0.0),
        (49.0, 5.0, 25.0, 0.0),
        (51.0, 10.0, 25.0, 1.0),  # charging at low SOC is not derated
        (51.0, 95.0, 25.0, 0.5),  # halfway from high knee (90) to max (100)
        (51.0, 100.0, 25.0, 0.0),
        (49.0, 50.0, 50.0, 0.5),  # halfway from temp knee (45) to max (55)
        (51.0, 50.0, 55.0, 0.0),
        (49.0, 15.0, 50.0, 0.25),  # SOC and temperature multiply
        (49.0, math.nan, 25.0, 0.0),  # unknown SOC: fail safe
        (49.0, 50.0, math.nan, 0.0),
    ],
)
def test_soc_and_temperature_derating(f: float, soc: float, temp: float, factor: float) -> None:
    d = fast()
    underated = d.droop_kw(f)
    o = d.update(0.0, f, soc_pct=soc, temp_c=temp)
    assert o.derate == pytest.approx(factor)
    assert o.target_kw == pytest.approx(underated * factor)


def test_derating_applies_before_ramp() -> None:
    d = DroopController(p_max_kw=P_MAX, ramp_kw_per_s=10.0)
    d.update(0.0, 48.0, soc_pct=15.0, temp_c=25.0)
    o = d.update(10.0, 48.0, soc_pct=15.0, temp_c=25.0)
    assert o.target_kw == pytest.approx(0.5 * 76.0)
    assert o.output_kw == pytest.approx(38.0)


def test_inertia_term() -> None:
    d = fast(inertia_kw_per_hz_s=20.0)
    o = d.update(0.0, 50.0, soc_pct=50.0, temp_c=25.0, rocof=-0.5)
    assert (o.droop_kw, o.inertia_kw, o.target_kw) == (0.0, 10.0, 10.0)
    o = d.update(1.0, 49.8, soc_pct=50.0, temp_c=25.0, rocof=0.25)
    assert o.target_kw == pytest.approx(4.0 - 5.0)
    o = d.update(2.0, 50.0, soc_pct=50.0, temp_c=25.0, rocof=math.nan)
    assert o.inertia_kw == 0.0


def test_invalid_frequency_fails_safe() -> None:
    d = DroopController(p_max_kw=P_MAX, ramp_kw_per_s=50.0)
    for k in range(30):
        d.update(k * 0.1, 48.0, soc_pct=50.0, temp_c=25.0)
    held = d.output_kw
    assert held == pytest.approx(76.0)
    o = d.update(3.0, math.nan, soc_pct=50.0, temp_c=25.0)
    assert not o.valid and o.target_kw == 0.0
    assert o.output_kw == pytest.approx(held - 5.0)  # ramps toward zero, no step
    o = d.update(math.inf, 48.0, soc_pct=50.0, temp_c=25.0)
    assert o.output_kw == pytest.approx(held - 5.0)  # bad timestamp holds
    assert d.invalid_count == 2
    d.reset(12.0)
    assert d.output_kw == 12.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"p_max_kw": 0.0}, "p_max_kw"),
        ({"p_max_kw": math.nan}, "p_max_kw"),
        ({"p_max_kw": 1.0, "droop_percent": 0.0}, "droop_percent"),
        ({"p_max_kw": 1.0, "deadband_low_hz": 50.1}, "deadband_low_hz"),
        ({"p_max_kw": 1.0, "max_charge_kw": -1.0}, "max_charge_kw"),
        ({"p_max_kw": 1.0, "ramp_kw_per_s": 0.0}, "ramp_kw_per_s"),
        ({"p_max_kw": 1.0, "inertia_kw_per_hz_s": -1.0}, "inertia_kw_per_hz_s"),
        ({"p_max_kw": 1.0, "soc_low_knee_pct": 5.0}, "soc_low_knee_pct"),
        ({"p_max_kw": 1.0, "soc_max_pct": 101.0}, "soc_max_pct"),
        ({"p_max_kw": 1.0, "temp_max_c": 40.0}, "temp_knee_c"),
    ],
)
def test_bad_parameters(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        DroopController(**kwargs)
    assert exc.value.field == field
