"""``vpp hil run`` against the ``device`` target, with a device under test in separate
processes reached only through its protocols (docs/hil.md, "The device target").

The device under test is this project's own field controller, run as a user runs it
(``python -m vpp run --only field-a --config SITE.yaml``), whose PMU is the harness's
C37.118 port and whose inverter is the BESS simulator in another process
(``python -m vpp sim bess``) over Modbus TCP; the harness reads that simulator's
``active_power`` and ``soc`` input registers as its meter. Ports are chosen free at run
time, everything is on loopback, and every subprocess is killed on teardown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

# The field controller takes its PMU stream over TCP, or over UDP (the configuration
# fetched over TCP, the data frames by UDP to its port): the harness serves either.
TRANSPORTS = pytest.mark.parametrize("transport", ["tcp", "udp"])


# Over UDP also without waiting for the device's command: the settle starts at once.
@pytest.mark.parametrize(
    ("transport", "await_command"), [("tcp", True), ("udp", True), ("udp", False)]
)
def test_the_field_controller_as_a_device_passes_iegc(
    tmp_path: Path, dut_factory: Any, transport: str, await_command: bool
) -> None:
    dut = dut_factory(5.0, transport=transport)
    # A case whose stated SOC the device is not at is not run, with the reason.
    wrong_soc = {**IEGC, "name": "iegc-at-80pct", "start": {"soc_pct": 80}}
    device = dut.device_section(await_command=await_command)
    plan = write_plan(tmp_path, dut_plan(device, [IEGC, wrong_soc]))
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out), timeout=200)
    output = dut.output(r)
    assert r.returncode == 1, output  # the wrong-SOC case fails
    cases = junit_cases(out / "junit.xml")
    assert failures(cases["iegc-step-49.50"]) == set(), output
    assert failures(cases["iegc-at-80pct"]) == {"not_run"}, output
    reason = cases["iegc-at-80pct"].find("failure")
    assert reason is not None and "not the stated 80 % " in (reason.text or ""), output
    judged = props(cases["iegc-step-49.50"])
    # Judged from the measured power; what needs a setpoint is not judged, never passed.
    for crit in ("start_delay", "full_delay", "rms_error", "max_error", "rel_rms_error",
                 "within_rating", "meter_readings"):  # fmt: skip
        assert not judged[crit].startswith("not judged"), crit
    assert judged["within_envelope"].startswith("not judged: a device reports no setpoint")
    # The device really answered: a 5 % droop from the deadband's edge (49.90 Hz) to
    # 49.50 Hz is 0.4 / 2.5 of the 500 kW rating, 80 kW.
    last = last_row(out / "iegc-step-49.50.csv")
    assert abs(float(last["measured_kw"]) - IEGC_KW) < 8.0, last
    assert last["setpoint_kw"] == "nan"
    assert (out / "iegc-step-49.50.cfg").exists() and (out / "iegc-step-49.50.dat").exists()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "NOT JUDGED" in html and "a device reached through its protocols" in html
    assert ("the data over UDP to 127.0.0.1:" in html) == (transport == "udp")
    assert "within_envelope  -         -      NOT JUDGED" in r.stdout


def test_an_fcr_tuned_device_passes_fcr(tmp_path: Path, dut_factory: Any) -> None:
    # FCR's characteristic (deadband 49.99-50.01 Hz, full at 200 mHz: droop 0.38 %) set
    # in the device's own configuration, as a site would tune it.
    dut = dut_factory(0.38, (49.99, 50.01))
    fcr = {"name": "fcr-step-50.20", "procedure": "fcr_ce",
           "profile": {"kind": "step", "from_hz": 50.0, "to_hz": 50.20, "at_s": 2.0},
           "duration_s": 10, "start": {"soc_pct": 50}}  # fmt: skip
    plan = write_plan(tmp_path, dut_plan(dut.device_section(), [fcr]))
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out), timeout=120)
    output = dut.output(r)
    assert r.returncode == 0, output
    judged = props(junit_cases(out / "junit.xml")["fcr-step-50.20"])
    assert float(judged["within_rating"]) > 95.0, judged  # full charge at +200 mHz


@TRANSPORTS
def test_a_mistuned_droop_fails_the_right_criteria(
    tmp_path: Path, dut_factory: Any, transport: str
) -> None:
    dut = dut_factory(10.0, transport=transport)  # half the response IEGC asks for
    plan = write_plan(tmp_path, dut_plan(dut.device_section(), [IEGC]))
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out), timeout=120)
    output = dut.output(r)
    assert r.returncode == 1, output
    failed = failures(junit_cases(out / "junit.xml")["iegc-step-49.50"])
    # Half the response: never reaches 90 % of the expected, errors too large; but it
    # starts in time.
    assert {"full_delay", "rms_error", "rel_rms_error"} <= failed, output
    assert "start_delay" not in failed and "meter_readings" not in failed, output


@TRANSPORTS
def test_a_device_that_never_connects_fails_its_case(tmp_path: Path, transport: str) -> None:
    # Nothing on either port (the DUT is configured, never started): not run. Over UDP
    # the frames go out regardless; no command on TCP is what shows nobody is there.
    dut = Dut(tmp_path, 5.0, transport=transport)
    plan = write_plan(tmp_path, dut_plan(dut.device_section(connect_timeout_s=1.5), [IEGC]))
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out), timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    tc = junit_cases(out / "junit.xml")["iegc-step-49.50"]
    fail = tc.find("failure")
    assert fail is not None and fail.attrib["type"] == "not_run"
    says = "turn data on" if transport == "tcp" else "send a command"
    assert "did not connect to the PMU" in (fail.text or "") and says in (fail.text or "")
    assert "not_run" in r.stdout
