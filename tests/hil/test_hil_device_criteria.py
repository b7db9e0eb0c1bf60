"""The criteria on a device's record (docs/hil.md, "The device target"): what needs a
setpoint is not judged, never passed; holes in the meter's readings fail; a case not
run fails with its reason. Records are built as the device runner builds them."""

from __future__ import annotations

import math
from pathlib import Path

from vpp.hil.criteria import evaluate
from vpp.hil.plan import Case, load_procedure
from vpp.hil.report import NOT_JUDGED, CaseOutcome, format_table
from vpp.hil.runner import CaseRecord

NAN = math.nan


def _case(procedure: str) -> Case:
    return Case.model_validate({
        "name": "c", "procedure": procedure, "duration_s": 6,
        "profile": {"kind": "step", "from_hz": 50.0, "to_hz": 49.6, "at_s": 2.0},
    })  # fmt: skip


def _record(power: float, soc: float, hole: bool = False) -> CaseRecord:
    """50 frames/s from -1.5 s to 6 s; after the step at 2 s the device gives ``power``."""
    rec = CaseRecord("c", 0.0, 500.0, 500.0, target="device")
    for n in range(-75, 301):
        t = n / 50
        f = 49.6 if t >= 2.0 else 50.0
        p = power if t >= 2.2 else 0.0
        if hole and 4.0 <= t < 4.5:
            p = NAN
        rec.rows.append((t, f, 0.0, NAN, NAN, NAN, NAN, p, soc, NAN))
    return rec


def test_soc_limit_on_a_device_judges_the_discharge_not_the_setpoint() -> None:
    proc, case = load_procedure("soc_limit", Path(".")), _case("soc_limit")
    res = evaluate(proc, case, _record(60.0, 8.0))  # discharges 60 kW at 8 % SOC
    judged = {c.name: c.passed for c in res.criteria}
    assert judged == {"meter_readings": True, "discharge_stopped": False, "within_rating": True}
    assert {n.name for n in res.not_judged} == {"setpoint_stopped", "within_envelope"}
    assert not res.passed
    assert evaluate(proc, case, _record(0.0, 8.0)).passed  # stopped: passes


def test_without_the_soc_the_soc_limit_is_not_judged_and_says_so() -> None:
    proc, case = load_procedure("soc_limit", Path(".")), _case("soc_limit")
    res = evaluate(proc, case, _record(60.0, NAN))
    assert "discharge_stopped" in {n.name for n in res.not_judged}
    assert "discharge_stopped" not in {c.name for c in res.criteria}
    table = format_table([CaseOutcome(_record(60.0, NAN), res, proc)])
    assert f"discharge_stopped  -         -      {NOT_JUDGED}" in table


def test_a_hole_in_the_meter_readings_fails() -> None:
    proc, case = load_procedure("iegc_primary", Path(".")), _case("iegc_primary")
    # 5 % droop, 0.3 Hz beyond 49.90 Hz: 60 kW, the right answer.
    assert evaluate(proc, case, _record(60.0, 50.0)).passed
    res = evaluate(proc, case, _record(60.0, 50.0, hole=True))
    failed = {c.name for c in res.criteria if not c.passed}
    assert failed == {"meter_readings"}


def test_a_case_not_run_fails_with_its_reason() -> None:
    proc, case = load_procedure("iegc_primary", Path(".")), _case("iegc_primary")
    rec = CaseRecord("c", NAN, 500.0, 500.0, target="device", not_run="no device")
    res = evaluate(proc, case, rec)
    assert [(c.name, c.passed) for c in res.criteria] == [("not_run", False)]
    assert "c: not run: no device" in format_table([CaseOutcome(rec, res, proc)])
