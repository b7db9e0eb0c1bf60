"""A bad plan is one line on standard error and exit code 2, naming what is wrong,
before anything runs; the built-in procedures load and cite their sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.hil.helpers import EXAMPLE, hil_run, write_plan
from vpp.hil.plan import BUILTIN_PROCEDURES, CharacteristicSpec, load_plan, load_procedure

STEP = {"kind": "step", "to_hz": 49.5}
DEVICE = {"pmu": {"port": 4712}, "meter": {"port": 5020}}


def _plan(**over: Any) -> dict[str, Any]:
    case = {"name": "c1", "procedure": "iegc_primary", "profile": STEP, "duration_s": 5}
    case.update(over.pop("case", {}))
    return {"name": "bad", "cases": [case], **over}


@pytest.mark.parametrize(
    ("plan", "says"),
    [
        (_plan(target="device"), "a 'device' section goes with target 'device'"),
        (_plan(device=DEVICE), "a 'device' section goes with target 'device'"),
        (
            _plan(
                target="device", device={**DEVICE, "meter": {"port": 5020, "power_point": "pwr"}}
            ),
            "field 'device.meter.power_point': no point 'pwr'",
        ),
        (
            _plan(
                target="device",
                device={**DEVICE, "meter": {"port": 5020, "register_map": "x.yaml"}},
            ),
            "field 'device.meter.register_map'",
        ),
        (_plan(target="device", device={**DEVICE, "pmu": {"port": 0}}), "device.pmu.port"),
        (
            _plan(target="device", device=DEVICE, case={"unit": {"droop_percent": 10}}),
            "field 'cases.0.unit': a device's settings are its own",
        ),
        (
            _plan(target="device", device=DEVICE, case={"start": {"temperature_c": 30}}),
            "field 'cases.0.start.temperature_c'",
        ),
        (
            _plan(
                target="device",
                device={**DEVICE, "meter": {"port": 5020, "soc_point": None}},
                case={"start": {"soc_pct": 30}},
            ),
            "field 'cases.0.start.soc_pct': the meter has no",
        ),
        (
            _plan(target="device", device=DEVICE,
                  case={"procedure": "safety_trip", "trip": {"kind": "over_temperature",
                                                             "at_s": 2}}),
            "case c1: a trip cannot be injected into a device",
        ),
        (
            # The built-in procedure's own trip, on a device: refused just the same.
            _plan(target="device", device=DEVICE, case={"procedure": "safety_trip"}),
            "field 'cases.0.procedure': case c1: a trip cannot be injected into a device",
        ),
        (
            _plan(case={"trip": {"kind": "cell_over_voltage", "at_s": 2}}),
            "field 'cases.0.trip': a trip goes with a procedure of kind 'safety_trip'",
        ),
        (
            _plan(case={"procedure": "safety_trip", "trip": {"kind": "cell_over_voltage",
                                                             "at_s": 7}}),
            "the trip at 7 s is not within the case's duration_s 5 s",
        ),
        (
            # The procedure's trip at 6 s does not fit a 5 s case either.
            _plan(case={"procedure": "safety_trip"}),
            "field 'cases.0.trip.at_s': the trip at 6 s is not within",
        ),
        (_plan(case={"procedure": "safety_trip", "trip": {"kind": "flood", "at_s": 1}}),
         "cases.0.trip"),
        (_plan(case={"procedure": "safety_trip",
                     "trip": {"kind": "over_temperature", "at_s": 1, "cell_v": 4}}),
         "cases.0.trip.over_temperature.cell_v"),
        (_plan(case={"unit": {"max_deviation_hz": 0}}), "cases.0.unit.max_deviation_hz"),
        (_plan(target="hardware"), "field 'target'"),
        (_plan(case={"procedure": "nerc_bal"}), "unknown procedure 'nerc_bal'"),
        (_plan(case={"profile": {"kind": "step", "to_hz": "49.5"}}), "cases.0.profile.step.to_hz"),
        (_plan(case={"profile": {"kind": "chirp"}}), "cases.0.profile"),
        (_plan(case={"duration_s": -1}), "cases.0.duration_s"),
        (_plan(case={"criteria": {"max_start_delay": 2}}), "cases.0.criteria.max_start_delay"),
        (_plan(case={"start": {"soc_pct": 140}}), "cases.0.start.soc_pct"),
        (_plan(case={"unit": {"droop": 10}}), "cases.0.unit.droop"),
        (_plan(case={"profile": {"kind": "csv", "file": "missing.csv"}}), "missing.csv"),
        (_plan(colour="red"), "field 'colour'"),
        (_plan(cases=[]), "field 'cases'"),
    ],
)
def test_a_bad_plan_is_one_line_and_exit_2(tmp_path: Path, plan: dict[str, Any], says: str) -> None:
    r = hil_run(write_plan(tmp_path, plan), "--out", str(tmp_path / "out"), timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vpp hil: ConfigError:"), r.stderr
    assert says in lines[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_not_yaml_and_no_file_are_one_line_too(tmp_path: Path) -> None:
    bad = tmp_path / "plan.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    for path, says in ((bad, "not YAML"), (tmp_path / "none.yaml", "cannot read")):
        r = hil_run(path, timeout=60)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert says in r.stderr


def test_the_builtin_procedures_load_and_cite_their_sources() -> None:
    for name in BUILTIN_PROCEDURES:
        proc = load_procedure(name, Path("."))
        assert proc.name == name
        assert "STANDARDS.md" in proc.source or "control.md" in proc.source
    iegc = load_procedure("iegc_primary", Path("."))
    assert (iegc.characteristic.droop_percent, iegc.characteristic.deadband_low_hz,
            iegc.characteristic.deadband_high_hz) == (5.0, 49.90, 50.05)  # fmt: skip
    assert load_procedure("fcr_ce", Path(".")).criteria["max_full_delay_s"] == 30.0
    dc = load_procedure("gb_dc", Path("."))
    assert dc.criteria["max_full_delay_s"] == 1.0
    # DC's own characteristic, its knee included, expected and given to the controller.
    ch = dc.characteristic
    assert (ch.deadband_low_hz, ch.deadband_high_hz, ch.knee_hz, ch.knee_percent,
            ch.full_hz, ch.droop_percent) == (49.985, 50.015, 0.2, 5.0, 0.5, None)  # fmt: skip
    assert (dc.unit.knee_hz, dc.unit.knee_percent, dc.unit.full_hz) == (0.2, 5.0, 0.5)
    assert "not tested" not in dc.source
    rocof = load_procedure("rocof_ride_through", Path("."))
    assert "1 Hz/s" in rocof.source and rocof.criteria["min_rocof_hz_s"] == 1.0
    assert rocof.criteria["rocof_window_s"] == 0.5
    trip = load_procedure("safety_trip", Path("."))
    assert trip.trip is not None and trip.trip.kind == "cell_over_voltage"
    assert trip.criteria["max_trip_setpoint_delay_s"] == 0.5


def test_the_example_plan_loads_with_a_case_per_builtin_procedure() -> None:
    plan, procs = load_plan(EXAMPLE)
    assert plan.target == "simulated"
    # Every procedure, gb_dc twice: beyond full delivery and at its knee.
    names = sorted(procs[c.name].name for c in plan.cases)
    assert names == sorted([*BUILTIN_PROCEDURES, "gb_dc"])
    # Short enough to run in about two minutes (the AGC case, 37 s, the longest).
    assert sum(c.duration_s + plan.settle_s for c in plan.cases) <= 130


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"droop_percent": 1.0}, "one of the two"),  # a droop and a knee
        ({"knee_hz": 0.0, "knee_percent": 0.0, "full_hz": 0.0}, "one of the two"),  # neither
        ({"knee_hz": 0.01}, "knee_hz"),
        ({"full_hz": 0.1}, "full_hz"),
    ],
)
def test_a_characteristic_is_a_droop_or_a_knee(change: dict[str, Any], says: str) -> None:
    knee = {"deadband_low_hz": 49.985, "deadband_high_hz": 50.015, "knee_hz": 0.2,
            "knee_percent": 5.0, "full_hz": 0.5}  # fmt: skip
    assert CharacteristicSpec.model_validate(knee).knee_hz == 0.2
    with pytest.raises(ValidationError, match=says):
        CharacteristicSpec.model_validate(knee | change)
