"""``vpp ctl`` against a real site: ``vpp run`` in a subprocess (the embedded simulated
site, its own run directory through ``VPP_RUN_DIR``), one site shared by the module's
tests; each ``vpp ctl`` is a subprocess too, as a user runs it. What a command did is
read back from the site (a unit's status, the history the launcher writes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.orchestrator.procs import ROOT


def site_env(run_dir: Path) -> dict[str, str]:
    """The environment of ``vpp run`` and ``vpp ctl``: the test's run directory, and the
    site's HTTP API on any free port (8080 may be taken by another run on this host)."""
    return {**os.environ, "VPP_RUN_DIR": str(run_dir), "VPP__API__PORT": "0"}


@dataclass
class RunningSite:
    proc: subprocess.Popen[bytes]
    dir: Path
    history: Path
    log: Path

    @property
    def env(self) -> dict[str, str]:
        return site_env(self.dir)

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_ctl(self.env, *args, timeout=timeout)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(f"file:{self.history}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def wait_rows(
        self, sql: str, *params: Any, timeout: float = 20, count: int = 1
    ) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` once there are ``count`` (the history is flushed every
        second, so rows of commands a moment apart may land in two flushes)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows(sql, *params)
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


def run_ctl(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vpp", "ctl", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def units_of(doc: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {u: st for units in doc.values() for u, st in units.items()}


@pytest.fixture(scope="module")
def site() -> Iterator[RunningSite]:
    tmp = Path(tempfile.mkdtemp(prefix="vppctl-", dir="/tmp"))
    d, history, log = tmp / "run", tmp / "h.db", tmp / "run.log"
    env = site_env(d)
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpp", "run", "--duration", "600", "--history", str(history)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    s = RunningSite(proc, d, history, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"vpp run ended: {log.read_text()}"
            r = s.ctl("--json", "--timeout", "1", "units")
            assert "usage:" not in r.stderr, r.stderr
            if r.returncode == 0 and _up(s, units_of(json.loads(r.stdout))):
                break
            assert time.monotonic() < deadline, f"site not up: {r.stderr}"
            time.sleep(0.5)
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)


def _up(s: RunningSite, units: dict[str, dict[str, Any]]) -> bool:
    """Every unit online at its field controller, the launcher done starting (it says
    so on stderr), and the campus and the grid service have heard every unit: a field
    controller answers before the services' process has heard its first heartbeat."""
    if len(units) != 3 or not all(u["online"] for u in units.values()):
        return False
    if "vpp run: bus at" not in s.log.read_text():
        return False
    r = s.ctl("--json", "--timeout", "1", "status")
    if r.returncode != 0:
        return False
    doc = json.loads(r.stdout)
    heard = doc.get("campus", {}).get("units") == 3
    return bool(heard and doc.get("grid", {}).get("obligation_kw"))


def test_run_prints_its_bus_directory_and_writes_site_json(site: RunningSite) -> None:
    assert f"vpp run: bus at {site.dir}" in site.log.read_text()
    record = site.dir / "site.json"
    assert record.stat().st_mode & 0o777 == 0o600
    assert site.dir.stat().st_mode & 0o777 == 0o700
    info = json.loads(record.read_text())
    assert info["pid"] == site.proc.pid and info["config"] == "embedded"
    assert info["transport"] == "ipc" and info["keys_dir"] == str(site.dir / "keys")
    assert set(info["commands"]) == {"field-a", "field-b", "campus", "grid", "market"}
    assert info["events"] == f"ipc://{site.dir}/events-out"
    assert info["units"]["bess-3"]["field"] == "field-b"


def test_status_shows_every_service_and_unit(site: RunningSite) -> None:
    r = site.ctl("status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"site demo-site: pid {site.proc.pid}")
    assert any(x.startswith("grid:") for x in lines)
    assert any(x.startswith("market:") for x in lines)
    assert any(x.startswith("campus:") for x in lines)
    table = lines[lines.index("") + 1 :]
    assert table[0].split()[:3] == ["UNIT", "FIELD", "ONLINE"]
    assert sorted(x.split()[0] for x in table[1:]) == ["bess-1", "bess-2", "bess-3"]


def test_json_output_is_one_document(site: RunningSite) -> None:
    r = site.ctl("--json", "status")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["site"]["pid"] == site.proc.pid
    assert set(doc["fields"]) == {"field-a", "field-b"}
    assert doc["grid"]["obligation_kw"] > 0 and doc["campus"]["units"] == 3
    for args in (("events",), ("compliance",), ("safety-history", "bess-1"), ("schedule",)):
        r = site.ctl("--json", *args)
        assert r.returncode == 0, (args, r.stderr)
        json.loads(r.stdout)


def test_set_power_reaches_the_field_controller_and_is_audited(site: RunningSite) -> None:
    t0 = time.time()
    r = site.ctl("set-power", "bess-1", "123")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "bess-1: base power 123.0 kW"
    # The controller ran with it (the campus may set another base on a later round).
    decided = site.wait_rows("SELECT base_kw FROM decisions WHERE unit = 'bess-1' AND t >= ? "
                             "AND base_kw = 123.0", t0 - 1)  # fmt: skip
    assert decided, "no decision of bess-1 with base 123 kW"
    audit = site.wait_rows("SELECT server, identity, role, ok FROM commands WHERE "
                           "command = 'set_power' AND target = 'bess-1'")  # fmt: skip
    assert ("field-a", "operator", "operator", 1) in audit


def test_emergency_stop_disables_the_unit(site: RunningSite) -> None:
    r = site.ctl("--json", "control", "bess-2", "emergency_stop")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["action"] == "emergency_stop"
    r = site.ctl("--json", "units")
    state = units_of(json.loads(r.stdout))["bess-2"]
    assert state["enabled"] is False
    audit = site.wait_rows("SELECT identity, ok, params FROM commands WHERE command = "
                           "'control' AND target = 'bess-2'")  # fmt: skip
    assert [(i, ok) for i, ok, _ in audit] == [("operator", 1)]
    assert json.loads(audit[0][2])["action"] == "emergency_stop"


def test_a_viewer_may_read_but_not_control(site: RunningSite) -> None:
    r = site.ctl("--as", "viewer", "control", "bess-3", "disable")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "refused (not_authorised)" in r.stderr and "viewer" in r.stderr
    r = site.ctl("--as", "viewer", "--json", "control", "bess-3", "disable")
    assert r.returncode == 1
    assert json.loads(r.stdout)["refused"] == "not_authorised"
    r = site.ctl("--as", "viewer", "--json", "units")
    assert r.returncode == 0, r.stderr
    assert units_of(json.loads(r.stdout))["bess-3"]["enabled"] is True
    audit = site.wait_rows("SELECT ok, refused FROM commands WHERE identity = 'viewer' AND "
                           "command = 'control'", count=2)  # fmt: skip
    assert audit == [(0, "not_authorised"), (0, "not_authorised")]


def test_market_bids_and_results(site: RunningSite) -> None:
    deadline = time.monotonic() + 30
    while True:
        r = site.ctl("--as", "viewer", "--json", "bids")
        assert r.returncode == 0, r.stderr
        bids = json.loads(r.stdout)["dam"]
        if bids or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert bids and all(b["product"] == "DAM" for b in bids)
    r = site.ctl("--json", "results")
    assert r.returncode == 0, r.stderr
    awards = json.loads(r.stdout)["awards"]
    assert {a["bid_id"] for a in awards} <= {b["bid_id"] for b in bids}
    assert awards, "the exchange awarded nothing"
    r = site.ctl("results")
    assert r.stdout.splitlines()[0].split()[:3] == ["PRODUCT", "DELIVERY", "BLOCK"]


def test_schedule_set_from_a_csv_file(site: RunningSite, tmp_path: Path) -> None:
    csv = tmp_path / "plan.csv"
    csv.write_text("kw\n111\n222\n")
    r = site.ctl("schedule", "--set", str(csv), "--block-s", "600")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("campus schedule set: 2 block(s)")
    doc = json.loads(site.ctl("--json", "schedule").stdout)
    assert [111.0, 222.0] in [x["kw"] for x in doc["campus"]["schedules"]]
    bad = tmp_path / "bad.csv"
    bad.write_text("kw\n1\nlots\n")
    r = site.ctl("schedule", "--set", str(bad))
    assert r.returncode == 2 and "bad.csv:3" in r.stderr


def test_usage_errors_exit_2_with_one_line(site: RunningSite) -> None:
    for args, words in (
        (("--as", "nobody", "units"), "no key for identity 'nobody'"),
        (("set-power", "bess-9", "1"), "no unit 'bess-9'"),
        (("participation", "bess-1", "1.5"), "FRACTION"),
    ):
        r = site.ctl(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert words in r.stderr and r.stderr.count("\n") == 1, r.stderr
    # Beyond the rating: the field controller refuses it (exit 1).
    r = site.ctl("set-power", "bess-1", "1e9")
    assert r.returncode == 1 and "refused (invalid)" in r.stderr


def test_a_second_run_on_the_same_directory_is_refused(site: RunningSite) -> None:
    r = subprocess.run([sys.executable, "-m", "vpp", "run", "--duration", "5"], cwd=ROOT,
                       env=site.env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1, r.stderr
    assert str(site.dir) in r.stderr and f"pid {site.proc.pid}" in r.stderr
    assert json.loads((site.dir / "site.json").read_text())["pid"] == site.proc.pid


def test_the_client_example_sends_a_command(site: RunningSite) -> None:
    example = ROOT / "docs" / "examples" / "send_command.py"
    r = subprocess.run([sys.executable, str(example), "bess-3", "-40"], cwd=ROOT,
                       env={**site.env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "'base_kw': -40.0" in r.stdout
    audit = site.wait_rows("SELECT identity, ok FROM commands WHERE command = 'set_power' AND "
                           "target = 'bess-3'")  # fmt: skip
    assert ("operator", 1) in audit


def test_ctl_without_a_running_site_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "VPP_RUN_DIR": str(tmp_path / "nothing")}
    r = run_ctl(env, "status")
    assert r.returncode == 2
    assert r.stderr == f"vpp ctl: no running site in {tmp_path / 'nothing'} (none started; " \
        "start one with vpp run)\n"


def test_every_command_docs_ctl_shows_parses() -> None:
    from vpp.cli import build_parser

    shown = [line.removeprefix("$ ").split()
             for line in (ROOT / "docs" / "ctl.md").read_text().splitlines()
             if line.startswith("$ ") and " vpp " in f" {line}"]  # fmt: skip
    assert len(shown) >= 15
    parser = build_parser()
    for words in shown:
        words = [w for w in words if "=" not in w]  # an environment assignment before it
        args = parser.parse_args(words[1:])
        assert args.command in ("ctl", "run"), words
