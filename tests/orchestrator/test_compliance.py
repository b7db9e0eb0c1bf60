"""Compliance checks (vpp.orchestrator.grid.compliance): faithful, late and half-gain responses
on a frequency step, the fleet sum, and the core's DroopController in a grid-model event."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vpp.core import DroopController
from vpp.errors import ConfigError
from vpp.orchestrator.grid.compliance import (
    ComplianceConfig,
    DroopCharacteristic,
    check_fleet,
    check_unit,
)
from vpp.orchestrator.grid.events import FrequencyEvent, detect_events
from vpp.sim.grid_model import GridModel, generation_loss
from vpp.validation import validate_model

T0 = 1_700_000_000.0
RATE = 10
CHAR = DroopCharacteristic(rated_kw=100.0)  # 5 %, 49.90-50.05: 40 kW/Hz beyond the edge
BASE = 20.0  # the unit's scheduled discharge before the event


def step_trace() -> tuple[np.ndarray, np.ndarray, FrequencyEvent]:
    """f steps to 49.50 Hz from 10 s to 20 s; 40 s at 10 frames/s."""
    tr = np.arange(40 * RATE + 1) / RATE
    f = np.where((tr >= 10) & (tr < 20), 49.50, 50.0)
    (ev,) = detect_events(T0 + tr, f)
    assert ev.start == T0 + 10.0 and ev.end == pytest.approx(T0 + 25.0)
    return T0 + tr, f, ev


def test_characteristic_is_the_core_droop() -> None:
    core = DroopController(p_max_kw=100.0)
    freqs = [47.0, 49.0, 49.5, 49.9, 49.95, 50.0, 50.05, 50.2, 51.0, 53.0]
    np.testing.assert_allclose(CHAR.droop_kw(freqs), [core.droop_kw(x) for x in freqs])
    assert CHAR.droop_kw(49.5) == pytest.approx(16.0)  # 40 kW/Hz x 0.4 Hz
    # Limits: 30 kW of discharge allowed in total, from a 20 kW base -> 10 kW response.
    lim = DroopCharacteristic(rated_kw=100.0, max_discharge_kw=30.0)
    assert lim.expected_kw(49.5, base_kw=BASE) == pytest.approx(10.0)
    assert lim.expected_kw(50.45, base_kw=BASE) == pytest.approx(-16.0)


def test_faithful_response_passes_with_no_error() -> None:
    t, f, ev = step_trace()
    p = BASE + CHAR.expected_kw(f, BASE)
    res = check_unit("u1", ev, t, f, p, CHAR)
    assert res.passed, res.failures
    m = res.metrics
    assert m["peak_expected_kw"] == pytest.approx(16.0)
    assert m["start_delay_s"] == 0.0 and m["full_delay_s"] == 0.0
    assert m["rms_error_pct"] == pytest.approx(0.0, abs=1e-9)
    assert m["max_error_pct"] == pytest.approx(0.0, abs=1e-9)
    assert m["gain_ratio"] == pytest.approx(1.0)
    assert res.criterion("start_delay").reason == "start_delay: 0.000 s within 1.0 s"


def test_late_response_fails_the_start_time() -> None:
    t, f, ev = step_trace()
    late = np.interp(t - 2.0, t, CHAR.expected_kw(f, BASE), left=0.0)  # 2 s behind
    res = check_unit("u1", ev, t, f, BASE + late, CHAR)
    start = res.criterion("start_delay")
    assert not start.passed and start.value == pytest.approx(2.0)
    assert res.metrics["start_delay_after_event_s"] == pytest.approx(2.0)
    assert "start_delay: 2.000 s over 1.0 s" in res.failures
    full = res.criterion("full_delay")
    assert full.passed and full.value == pytest.approx(2.0)  # within the 10 s allowed


def test_half_gain_response_fails_accuracy_with_half_error() -> None:
    t, f, ev = step_trace()
    p = BASE + 0.5 * CHAR.expected_kw(f, BASE)
    res = check_unit("u1", ev, t, f, p, CHAR)
    m = res.metrics
    assert m["gain_ratio"] == pytest.approx(0.5)
    assert m["rel_rms_error_pct"] == pytest.approx(50.0)
    assert m["max_error_pct"] == pytest.approx(8.0)  # 8 kW short of 16 kW, rating 100
    # Accuracy window 12 s .. 25 s: 80 of 131 samples 8 kW short.
    assert m["rms_error_pct"] == pytest.approx(8.0 * math.sqrt(80 / 131))
    assert not res.criterion("rel_rms_error").passed
    assert not res.criterion("rms_error").passed
    assert res.criterion("max_error").passed
    # It reaches 10 % of the peak (1.6 kW) at once, but never 90 % (14.4 kW).
    assert res.criterion("start_delay").passed
    assert not res.criterion("full_delay").passed
    assert "full_delay: never reached 14.4 kW" in res.failures


def test_no_response_and_tiny_event() -> None:
    t, f, ev = step_trace()
    flat = check_unit("u1", ev, t, f, np.full_like(t, BASE), CHAR)
    assert not flat.passed and flat.criterion("start_delay").value is None
    assert flat.metrics["gain_ratio"] == 0.0
    # A dip to 49.89 Hz asks for 0.4 kW, under 1 % of 100 kW: nothing to judge.
    f_small = np.where(f < 50, 49.89, 50.0)
    res = check_unit("u1", ev, t, f_small, np.full_like(t, BASE), CHAR)
    assert res.passed and all(c.value is None for c in res.criteria)
    assert res.criteria[0].reason.startswith("n/a")


def test_fleet_sum_and_units() -> None:
    t, f, ev = step_trace()
    big = DroopCharacteristic(rated_kw=300.0)
    good = 50.0 + big.expected_kw(f, 50.0)
    dead = np.full_like(t, -10.0)
    out = check_fleet(ev, t, f, {"good": good, "dead": dead}, {"good": big, "dead": CHAR})
    assert out.units["good"].passed and not out.units["dead"].passed
    # Fleet expects 48 + 16 kW, gets 48: gain 0.75, rating 400 kW.
    assert out.fleet.metrics["peak_expected_kw"] == pytest.approx(64.0)
    assert out.fleet.metrics["gain_ratio"] == pytest.approx(0.75)
    assert out.fleet.metrics["rating_kw"] == 400.0
    with pytest.raises(ConfigError) as info:
        check_fleet(ev, t, f, {"good": good}, {"good": big, "dead": CHAR})
    assert info.value.field == "powers" and "dead" in str(info.value)


def test_bad_traces_and_config() -> None:
    t, f, ev = step_trace()
    with pytest.raises(ConfigError) as info:
        check_unit("u7", ev, t, f, t[:-1], CHAR)
    assert info.value.field == "p_kw" and "u7" in str(info.value)
    with pytest.raises(ConfigError) as info:
        check_unit("u7", ev, t[::-1], f, f, CHAR)
    assert info.value.field == "t"
    with pytest.raises(ConfigError) as info:
        validate_model(ComplianceConfig, {"start_fraction": 1.5}, "compliance")
    assert info.value.field == "start_fraction"
    with pytest.raises(ConfigError, match="deadband_low_hz must be <= deadband_high_hz"):
        band = {"rated_kw": 1.0, "deadband_low_hz": 50.1}
        validate_model(DroopCharacteristic, band, "droop characteristic")
    with pytest.raises(ConfigError) as info:
        validate_model(DroopCharacteristic, {"rated_kw": -1.0}, "droop characteristic")
    assert info.value.field == "rated_kw"


def test_core_droop_in_a_grid_model_event_passes() -> None:
    """The compiled DroopController (default ramp: p_max per second) in the loop of a
    5 % generation loss: its response, judged against its own characteristic, passes."""
    grid = GridModel(events=[generation_loss(5.0, 0.05, 100.0)])
    droop = DroopController(p_max_kw=5000.0)

    def fleet(t: float, f: float, rocof: float) -> float:
        return droop.update(T0 + t, f, soc_pct=60.0, temp_c=25.0, rocof=rocof).output_kw

    run = grid.run(40.0, 0.02, fleet)
    (ev,) = detect_events(T0 + run.t, run.f, run.rocof)
    assert ev.trigger == "rocof" and ev.start == pytest.approx(T0 + 5.0)
    assert ev.max_rocof_hz_s == pytest.approx(-0.05 * 50 / 10, rel=1e-6)
    assert ev.nadir_hz < 49.75 and ev.active  # settles below 49.90: still on at 40 s
    res = check_unit(
        "bess", ev, T0 + run.t, run.f, run.fleet_kw, DroopCharacteristic(rated_kw=5000)
    )
    assert res.passed, res.failures
    m = res.metrics
    assert m["peak_expected_kw"] == pytest.approx(-5000 / 2.5 * (ev.nadir_hz - 49.90), rel=1e-6)
    assert m["start_delay_s"] <= 0.02 and m["full_delay_s"] <= 0.1
    # The ROCOF trigger came at the loss; f left the deadband later.
    assert 0.1 < m["start_delay_after_event_s"] < 1.0
    assert m["rms_error_pct"] < 0.1 and m["gain_ratio"] == pytest.approx(1.0, abs=0.01)


def test_core_droop_with_a_slow_ramp_fails_in_the_same_event() -> None:
    """The same loop with a 20 kW/s ramp limit: it never gets near the nadir's demand."""
    grid = GridModel(events=[generation_loss(5.0, 0.05, 100.0)])
    droop = DroopController(p_max_kw=5000.0, ramp_kw_per_s=20.0)

    def fleet(t: float, f: float, rocof: float) -> float:
        return droop.update(T0 + t, f, soc_pct=60.0, temp_c=25.0).output_kw

    run = grid.run(40.0, 0.02, fleet)
    (ev,) = detect_events(T0 + run.t, run.f, run.rocof)
    res = check_unit(
        "bess", ev, T0 + run.t, run.f, run.fleet_kw, DroopCharacteristic(rated_kw=5000)
    )
    assert not res.criterion("full_delay").passed
    assert not res.criterion("rel_rms_error").passed
    assert res.metrics["peak_measured_kw"] < 0.5 * res.metrics["peak_expected_kw"]


def test_gain_ratio_is_left_out_when_no_response_is_due_in_the_accuracy_window() -> None:
    # A 1 s dip: the expected response is back to zero before the accuracy window (2 s
    # after the start) opens, so measured / expected has no value. It used to be NaN,
    # which the bus refuses (issue 8): the compliance report could not be published.
    tr = np.arange(40 * RATE + 1) / RATE
    f = np.where((tr >= 10) & (tr < 11), 49.50, 50.0)
    (ev,) = detect_events(T0 + tr, f)
    p = BASE + CHAR.expected_kw(f, 50.0)
    res = check_unit("u1", ev, T0 + tr, f, p, CHAR)
    assert "gain_ratio" not in res.metrics
    assert all(math.isfinite(v) for v in res.metrics.values())
    assert res.passed
