"""The default site steered by foreign SCADA masters on loopback: c104 over IEC 104 and
opendnp3 over DNP3 interrogate it and send AGC set-points; the fleet follows within the
reserve; the points show it; the campus audits each command with the identity ``scada``.

``vpp run`` runs in a subprocess (the embedded site, its simulated despatch centre off
so that only the test steers it), as a user runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c104
import opendnp3 as o
import pytest

from tests.orchestrator.procs import ROOT
from tests.orchestrator.scada.dnp3_peers import ForeignMaster
from tests.orchestrator.scada.dnp3_peers import until as until_dnp3
from tests.orchestrator.scada.iec104_peers import c104_master, until
from tests.support.aio import run

# The default IEC 104 map's addresses (vpp/orchestrator/scada/maps/iec104_default.yaml).
P_MW, TARGET_MW, UNITS_ONLINE, AGC_SETPOINT, AGC_OFFSET = 1001, 1006, 1007, 1009, 1010
ENABLED, AGC_CMD, ENABLE_CMD = 1101, 5001, 5003
FLOAT, SINGLE = c104.Type.M_ME_NC_1, c104.Type.M_SP_NA_1
MONITOR = {P_MW: FLOAT, TARGET_MW: FLOAT, UNITS_ONLINE: FLOAT, AGC_SETPOINT: FLOAT,
           AGC_OFFSET: FLOAT, ENABLED: SINGLE}  # fmt: skip
# The default DNP3 map: AO 146 is the AGC set-point (kW), AI 213 its read-back (kW).
AO_AGC, AI_AGC = 146, 213


@dataclass
class Site:
    proc: subprocess.Popen[bytes]
    history: Path
    log: Path
    ports: dict[str, int]

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(f"file:{self.history}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def wait_rows(self, sql: str, *params: Any, timeout: float = 20,
                  until: Any = bool) -> list[tuple[Any, ...]]:  # fmt: skip
        """The rows of ``sql`` once ``until(rows)`` (the history is flushed every second)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows(sql, *params)
            if until(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    tmp = Path(tempfile.mkdtemp(prefix="vppscada-", dir="/tmp"))
    d, history, log = tmp / "run", tmp / "h.db", tmp / "run.log"
    env = {**os.environ, "VPP_RUN_DIR": str(d), "VPP__API__PORT": "0",
           "VPP__SCADA__IEC104__PORT": "0", "VPP__SCADA__DNP3__PORT": "0",
           "VPP__SIMULATION__LDC__ENABLED": "false"}  # fmt: skip
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpp", "run", "--duration", "600", "--history", str(history)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        record = d / "site.json"
        where: dict[str, str] = {}
        while not where:
            assert proc.poll() is None, f"vpp run ended: {log.read_text()}"
            assert time.monotonic() < deadline, "no outstations in site.json"
            time.sleep(0.2)
            with contextlib.suppress(OSError, ValueError):
                where = json.loads(record.read_text()).get("scada") or {}
        ports = {k: int(v.rpartition(":")[2]) for k, v in where.items()}
        said = f"vpp run: IEC 60870-5-104 outstation at {where['iec104']}"
        while said not in log.read_text():
            assert time.monotonic() < deadline, f"not announced: {said}"
            time.sleep(0.2)
        # The launcher checked the ports; the scada process binds them once it started.
        for port in ports.values():
            while True:
                assert time.monotonic() < deadline, f"nothing listens on port {port}"
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.2)
        yield Site(proc, history, log, ports)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)


def _value(m: Any, ioa: int) -> float:
    return float(m.points[ioa].value)


def test_an_iec104_master_interrogates_and_steers_the_site_with_agc(site: Site) -> None:
    async def go() -> None:
        async with c104_master(site.ports["iec104"], MONITOR) as m:
            setpoint = m.add(AGC_CMD, c104.Type.C_SE_NC_1)
            assert await asyncio.to_thread(m.interrogate)
            # Every unit online (the units' telemetry reaches the points; a change goes
            # out spontaneously).
            await until(lambda: _value(m, UNITS_ONLINE) == 3.0, timeout=60)
            before = _value(m, TARGET_MW) - _value(m, AGC_OFFSET)
            # 0.5 MW asked, 0.2 MW reserved up: the offset stops at 0.2 MW.
            setpoint.value = 0.5
            assert await asyncio.to_thread(m.command, setpoint)
            # These points are registered with c104 as M_ME_NC_1, which takes the cyclic
            # updates (every 10 s) and not the time-tagged spontaneous ones: wait for two.
            await until(lambda: _value(m, AGC_SETPOINT) == pytest.approx(0.5), timeout=25)
            await until(lambda: _value(m, AGC_OFFSET) == pytest.approx(0.2, abs=0.011),
                        timeout=30)  # fmt: skip
            # The target is the schedule plus the offset (the schedule holds within its
            # 15-minute block; the market may re-trade it, hence the tolerance).
            await until(lambda: _value(m, TARGET_MW) - before == pytest.approx(0.2, abs=0.02),
                        timeout=30)  # fmt: skip
            # The fleet's power follows its target (primary response aside).
            await until(lambda: abs(_value(m, P_MW) - _value(m, TARGET_MW)) < 0.1, timeout=30)
            # Beyond the plant's 1.5 MW: the sink refuses it, the master is told.
            setpoint.value = 5.0
            assert not await asyncio.to_thread(m.command, setpoint)

    run(go(), timeout=180)
    # The campus audited the accepted set-point with the transport's identity.
    rows = site.wait_rows("SELECT identity, ok FROM commands WHERE command = 'agc' "
                          "AND server = 'campus'", until=lambda r: ("scada", 1) in r)  # fmt: skip
    assert ("scada", 1) in rows
    # The refused one is in the history too, with the master's address.
    refused = site.wait_rows("SELECT text FROM events WHERE kind = 'scada' AND "
                             "text LIKE '%agc.setpoint_mw := 5.0: refused%'")  # fmt: skip
    assert refused and "outside the plant's rating" in refused[0][0]
    assert "iec104 127.0.0.1:" in refused[0][0]


def test_an_iec104_master_disables_and_enables_the_plant_with_select_before_execute(
    site: Site,
) -> None:
    async def go() -> None:
        # The change goes out spontaneously, time-tagged (M_SP_TB_1).
        async with c104_master(site.ports["iec104"], {ENABLED: c104.Type.M_SP_TB_1}) as m:
            enable = m.add(ENABLE_CMD, c104.Type.C_SC_NA_1, sbe=True)
            enable.value = False
            assert await asyncio.to_thread(m.command, enable)
            # (Received, not c104's initial False.)
            await until(lambda: m.points[ENABLED].recorded_at is not None
                        and m.points[ENABLED].value is False, timeout=20)  # fmt: skip
            await asyncio.sleep(2.0)  # disabled for a while, not only for a telemetry message
            enable.value = True
            assert await asyncio.to_thread(m.command, enable)
            await until(lambda: m.points[ENABLED].value is True, timeout=20)

    run(go(), timeout=120)
    want = {("bess-1", "disable"), ("bess-3", "enable")}

    def actions(rows: list[tuple[Any, ...]]) -> set[tuple[str, str]]:
        return {(t, json.loads(p)["action"]) for t, p in rows}

    rows = site.wait_rows("SELECT target, params FROM commands WHERE command = 'control' "
                          "AND identity = 'scada' AND ok = 1",
                          until=lambda r: want <= actions(r))  # fmt: skip
    assert want <= actions(rows)


def test_a_dnp3_master_polls_the_site_and_sends_an_agc_set_point(site: Site) -> None:
    async def go() -> None:
        with ForeignMaster(site.ports["dnp3"]) as m:
            await until_dnp3(lambda: len(m.values("Group30Var1")) > 10, 30, "integrity poll")
            status = await m.command("SelectAndOperate", o.AnalogOutputFloat32(-150.0), AO_AGC)
            assert status == "SUCCESS"

            def read_back() -> bool:
                m.master.ScanClasses(o.ClassField.AllClasses(), m._soe)
                v = m.values("Group30Var1").get(AI_AGC)
                return v is not None and v.value == -150

            await until_dnp3(read_back, 20, "the AGC set-point read back")

    run(go(), timeout=120)
    rows = site.wait_rows("SELECT params FROM commands WHERE command = 'agc' AND "
                          "identity = 'scada' AND params LIKE '%-0.15%'")  # fmt: skip
    assert rows


def test_vpp_sim_scada_steers_the_running_site(site: Site) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "vpp", "sim", "scada", "--port", str(site.ports["iec104"]),
         "--duration", "5", "--cycle", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("vpp sim scada: connected to 127.0.0.1:")
    assert "clock sync confirmed" in lines[1]
    sent = [ln for ln in lines if "AGC set-point" in ln]
    assert len(sent) >= 4 and all("accepted" in ln for ln in sent), r.stdout


def test_vpp_sim_scada_without_an_outstation_is_one_line_and_exit_1() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "vpp", "sim", "scada", "--port", str(port),
                        "--duration", "2"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert f"cannot reach the outstation at 127.0.0.1:{port}" in r.stderr


def test_an_outstation_port_in_use_stops_vpp_run_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {**os.environ, "VPP_RUN_DIR": str(tmp_path / "run"),
               "VPP__SCADA__IEC104__PORT": str(port)}  # fmt: skip
        r = subprocess.run([sys.executable, "-m", "vpp", "run", "--duration", "5", "--history",
                            str(tmp_path / "h.db")], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip() == (f"vpp run: ConfigError: scada.iec104: cannot listen on "
                                f"127.0.0.1:{port}: Address already in use")  # fmt: skip
