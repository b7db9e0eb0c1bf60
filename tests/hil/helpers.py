"""Shared by the HIL tests: the CLI as a subprocess, plans written to a directory, and
the project's field controller as a device under test (:class:`Dut`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from tests.support.aio import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hil" / "plan.yaml"


def hil_run(plan: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m vpp hil run PLAN ARGS`` from the checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "vpp", "hil", "run", str(plan), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        check=False,
    )


def write_plan(where: Path, plan: dict[str, Any], name: str = "plan.yaml") -> Path:
    """``plan`` as YAML in ``where``."""
    path = where / name
    path.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    return path


# --- the project's own field controller as a device under test -------------------------
# (docs/hil.md, "The project's own field controller as a device under test"): shared by
# tests/hil/test_hil_device.py (Modbus register map) and test_hil_device_sunspec_e2e.py.

IDCODE = 4242


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
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
    frames on ``udp_port``), ``meter_port`` the simulator's Modbus TCP port.

    ``inverter`` is the unit's inverter protocol: ``modbus_tcp`` (``vpp sim bess``, the
    register map) or ``sunspec`` (the SunSpec BESS simulator, ``vpp sim bess --sunspec``);
    the plan's meter reads that simulator by the same protocol."""

    def __init__(
        self,
        where: Path,
        droop_percent: float,
        deadband: tuple[float, float] = (49.90, 50.05),
        transport: str = "tcp",
        inverter: str = "modbus_tcp",
        ramp_kw_per_s: float = 500.0,
    ) -> None:
        self.pmu_port, self.meter_port = free_port(), free_port()
        self.transport = transport
        self.inverter = inverter
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
                    # Both protocols take host, port and timeout (a SunSpec device's unit
                    # id defaults to 1, as the simulator's).
                    "inverter": {"protocol": inverter, "poll_interval_s": 0.1,
                                 "config": {"host": "127.0.0.1", "port": self.meter_port,
                                            "timeout": 1.0}},
                    "droop": {"droop_percent": droop_percent, "deadband_low_hz": deadband[0],
                              "deadband_high_hz": deadband[1],
                              "ramp_kw_per_s": ramp_kw_per_s},
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
        sim_args = ["--port", str(self.meter_port), "--soc", "50", "--ramp-kw-s", "5000"]
        if self.inverter == "sunspec":
            sim_args.append("--sunspec")
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "vpp", "sim", "bess", *sim_args],
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
        only, see docs/hil.md); the meter reads the simulator the controller drives."""
        pmu: dict[str, Any] = {"host": "127.0.0.1", "port": self.pmu_port, "idcode": IDCODE,
                               "connect_timeout_s": connect_timeout_s}  # fmt: skip
        if self.transport == "udp":
            pmu |= {"transport": "udp", "udp_host": "127.0.0.1", "udp_port": self.udp_port,
                    "await_command": await_command}  # fmt: skip
        meter: dict[str, Any] = (
            {"host": "127.0.0.1", "port": self.meter_port, "device_id": 1,
             "register_map": "bess_default.yaml", "power_point": "active_power",
             "soc_point": "soc", "poll_s": 0.1}
            if self.inverter == "modbus_tcp"
            else {"protocol": "sunspec", "host": "127.0.0.1", "port": self.meter_port,
                  "device_id": 1, "power_model": 701, "soc_model": 713, "poll_s": 0.1}
        )  # fmt: skip
        return {"pmu": pmu, "meter": meter}

    def output(self, r: subprocess.CompletedProcess[str]) -> str:
        """The harness's output and the end of the DUT's log, for an assertion's message."""
        return r.stdout + r.stderr + self.logs.read_text(errors="replace")[-3000:]


def dut_plan(device: dict[str, Any], cases: list[dict[str, Any]]) -> dict[str, Any]:
    """A device plan for the 500 kW / 1000 kWh DUT."""
    return {"name": "dut", "target": "device", "unit": {"rated_kw": 500, "capacity_kwh": 1000},
            "rate": 50, "settle_s": 3, "device": device, "cases": cases}  # fmt: skip


# The IEGC step to 49.50 Hz: a 5 % droop from the deadband's edge (49.90 Hz) answers
# 0.4 / 2.5 of the 500 kW rating, 80 kW.
IEGC = {"name": "iegc-step-49.50", "procedure": "iegc_primary",
        "profile": {"kind": "step", "from_hz": 50.0, "to_hz": 49.50, "at_s": 2.0},
        "duration_s": 12, "start": {"soc_pct": 50, "base_kw": 0}}  # fmt: skip
IEGC_KW = 80.0


def junit_cases(junit: Path) -> dict[str, ET.Element]:
    """The JUnit report's test cases by name."""
    suite = ET.parse(junit).getroot()
    return {tc.attrib["name"]: tc for tc in suite.findall("testcase")}


def failures(tc: ET.Element) -> set[str]:
    """The criteria a JUnit test case failed."""
    return {f.attrib["type"] for f in tc.findall("failure")}


def props(tc: ET.Element) -> dict[str, str]:
    """A JUnit test case's properties (each criterion's measured value or why not)."""
    return {p.attrib["name"]: p.attrib["value"] for p in tc.iter("property")}


def last_row(csv: Path) -> dict[str, str]:
    """The last row of a case's CSV, by column."""
    rows = csv.read_text().splitlines()
    return dict(zip(rows[0].split(","), rows[-1].split(","), strict=True))
