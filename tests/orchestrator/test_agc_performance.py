"""SRAS performance of the AGC response: reports computed by hand for a set-point step."""

from __future__ import annotations

from typing import Any

import pytest

from vpp.orchestrator.grid.agc import AgcConfig
from vpp.orchestrator.grid.agc_performance import AgcPerformance

#: 1 MW reserved each way: tolerance 5 % = 0.05 MW; start at 10 % of a step; SRAS
#: limits 30 s to start, 900 s to full, 1800 s sustained.
CFG = AgcConfig(reserved_up_mw=1.0, reserved_down_mw=1.0)


def _feed(samples: list[tuple[float, float, float]]) -> AgcPerformance:
    perf = AgcPerformance(CFG)
    for t, r, d in samples:
        perf.record(t, r, d)
    return perf


def _crit(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["criteria"] if c["name"] == name)


#: A step to 1 MW at t = 10: the response moves at 20 s (0.05: less than 10 % of the
#: step), has started at 30 s (0.2), is full at 90 s (0.96, within 0.05) and holds.
STEP = [(0.0, 0.0, 0.0), (10.0, 1.0, 0.0), (20.0, 1.0, 0.05), (30.0, 1.0, 0.2),
        (90.0, 1.0, 0.96), (2000.0, 1.0, 1.0)]  # fmt: skip


def test_a_step_followed_in_time_passes_every_criterion() -> None:
    perf = _feed(STEP)
    rep = perf.period_report(0.0, 2010.0)
    # Held values: 0 for 10 s, then 0, 0.05, 0.2, 0.96, 1.0 for 10, 10, 60, 1910, 10 s.
    assert rep["metrics"]["duration_s"] == 2010.0
    assert rep["metrics"]["requested_mwh"] == pytest.approx(2000 / 3600)
    delivered = (0.05 * 10 + 0.2 * 60 + 0.96 * 1910 + 1.0 * 10) / 3600
    assert rep["metrics"]["delivered_mwh"] == pytest.approx(delivered)
    assert _crit(rep, "energy")["value"] == pytest.approx(1856.1 / 2000 * 100)
    # Within 0.05 MW: the first 10 s (0 asked, 0 given) and from 90 s on: 10 + 1920 s.
    assert _crit(rep, "within_tolerance")["value"] == pytest.approx(1930 / 2010 * 100)
    # Held from 90 s to the end, 1920 s; 1800 s required.
    sus = _crit(rep, "sustained")
    assert (sus["value"], sus["limit"], sus["passed"]) == (1920.0, 1800.0, True)
    assert rep["passed"] and rep["failures"] == []
    (sig,) = rep["signals"]
    assert sig["t"] == 10.0 and sig["metrics"] == {"from_mw": 0.0, "to_mw": 1.0}
    assert _crit(sig, "start_delay")["value"] == 20.0
    assert _crit(sig, "full_delay")["value"] == 80.0
    assert sig["passed"]


def test_a_response_that_sags_fails_energy_tolerance_and_sustain() -> None:
    # As STEP, but from t = 1000 the response sags to 0.5 MW until 2000.
    perf = _feed([*STEP[:5], (1000.0, 1.0, 0.5), STEP[5]])
    rep = perf.period_report(0.0, 2010.0)
    energy = (0.05 * 10 + 0.2 * 60 + 0.96 * 910 + 0.5 * 1000 + 1.0 * 10) / 2000 * 100
    assert _crit(rep, "energy")["value"] == pytest.approx(energy)
    assert not _crit(rep, "energy")["passed"]
    assert _crit(rep, "within_tolerance")["value"] == pytest.approx(930 / 2010 * 100)
    sus = _crit(rep, "sustained")
    assert (sus["value"], sus["limit"], sus["passed"]) == (910.0, 1800.0, False)
    assert not rep["passed"] and len(rep["failures"]) == 3


def test_a_signal_that_gets_no_response_fails_once_its_limits_run_out() -> None:
    perf = _feed([(0.0, 0.0, 0.0), (10.0, -1.0, 0.0), (35.0, -1.0, -0.05)])
    sig = perf.current
    assert sig is not None
    young = perf.signal_report(sig, 35.0)
    assert young["passed"]  # 25 s: neither limit ran out
    assert "pending" in _crit(young, "start_delay")["reason"]
    late = perf.signal_report(sig, 41.0)
    assert not _crit(late, "start_delay")["passed"]
    assert _crit(late, "full_delay")["passed"]  # 15 minutes are not over
    assert not perf.signal_report(sig, 911.0)["passed"]
    # A new signal before the limit ends the old one's clock: not judged, not failed.
    perf.record(40.0, 0.5, -0.05)
    assert perf.signal_report(sig, 2000.0)["passed"]
    assert "superseded" in _crit(perf.signal_report(sig, 2000.0), "full_delay")["reason"]


def test_a_new_signal_ramping_does_not_break_the_sustained_response() -> None:
    # 0.5 MW, full at once; at 600 s the request steps to 1 MW, reached at 660 s.
    perf = _feed([(0.0, 0.5, 0.5), (600.0, 1.0, 0.5), (630.0, 1.0, 0.8),
                  (660.0, 1.0, 1.0)])  # fmt: skip
    rep = perf.period_report(0.0, 2000.0)
    sus = _crit(rep, "sustained")
    assert (sus["value"], sus["limit"], sus["passed"]) == (2000.0, 1800.0, True)
    assert [s["t"] for s in rep["signals"]] == [0.0, 600.0]
    # Within tolerance all but the 60 s of the ramp.
    assert _crit(rep, "within_tolerance")["value"] == pytest.approx(1940 / 2000 * 100)


def test_nothing_requested_is_not_applicable_and_the_window_starts_mid_sample() -> None:
    perf = _feed([(0.0, 0.0, 0.02), (100.0, 0.0, 0.0)])
    rep = perf.period_report(50.0, 150.0)
    assert rep["metrics"]["duration_s"] == 100.0  # the sample at 0 holds from 50 to 100
    assert _crit(rep, "energy")["value"] is None and _crit(rep, "sustained")["value"] is None
    assert _crit(rep, "within_tolerance")["value"] == 100.0
    assert rep["passed"] and rep["signals"] == []


def test_samples_out_of_order_or_not_finite_are_dropped() -> None:
    perf = _feed([(10.0, 0.0, 0.0), (5.0, 1.0, 1.0), (20.0, float("nan"), 0.0)])
    assert [s.t for s in perf.samples] == [10.0]
    assert perf.current is None
