"""The AGC procedure (docs/hil.md, "AGC"): set-points played into the campus in the loop
(the campus aggregator, a field controller and its simulated units on an authenticated
ZeroMQ bus, real sockets, real time) pass; a campus whose ramp is far too slow fails the
full response but not its start; a campus given no reserve fails both; the criteria on
built records; a malformed AGC case is one line naming the file and the field."""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.hil.helpers import hil_run, write_plan
from vpp.errors import ConfigError
from vpp.hil.agc_target import EXTRA
from vpp.hil.comtrade import read_comtrade
from vpp.hil.criteria import evaluate
from vpp.hil.plan import Case, load_plan, load_procedure
from vpp.hil.runner import CaseRecord

NAN = math.nan
AGC_CRITERIA = {"start_delay", "full_delay", "tracking_rms_error", "tracking_max_error",
                "within_reserve", "within_envelope", "within_rating"}  # fmt: skip


def _agc(*points: tuple[float, float]) -> dict[str, Any]:
    return {"kind": "agc", "setpoints": [{"at_s": t, "mw": mw} for t, mw in points]}


def _failures(junit: Path) -> dict[str, set[str]]:
    suite = ET.parse(junit).getroot()
    return {tc.attrib["name"]: {f.attrib["type"] for f in tc.findall("failure")}
            for tc in suite.findall("testcase")}  # fmt: skip


def test_the_campus_follows_and_a_slow_ramp_or_no_reserve_fail(tmp_path: Path) -> None:
    fast = {"campus": {"ramp_mw_per_min": 12.0, "dispatch_interval_s": 0.5}}
    plan = write_plan(tmp_path, {
        "name": "agc", "settle_s": 2,
        "cases": [
            # 0.2 MW/s: +0.5 MW is full in about 3 s, the swing to -0.3 MW in about 5 s.
            {"name": "follows", "procedure": "sras_agc", "duration_s": 18,
             "profile": _agc((0, 0.5), (10, -0.3)), "agc": fast,
             "criteria": {"agc_start_s": 3, "agc_full_s": 8}},
            # 1.5 MW/min: 10 % of the 0.5 MW step in 2 s, the rest in 18 s (limit 10 s).
            {"name": "slow-ramp", "procedure": "sras_agc", "duration_s": 13,
             "profile": _agc((0, 0.5)),
             "agc": {"campus": {"ramp_mw_per_min": 1.5, "dispatch_interval_s": 0.5}},
             "criteria": {"agc_start_s": 4, "agc_full_s": 10}},
            # The campus was given no reserve: it follows nothing of the 0.5 MW it owes.
            {"name": "no-reserve", "procedure": "sras_agc", "duration_s": 8,
             "profile": _agc((0, 0.5)),
             "agc": {"campus": {"reserved_up_mw": 0.0, "reserved_down_mw": 0.0,
                                "dispatch_interval_s": 0.5}},
             "criteria": {"agc_start_s": 3, "agc_full_s": 6}},
        ],
    })  # fmt: skip
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out))
    output = r.stdout + r.stderr
    assert r.returncode == 1, output
    fails = _failures(out / "junit.xml")
    assert fails["follows"] == set(), output
    assert fails["slow-ramp"] == {"full_delay"}, output
    assert {"start_delay", "full_delay"} <= fails["no-reserve"], output
    assert not fails["no-reserve"] & {"within_reserve", "within_envelope", "within_rating"}
    assert "agc: FAIL (1/3 cases passed)" in r.stdout
    suite = ET.parse(out / "junit.xml").getroot()
    follows = suite.find("testcase[@name='follows']")
    assert follows is not None and follows.attrib["classname"] == "agc.sras_agc"
    props = {p.attrib["name"]: p.attrib["value"] for p in follows.iter("property")}
    assert set(props) == AGC_CRITERIA
    assert 0.0 < float(props["start_delay"]) <= 3.0 and float(props["full_delay"]) <= 8.0
    slow = suite.find("testcase[@name='slow-ramp']")
    assert slow is not None
    slow_props = {p.attrib["name"]: p.attrib["value"] for p in slow.iter("property")}
    assert float(slow_props["start_delay"]) <= 4.0
    # Not full: the tracking error has nothing to be judged on, and says so.
    assert slow_props["tracking_rms_error"].startswith("not judged")
    # The record: the set-points went through the campus to the units and back.
    with (out / "follows.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert set(EXTRA) <= set(rows[0])
    at = {round(float(r["t_s"]), 2): r for r in rows}
    assert float(at[8.0]["agc_setpoint_kw"]) == 500.0
    assert float(at[8.0]["campus_offset_kw"]) == pytest.approx(500.0)
    assert float(at[8.0]["measured_kw"]) == pytest.approx(500.0, abs=5.0)
    assert float(at[8.0]["base_kw"]) == pytest.approx(500.0)
    assert float(at[17.0]["measured_kw"]) == pytest.approx(-300.0, abs=5.0)
    assert float(at[17.0]["soc_pct"]) < 50.0  # it discharged, then charges
    rec = read_comtrade(out / "follows.cfg")
    assert {"agc_setpoint", "campus_offset", "base", "measured"} <= set(rec.analog)
    assert rec.units["agc_setpoint"] == "kW" and rec.units["unit_peak"] == "%"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "AGC: set-point and response" in html and "authenticated ZeroMQ bus" in html
    for crit in AGC_CRITERIA:
        assert f"<td>{crit}</td>" in html


# ---- criteria on built records -----------------------------------------------------


def _case(**over: Any) -> Case:
    data = {"name": "c", "procedure": "sras_agc", "duration_s": 20,
            "profile": _agc((0, 0.5)), "criteria": {"agc_start_s": 3, "agc_full_s": 8}}  # fmt: skip
    return Case.model_validate(data | over)


def _record(response: Any, setpoint_kw: float = 500.0) -> CaseRecord:
    """50 frames/s from -1.5 s to 20 s; two units, the set-point from 0 s on; the summed
    measured power is ``response(t)``."""
    rec = CaseRecord("c", 0.0, 1000.0, 1000.0, extra_columns=EXTRA)
    for n in range(-75, 1001):
        t = n / 50
        p = float(response(t))
        sp = setpoint_kw if t >= 0 else NAN
        rec.rows.append((t, 50.0, 0.0, p, p, -1000.0, 1000.0, p, 50.0, 0.0,
                         sp, NAN, NAN, p, 0.0, 100.0 * abs(p) / 1000.0))  # fmt: skip
    return rec


def test_agc_criteria_on_built_records() -> None:
    proc = load_procedure("sras_agc", Path("."))
    case = _case()

    def ramp(t: float) -> float:
        return min(max(t - 0.5, 0.0) * 200.0, 500.0)  # 0.2 MW/s from 0.5 s

    res = evaluate(proc, case, _record(ramp))
    got = {c.name: c for c in res.criteria}
    assert res.passed, [c.reason for c in res.criteria]
    assert got["start_delay"].value == pytest.approx(0.76, abs=0.03)  # 50 kW after 0.5 s
    assert got["full_delay"].value == pytest.approx(2.76, abs=0.03)  # within 50 kW of 500
    assert res.expected_kw[-1] == pytest.approx(500.0)
    # Beyond the reserve: 0.8 MW asked and delivered on 0.6 MW sold (the campus given more).
    sold = _case(agc={"reserve_up_mw": 0.6})
    over = evaluate(proc, sold, _record(lambda t: 800.0 if t >= 1 else 0.0, 800.0))
    bad = {c.name for c in over.criteria if not c.passed}
    # Never within the tolerance of the 1 MW owed: not full either.
    assert bad == {"within_reserve", "full_delay"}, over.criteria
    # An oscillating response is full at times but tracks badly.
    wobble = evaluate(proc, case, _record(lambda t: 500.0 + 150.0 * math.sin(t) if t >= 1 else 0))
    bad = {c.name for c in wobble.criteria if not c.passed}
    assert {"tracking_max_error", "tracking_rms_error"} <= bad and "start_delay" not in bad
    # Nothing asked: no signal, nothing proved.
    idle = evaluate(proc, case, _record(lambda t: 0.0, 0.0))
    assert {c.name for c in idle.criteria if not c.passed} == {"start_delay", "full_delay"}
    assert {n.name for n in idle.not_judged} == {"tracking_rms_error", "tracking_max_error"}
    # A unit outside its envelope, or beyond its rating.
    rec = _record(ramp)
    rec.rows[-1] = (*rec.rows[-1][:14], 3.0, 120.0)
    got = {c.name: c.passed for c in evaluate(proc, case, rec).criteria}
    assert not got["within_envelope"] and not got["within_rating"]


# ---- plan errors --------------------------------------------------------------------


def _plan(case: dict[str, Any], **over: Any) -> dict[str, Any]:
    base = {"name": "c1", "procedure": "sras_agc", "duration_s": 10,
            "profile": _agc((0, 0.5), (5, -0.5))}  # fmt: skip
    return {"name": "bad", "cases": [base | case], **over}


@pytest.mark.parametrize(
    ("plan", "says"),
    [
        (
            _plan({"profile": _agc((5, 0.5), (5, 0.2))}),
            "field 'cases.0.profile.agc': Value error, setpoints.1.at_s: 5 s is not after",
        ),
        (
            _plan({"profile": {"kind": "agc", "setpoints": []}}),
            "field 'cases.0.profile.agc.setpoints'",
        ),
        (
            _plan({"profile": {"kind": "agc", "setpoints": [{"at_s": 0, "mw": "0.5"}]}}),
            "field 'cases.0.profile.agc.setpoints.0.mw'",
        ),
        (
            _plan({"profile": {"kind": "agc", "setpoints": [{"at_s": -1, "mw": 0.5}]}}),
            "field 'cases.0.profile.agc.setpoints.0.at_s'",
        ),
        (
            _plan({"profile": {"kind": "agc", "setpoints": [{"at": 0, "mw": 0.5}]}}),
            "field 'cases.0.profile.agc.setpoints.0.at_s'",
        ),
        (
            _plan({"profile": _agc((0, 0.5), (12, 0.0))}),
            "field 'cases.0.profile.setpoints.1.at_s': the set-point at 12 s is not within",
        ),
        (
            _plan({"profile": _agc((0, 1.5))}),
            "field 'cases.0.profile.setpoints.0.mw': 1.5 MW is beyond the campus's rating "
            "+-1 MW (2 units of 500 kW)",
        ),
        (
            _plan({"profile": {"kind": "step", "to_hz": 49.5}}),
            "field 'cases.0.profile': an AGC procedure plays a profile of kind 'agc'",
        ),
        (
            _plan({"procedure": "iegc_primary"}),
            "field 'cases.0.profile': a profile of kind 'agc' goes with a procedure of kind 'agc'",
        ),
        (_plan({"agc": {"campus": {"units": 9}}}), "field 'cases.0.agc.campus.units'"),
        (_plan({"agc": {"cycle_s": 0}}), "field 'cases.0.agc.cycle_s'"),
        (
            _plan({"criteria": {"agc_start_fraction": 1.5}}),
            "field 'cases.0.criteria.agc_start_fraction'",
        ),
        (_plan({"criteria": {"agc_start": 3}}), "field 'cases.0.criteria.agc_start'"),
        (
            _plan({}, target="device", device={"pmu": {"port": 4712}, "meter": {"port": 5020}}),
            "field 'cases.0.procedure': case c1: an AGC case needs the campus in the loop",
        ),
    ],
)
def test_a_malformed_agc_case_is_a_config_error_naming_the_field(
    tmp_path: Path, plan: dict[str, Any], says: str
) -> None:
    path = write_plan(tmp_path, plan)
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1, msg
    assert msg.startswith(f"plan {path}: "), msg
    assert says in msg, msg


def test_a_malformed_agc_case_is_one_line_and_exit_2_from_the_command(tmp_path: Path) -> None:
    path = write_plan(tmp_path, _plan({"profile": _agc((0, 0.5), (0, 0.2))}))
    r = hil_run(path, "--out", str(tmp_path / "out"), timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vpp hil: ConfigError: plan "), r.stderr
    assert "field 'cases.0.profile.agc'" in lines[0] and "not after" in lines[0]
    assert not (tmp_path / "out").exists()
