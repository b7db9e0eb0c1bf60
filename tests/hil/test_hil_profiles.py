"""The frequency profiles of a case, as the PMU's source plays them (time 0 is the case
start, ``settle_s`` of PMU time before it)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vpp.hil.plan import CsvProfile, OscillationProfile, RampProfile, StepProfile
from vpp.hil.profiles import CaseSource, ProfileFunction


def test_step_ramp_and_oscillation_follow_their_parameters() -> None:
    t = np.array([-3.0, 0.0, 1.99, 2.0, 3.0, 5.0, 20.0])
    step = ProfileFunction(StepProfile(kind="step", from_hz=50.0, to_hz=49.7, at_s=2.0), Path())
    np.testing.assert_allclose(step.at(t), [50, 50, 50, 49.7, 49.7, 49.7, 49.7])
    ramp = ProfileFunction(
        RampProfile(kind="ramp", from_hz=50.0, rate_hz_s=-0.1, ramp_s=3.0, at_s=2.0), Path()
    )
    np.testing.assert_allclose(ramp.at(t), [50, 50, 50, 50, 49.9, 49.7, 49.7])
    osc = ProfileFunction(
        OscillationProfile(kind="oscillation", amplitude_hz=0.2, period_s=4.0, at_s=2.0), Path()
    )
    np.testing.assert_allclose(osc.at(np.array([0.0, 3.0, 4.0, 5.0])), [50, 50.2, 50, 49.8],
                               atol=1e-12)  # fmt: skip


def test_a_csv_recording_is_played_once_from_its_start(tmp_path: Path) -> None:
    (tmp_path / "rec.csv").write_text("time_s,freq_hz\n10,50.0\n11,49.8\n12,49.9\n")
    fn = ProfileFunction(CsvProfile(kind="csv", file="rec.csv", at_s=1.0), tmp_path)
    got = fn.at(np.array([0.0, 1.0, 1.5, 2.0, 3.0, 30.0]))
    # Held before, interpolated, and the last value held after: never looped.
    np.testing.assert_allclose(got, [50.0, 50.0, 49.9, 49.8, 49.9, 49.9])


def test_the_pmu_source_runs_settle_s_ahead_with_the_rocof_of_one_frame() -> None:
    fn = ProfileFunction(StepProfile(kind="step", to_hz=49.5, at_s=1.0), Path())
    src = CaseSource(fn, settle_s=3.0, rate=50)
    assert src.nominal == 50.0
    assert src.sample(3.98) == (50.0, 0.0)
    f, rocof = src.sample(4.0)
    assert f == 49.5 and rocof == pytest.approx(-25.0)
    assert src.sample(4.02) == (49.5, 0.0) and not math.isnan(src.sample(0.0)[1])
