"""DroopController with a knee (GB Dynamic Containment's two segments): the service's
points, the rule that the response never rises with frequency and is zero in the
deadband, agreement with the compliance check's model, bad knees refused, and the whole
pipeline's setpoint inside its limits with a knee configured."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.ramp import InForce, check_step
from vpp.core import DroopController, Pipeline, SafetyEnvelope, Telemetry
from vpp.errors import ConfigError
from vpp.orchestrator.grid.compliance import DroopCharacteristic

#: GB DC (STANDARDS.md): deadband 15 mHz, 5 % at the 0.2 Hz knee, 100 % at 0.5 Hz.
DC = {"deadband_low_hz": 49.985, "deadband_high_hz": 50.015, "knee_hz": 0.2,
      "knee_percent": 5.0, "full_hz": 0.5}  # fmt: skip
RATED = 500.0


def dc(p_max_kw: float = RATED, **kw: float) -> DroopController:
    return DroopController(p_max_kw=p_max_kw, ramp_kw_per_s=math.inf, **(DC | kw))


@pytest.mark.parametrize(
    ("f", "kw"),
    [
        (50.0, 0.0), (49.985, 0.0), (50.015, 0.0), (49.99, 0.0),
        (49.80, 25.0), (50.20, -25.0),  # the knee: 5 %
        (49.50, 500.0), (50.50, -500.0),  # full at 0.5 Hz
        (49.65, 262.5), (50.35, -262.5),  # halfway from knee to full: 52.5 %
        (49.8925, 12.5), (50.1075, -12.5),  # halfway from edge to knee: 2.5 %
    ],
)  # fmt: skip
def test_the_dc_points_both_directions(f: float, kw: float) -> None:
    assert dc().droop_kw(f) == pytest.approx(kw, abs=1e-9)


def test_the_limits_hold_it_beyond_full_and_a_step_to_the_knee_settles_at_5_pct() -> None:
    d = dc()
    assert d.droop_kw(49.0) > RATED  # the outer line goes on...
    assert d.update(0.0, 49.0, soc_pct=50.0, temp_c=25.0).target_kw == RATED  # ...clamped
    assert d.update(0.1, 51.0, soc_pct=50.0, temp_c=25.0).target_kw == -RATED
    assert d.update(0.2, 49.8, soc_pct=50.0, temp_c=25.0).output_kw == pytest.approx(25.0)
    # A straight 0.97 % droop from the edge (the old gb_dc) gives 190 kW there instead.
    old = DroopController(p_max_kw=RATED, droop_percent=0.97, deadband_low_hz=49.985,
                          deadband_high_hz=50.015)  # fmt: skip
    assert old.droop_kw(49.8) == pytest.approx(190.7, abs=0.1)


def test_no_knee_is_todays_droop_and_nan_stays_nan() -> None:
    plain = DroopController(p_max_kw=100.0)
    zero = DroopController(p_max_kw=100.0, knee_hz=0.0, knee_percent=0.0, full_hz=0.0)
    for f in np.linspace(47.0, 53.0, 601):
        assert plain.droop_kw(float(f)) == zero.droop_kw(float(f))
    assert math.isnan(dc().droop_kw(math.nan))
    out = dc().update(0.0, math.nan, soc_pct=50.0, temp_c=25.0)
    assert not out.valid and out.target_kw == 0.0


@st.composite
def knees(draw: st.DrawFn) -> dict[str, float]:
    """A valid knee: deadband half-widths, a knee beyond both, full beyond the knee."""
    lo = draw(st.floats(0.0, 0.1))
    hi = draw(st.floats(0.0, 0.1))
    knee = draw(st.floats(max(lo, hi) + 1e-3, 1.0))
    return {
        "deadband_low_hz": 50.0 - lo,
        "deadband_high_hz": 50.0 + hi,
        "knee_hz": knee,
        "knee_percent": draw(st.floats(0.1, 99.9)),
        "full_hz": knee + draw(st.floats(1e-3, 2.0)),
    }


@settings(max_examples=200, deadline=None)
@given(knees(), st.lists(st.floats(45.0, 55.0), min_size=2, max_size=60), st.floats(1.0, 1e4))
def test_response_never_rises_with_frequency_and_is_zero_in_the_deadband(
    knee: dict[str, float], fs: list[float], p_max: float
) -> None:
    d = DroopController(p_max_kw=p_max, **knee)
    model = DroopCharacteristic(rated_kw=p_max, **knee)
    fs = sorted([*fs, knee["deadband_low_hz"], knee["deadband_high_hz"]])
    kws = [d.droop_kw(f) for f in fs]
    assert all(a >= b for a, b in itertools.pairwise(kws)), (fs, kws)
    for f, kw in zip(fs, kws, strict=True):
        if knee["deadband_low_hz"] <= f <= knee["deadband_high_hz"]:
            assert kw == 0.0
        else:
            # Under-frequency discharges, over-frequency charges.
            assert (kw > 0) == (f < knee["deadband_low_hz"])
    # The compliance check expects what the core does.
    np.testing.assert_allclose(model.droop_kw(fs), kws, rtol=1e-9, atol=1e-9 * p_max)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"knee_hz": 0.01}, "knee_hz"),  # inside the deadband (15 mHz)
        ({"knee_hz": 0.015}, "knee_hz"),  # at its edge
        ({"deadband_high_hz": 50.3}, "knee_hz"),  # beyond the upper edge only
        ({"knee_hz": -0.2}, "knee_hz"),
        ({"knee_hz": math.inf}, "knee_hz"),
        ({"knee_percent": 0.0}, "knee_percent"),
        ({"knee_percent": 100.0}, "knee_percent"),
        ({"knee_percent": math.nan}, "knee_percent"),
        ({"full_hz": 0.2}, "full_hz"),  # at the knee
        ({"full_hz": 0.1}, "full_hz"),
        ({"full_hz": math.nan}, "full_hz"),
        ({"knee_hz": 0.0}, "knee_percent"),  # points without a knee
        ({"knee_hz": 0.0, "knee_percent": 0.0}, "full_hz"),
    ],
)
def test_bad_knees_are_refused_naming_the_field(kw: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        DroopController(p_max_kw=100.0, **(DC | kw))
    assert exc.value.field == field


# --- the whole pipeline with a knee ---------------------------------------------------------

T0 = 1_763_700_000.0
ID = 7734
RAMP = 500.0  # kW/s: the envelope's limit


def _telemetry(wall: float, power: float, soc: float) -> Telemetry:
    return Telemetry(timestamp=wall, pack_voltage_v=792.0, current_a=0.0, temp_min_c=24.0,
                     temp_max_c=25.0, soc_pct=soc, cell_v_min=3.30, cell_v_max=3.31,
                     power_kw=power, bms_timestamp=wall)  # fmt: skip


frequency = st.floats(48.0, 52.0) | st.sampled_from([49.8, 50.2, 49.5, math.nan, math.inf, 0.0])


@settings(max_examples=60, deadline=None)
@given(
    knees(),
    st.floats(0.0, RATED),
    st.floats(-RATED, RATED),
    st.floats(0.0, 100.0),
    st.lists(st.tuples(frequency, st.integers(1, 40)), min_size=1, max_size=20),
)
def test_the_pipeline_with_a_knee_stays_within_its_limits_and_ramp(
    knee: dict[str, float],
    share: float,
    base: float,
    soc: float,
    plateaus: list[tuple[float, int]],
) -> None:
    limits = {"max_charge_kw": RATED, "max_discharge_kw": RATED, "ramp_kw_per_s": RAMP,
              "max_charge_current_a": 1e4, "max_discharge_current_a": 1e4,
              "pack_v_min": 600.0, "pack_v_max": 876.0}  # fmt: skip
    droop = DroopController(p_max_kw=RATED, max_charge_kw=share, max_discharge_kw=share,
                            ramp_kw_per_s=math.inf, **knee)  # fmt: skip
    p = Pipeline(p_max_kw=RATED, droop=droop, safety=SafetyEnvelope("lfp_16s", **limits),
                 idcode=ID)  # fmt: skip
    p.anchor(0.0, mono=0.0)
    p.base_kw = base
    in_force, t, mono = InForce(0.0, 0.0), T0, 0.0
    for f, frames in plateaus:
        for _ in range(frames):
            t, mono = t + 0.02, mono + 0.02
            p.set_telemetry(_telemetry(T0 + mono, in_force.kw, soc))
            d = p.step(t, f, math.nan, 0, ID, wall=T0 + mono, mono=mono)
            if d is None:
                continue
            # The droop's response stays within the share; the setpoint within the
            # envelope and its ramp.
            assert -share - 1e-9 <= d.response_kw <= share + 1e-9, d
            check_step(in_force, d, mono, RAMP, f"f={f}")
            in_force = InForce(d.setpoint_kw, mono)
