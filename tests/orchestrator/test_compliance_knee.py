"""The compliance check with a knee (GB Dynamic Containment): the expected response
follows the knee's two segments, as the core's controller does, a response on a
straight droop from the deadband edge is judged wrong against it, and the event report
redraws the knee."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from vpp.config import load_text
from vpp.core import DroopController
from vpp.orchestrator.grid.compliance import DroopCharacteristic, check_unit
from vpp.orchestrator.grid.events import detect_events
from vpp.reports.response import _characteristic

T0 = 1_700_000_000.0
RATE = 10
DC = {"deadband_low_hz": 49.985, "deadband_high_hz": 50.015, "knee_hz": 0.2,
      "knee_percent": 5.0, "full_hz": 0.5}  # fmt: skip
CHAR = DroopCharacteristic(rated_kw=100.0, **DC)


def test_the_expected_response_follows_the_knee() -> None:
    # 0 at the edges, 5 % at the knee, 100 % at 0.5 Hz, both directions; clipped beyond.
    fs = [49.985, 50.015, 49.8, 50.2, 49.65, 50.35, 49.5, 50.5, 49.0, 51.0]
    assert CHAR.expected_kw(fs) == pytest.approx(
        [0.0, 0.0, 5.0, -5.0, 52.5, -52.5, 100.0, -100.0, 100.0, -100.0]
    )
    # The core's controller with the same knee computes the same.
    core = DroopController(p_max_kw=100.0, **DC)
    grid = np.linspace(49.0, 51.0, 2001)
    np.testing.assert_allclose(CHAR.droop_kw(grid), [core.droop_kw(float(f)) for f in grid],
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    # Without a knee the characteristic is the straight droop, as before.
    plain = DroopCharacteristic(rated_kw=100.0, droop_percent=0.97,
                                deadband_low_hz=49.985, deadband_high_hz=50.015)  # fmt: skip
    assert plain.expected_kw(49.8) == pytest.approx(100.0 * 0.185 / 50 / 0.0097)


def test_a_bad_knee_is_refused() -> None:
    for change in ({"knee_hz": 0.01}, {"knee_percent": 0.0}, {"full_hz": 0.2},
                   {"knee_hz": 0.0}):  # fmt: skip
        with pytest.raises(ValueError, match=r"knee_hz|knee_percent|full_hz"):
            DroopCharacteristic(rated_kw=100.0, **(DC | change))


def test_a_step_into_the_knee_judged_against_the_knee() -> None:
    """f steps to 49.80 Hz (DC's knee) for 10 s: a response on the knee passes; the
    straight line from the edge to 100 % at 0.5 Hz (38 % there, not 5 %) fails."""
    tr = np.arange(40 * RATE + 1) / RATE
    f = np.where((tr >= 10) & (tr < 20), 49.80, 50.0)
    (ev,) = detect_events(T0 + tr, f)
    on_knee = CHAR.expected_kw(f)
    assert on_knee.max() == pytest.approx(5.0)
    assert check_unit("u1", ev, T0 + tr, f, on_knee, CHAR).passed
    straight = DroopCharacteristic(rated_kw=100.0, droop_percent=0.97,
                                   deadband_low_hz=49.985, deadband_high_hz=50.015)  # fmt: skip
    res = check_unit("u1", ev, T0 + tr, f, straight.expected_kw(f), CHAR)
    failed = {c.name for c in res.criteria if not c.passed}
    assert {"rms_error", "max_error", "rel_rms_error"} <= failed
    assert res.metrics["max_error_pct"] == pytest.approx(38.1 - 5.0, abs=0.1)


def test_the_report_redraws_the_knee_recorded_or_configured() -> None:
    """``vpp report`` redraws the expected response from the characteristic the grid
    recorded with its verdict (a model dump), else from the unit's configured droop."""
    recorded = {"units": {"u1": {"characteristic": CHAR.model_dump()}}}
    ch, _ = _characteristic(cast(Any, None), "u1", {"start": T0}, recorded, None)
    assert ch == CHAR and ch is not None and ch.expected_kw(49.8) == pytest.approx(5.0)
    unit = ("{id: u1, rated_power_kw: 100, capacity_kwh: 200, inverter: {protocol: "
            "modbus_tcp, config: {host: 10.0.0.1}}, droop: {deadband_low_hz: 49.985, "
            "deadband_high_hz: 50.015, knee_hz: 0.2, knee_percent: 5, full_hz: 0.5}}")  # fmt: skip
    site = load_text(f"field:\n  - id: f1\n    units: [{unit}]\n", env={})
    shares = {"units": {"u1": {"share_kw": 80.0}}}
    ch, why = _characteristic(cast(Any, None), "u1", {"start": T0}, shares, site)
    assert ch is not None and "configured droop" in why
    assert ch.expected_kw([49.8, 49.5]) == pytest.approx([4.0, 80.0])  # 5 % and 100 % of 80
