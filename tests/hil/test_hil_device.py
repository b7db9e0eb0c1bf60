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

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import yaml

from tests.hil.helpers import ROOT, hil_run, write_plan
from tests.support.aio import free_port

IDCODE = 4242


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the BESS simulator ended (exit {proc.returncode})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


class Dut:
    """The device under test: the BESS simulator and the field controller, two
    processes; ``pmu_port`` is where the harness must serve C37.118 (TCP; with
    ``transport`` udp the controller fetches the configuration there and takes the data
    frames on ``udp_port``), ``meter_port`` the simulator's Modbus TCP port."""

    def __init__(
        self,
        where: Path,
        droop_percent: float,
        deadband: tuple[float, float] = (49.90, 50.05),
        transport: str = "tcp",
    ) -> None:
        self.pmu_port, self.meter_port = free_port(), free_port()
        self.transport = transport
        # The controller binds this UDP port for the PMU's data (free_port checks TCP;
        # a loopback port free for TCP is as good a guess for UDP).
        self.udp_port = free_port() if transport == "udp" else 0
        pmu: dict[str, Any] = {"host": "127.0.0.1", "port": self.pmu_port, "idcode": IDCODE}
        if transport == "udp":
            pmu |= {"transport": "udp", "udp_port": self.udp_port}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = where / "dut.log"
        self._log: BinaryIO | None = None
        site = {
            "site": {"name": f"hil-dut-{self.pmu_port}"},
            "field": [{
                "id": "field-a",
                "pmu": pmu,
                "units": [{
                    "id": "dut", "rated_power_kw": 500, "capacity_kwh": 1000,
                    "inverter": {"protocol": "modbus_tcp", "poll_interval_s": 0.1,
                                 "config": {"host": "127.0.0.1", "port": self.meter_port,
                                            "timeout": 1.0}},
                    "droop": {"droop_percent": droop_percent, "deadband_low_hz": deadband[0],
                              "deadband_high_hz": deadband[1], "ramp_kw_per_s": 500.0},
                }],
            }],
            "campus": {"enabled": False},
            "grid": {"enabled": False},
            "market": {"enabled": False},
            "history": {"path": str(where / "dut-history.db")},
        }  # fmt: skip
        self.site = where / "site.yaml"
        self.site.write_text(yaml.safe_dump(site, sort_keys=False), encoding="utf-8")

    def start(self) -> None:
        """The simulator, then the controller (which keeps reconnecting to the PMU)."""
        self._log = log = self.logs.open("ab")
        # The inverter follows at 10 p.u./s: the ramp under test is the controller's.
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "vpp", "sim", "bess", "--port", str(self.meter_port),
             "--soc", "50", "--ramp-kw-s", "5000"],
            cwd=ROOT, env=_env(), stdout=log, stderr=log,
        ))  # fmt: skip
        _wait_listening(self.meter_port, self.procs[0])
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "vpp", "run", "--only", "field-a", "--config",
             str(self.site), "--duration", "600"],
            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=log,
        ))  # fmt: skip

    def stop(self) -> None:
        """Kill every process (teardown: a test's failure must not leave one behind)."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        if self._log is not None:
            self._log.close()

    def device_section(
        self, connect_timeout_s: float = 30.0, await_command: bool = True
    ) -> dict[str, Any]:
        """The plan's ``device:`` section pointing at this DUT (``await_command``: UDP
        only, see docs/hil.md)."""
        pmu: dict[str, Any] = {"host": "127.0.0.1", "port": self.pmu_port, "idcode": IDCODE,
                               "connect_timeout_s": connect_timeout_s}  # fmt: skip
        if self.transport == "udp":
            pmu |= {"transport": "udp", "udp_host": "127.0.0.1", "udp_port": self.udp_port,
                    "await_command": await_command}  # fmt: skip
        return {
            "pmu": pmu,
            "meter": {"host": "127.0.0.1", "port": self.meter_port, "device_id": 1,
                      "register_map": "bess_default.yaml", "power_point": "active_power",
                      "soc_point": "soc", "poll_s": 0.1},
        }  # fmt: skip


@pytest.fixture
def dut_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Dut] = []

    def make(
        droop_percent: float,
        deadband: tuple[float, float] = (49.90, 50.05),
        transport: str = "tcp",
    ) -> Dut:
        dut = Dut(tmp_path, droop_percent, deadband, transport)
        made.append(dut)
        dut.start()
        return dut

    yield make
    for dut in made:
        dut.stop()


def _plan(device: dict[str, Any], cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "dut", "target": "device", "unit": {"rated_kw": 500, "capacity_kwh": 1000},
            "rate": 50, "settle_s": 3, "device": device, "cases": cases}  # fmt: skip


IEGC = {"name": "iegc-step-49.50", "procedure": "iegc_primary",
        "profile": {"kind": "step", "from_hz": 50.0, "to_hz": 49.50, "at_s": 2.0},
        "duration_s": 12, "start": {"soc_pct": 50, "base_kw": 0}}  # fmt: skip


def _cases(junit: Path) -> dict[str, ET.Element]:
    suite = ET.parse(junit).getroot()
    return {tc.attrib["name"]: tc for tc in suite.findall("testcase")}


def _failures(tc: ET.Element) -> set[str]:
    return {f.attrib["type"] for f in tc.findall("failure")}


def _props(tc: ET.Element) -> dict[str, str]:
    return {p.attrib["name"]: p.attrib["value"] for p in tc.iter("property")}


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
    plan = write_plan(tmp_path, _plan(device, [IEGC, wrong_soc]))
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out), timeout=200)
    output = r.stdout + r.stderr + dut.logs.read_text(errors="replace")[-3000:]
    assert r.returncode == 1, output  # the wrong-SOC case fails
    cases = _cases(out / "junit.xml")
    assert _failures(cases["iegc-step-49.50"]) == set(), output
    assert _failures(cases["iegc-at-80pct"]) == {"not_run"}, output
    reason = cases["iegc-at-80pct"].find("failure")
    assert reason is not None and "not the stated 80 % " in (reason.text or ""), output
    props = _props(cases["iegc-step-49.50"])
    # Judged from the measured power; what needs a setpoint is not judged, never passed.
    for crit in ("start_delay", "full_delay", "rms_error", "max_error", "rel_rms_error",
                 "within_rating", "meter_readings"):  # fmt: skip
        assert not props[crit].startswith("not judged"), crit
    assert props["within_envelope"].startswith("not judged: a device reports no setpoint")
    # The device really answered: a 5 % droop from the deadband's edge (49.90 Hz) to
    # 49.50 Hz is 0.4 / 2.5 of the 500 kW rating, 80 kW.
    rows = (out / "iegc-step-49.50.csv").read_text().splitlines()
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(","), strict=True))
    assert abs(float(last["measured_kw"]) - 80.0) < 8.0, last
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
    plan = write_plan(tmp_path, _plan(dut.device_section(), [fcr]))
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out), timeout=120)
    output = r.stdout + r.stderr + dut.logs.read_text(errors="replace")[-3000:]
    assert r.returncode == 0, output
    props = _props(_cases(out / "junit.xml")["fcr-step-50.20"])
    assert float(props["within_rating"]) > 95.0, props  # full charge at +200 mHz


@TRANSPORTS
def test_a_mistuned_droop_fails_the_right_criteria(
    tmp_path: Path, dut_factory: Any, transport: str
) -> None:
    dut = dut_factory(10.0, transport=transport)  # half the response IEGC asks for
    plan = write_plan(tmp_path, _plan(dut.device_section(), [IEGC]))
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out), timeout=120)
    output = r.stdout + r.stderr + dut.logs.read_text(errors="replace")[-3000:]
    assert r.returncode == 1, output
    failed = _failures(_cases(out / "junit.xml")["iegc-step-49.50"])
    # Half the response: never reaches 90 % of the expected, errors too large; but it
    # starts in time.
    assert {"full_delay", "rms_error", "rel_rms_error"} <= failed, output
    assert "start_delay" not in failed and "meter_readings" not in failed, output


@TRANSPORTS
def test_a_device_that_never_connects_fails_its_case(tmp_path: Path, transport: str) -> None:
    # Nothing on either port (the DUT is configured, never started): not run. Over UDP
    # the frames go out regardless; no command on TCP is what shows nobody is there.
    dut = Dut(tmp_path, 5.0, transport=transport)
    plan = write_plan(tmp_path, _plan(dut.device_section(connect_timeout_s=1.5), [IEGC]))
    out = tmp_path / "out"
    r = hil_run(plan, "--out", str(out), timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    tc = _cases(out / "junit.xml")["iegc-step-49.50"]
    fail = tc.find("failure")
    assert fail is not None and fail.attrib["type"] == "not_run"
    says = "turn data on" if transport == "tcp" else "send a command"
    assert "did not connect to the PMU" in (fail.text or "") and says in (fail.text or "")
    assert "not_run" in r.stdout
