"""``vpp hil run`` against the ``device`` target with the response read back over
SunSpec, end to end (docs/hil.md, "The project's own field controller as a device under
test").

Three processes besides the harness, reached only through their protocols: the SunSpec
BESS simulator (``vpp sim bess --sunspec``, a SunSpec Modbus TCP server), and this
project's field controller (``python -m vpp run --only field-a``) whose PMU is the
harness's C37.118 port and whose unit's inverter is that simulator with ``protocol:
sunspec``. The plan's meter is ``protocol: sunspec``: the harness discovers the same
simulator's models and reads 701 ``W`` and 713 ``SoC``. So the chain is the harness's
PMU -> the controller's droop -> SunSpec writes (704) -> the simulated battery -> SunSpec
reads (701/713) -> the criteria. TCP only: the PMU's UDP path is covered by
test_hil_device.py and does not change with the meter's protocol.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hil.helpers import (
    IEGC,
    IEGC_KW,
    Dut,
    dut_plan,
    failures,
    hil_run,
    junit_cases,
    last_row,
    props,
    write_plan,
)


def test_a_sunspec_device_passes_iegc_read_back_over_sunspec(
    tmp_path: Path, dut_factory: Callable[..., Dut]
) -> None:
    dut = dut_factory(5.0, inverter="sunspec")
    device = dut.device_section()
    assert device["meter"]["protocol"] == "sunspec"  # not the register map's points
    plan = write_plan(tmp_path, dut_plan(device, [IEGC]))
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out), timeout=120)
    output = dut.output(r)
    assert r.returncode == 0, output
    judged = props(junit_cases(out / "junit.xml")["iegc-step-49.50"])
    # Every criterion judged from the power read over SunSpec is judged and passed
    # (exit 0); none of them is skipped for want of a reading.
    for crit in ("start_delay", "full_delay", "rms_error", "max_error", "rel_rms_error",
                 "within_rating", "meter_readings"):  # fmt: skip
        assert not judged[crit].startswith("not judged"), (crit, judged[crit])
    assert float(judged["meter_readings"]) == 0.0, judged  # no failed SunSpec poll
    # The response reached the battery and came back over SunSpec with 701's sign and
    # scale (+ discharge, kW): a 5 % droop at 49.50 Hz is 80 kW; 713's SoC is the
    # simulator's 50 % (80 kW for 10 s moves 1000 kWh by 0.02 %).
    last = last_row(out / "iegc-step-49.50.csv")
    assert abs(float(last["measured_kw"]) - IEGC_KW) < 8.0, last
    assert abs(float(last["soc_pct"]) - 50.0) < 0.5, last
    # Before the step (case time < 2 s, in the deadband) the battery was idle: the
    # 80 kW is the step's response, not a standing output.
    with (out / "iegc-step-49.50.csv").open(newline="") as f:
        before = [float(row["measured_kw"]) for row in csv.DictReader(f)
                  if float(row["t_s"]) < 1.5]  # fmt: skip
    assert before and max(abs(kw) for kw in before) < 2.0, before[:5]


# A droop of 10 % answers half the 80 kW, at once: late to 90 % (never), errors too
# large, but started in time. A 5 kW/s ramp reaches 10 % of it (IEGC's start_fraction)
# 1.6 s after the step (limit 1 s) and 90 % 14 s after, when the case has ended (10 s
# after the step): late to start and to full, so no linear ramp fails only one of them.
@pytest.mark.parametrize(
    ("droop_percent", "ramp_kw_per_s", "fails", "passes"),
    [
        (10.0, 500.0, {"full_delay", "rms_error", "rel_rms_error"}, {"start_delay"}),
        (5.0, 5.0, {"start_delay", "full_delay", "rms_error"}, {"within_rating"}),
    ],
    ids=["droop-10pct", "ramp-5kw-s"],
)
def test_a_mistuned_sunspec_device_fails_the_right_criteria(
    tmp_path: Path,
    dut_factory: Callable[..., Dut],
    droop_percent: float,
    ramp_kw_per_s: float,
    fails: set[str],
    passes: set[str],
) -> None:
    dut = dut_factory(droop_percent, inverter="sunspec", ramp_kw_per_s=ramp_kw_per_s)
    plan = write_plan(tmp_path, dut_plan(dut.device_section(), [IEGC]))
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out), timeout=120)
    output = dut.output(r)
    assert r.returncode == 1, output
    failed = failures(junit_cases(out / "junit.xml")["iegc-step-49.50"])
    assert fails <= failed, (failed, output)
    assert not passes & failed, (failed, output)
    # Every SunSpec poll was answered and the case ran: the failures are the tuning's,
    # not the read-back's.
    assert "meter_readings" not in failed and "not_run" not in failed, output
