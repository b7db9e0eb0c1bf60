"""One site split over two launchers (``vpp run --only``), as over two hosts: the broker,
the plant and the services under one, the field controllers under the other, on a tcp bus
with Curve keys. The field controllers bind 127.0.0.2 (``bus.hosts``), the rest 127.0.0.1."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from tests.orchestrator.procs import ROOT, vpp
from tests.support.aio import free_port
from vpp.config.loader import default_text

FIELDS = ("field-a", "field-b")
SERVICES = ("campus", "grid", "market")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def split_site(tmp_path: Path, keys: Path) -> Path:
    site = yaml.safe_load(default_text())
    ports = {n: free_port() for n in ("events_in", "events_out", *FIELDS, *SERVICES)}
    site["bus"] = {"transport": "tcp", "host": "127.0.0.1", "ports": ports,
                   "hosts": {f: "127.0.0.2" for f in FIELDS}, "keys_dir": str(keys)}  # fmt: skip
    # The plant runs under the other launcher: every port it serves is fixed.
    sim = site["simulation"]
    sim["pmu"]["port"] = free_port()
    for b in sim["bess"]:
        b["port"] = free_port()
    for f in site["field"]:
        for u in f["units"]:
            u["bms"]["config"]["bus_options"]["port"] = free_udp_port()
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def rows(history: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(history)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_site_split_over_two_launchers_works(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    config = split_site(tmp_path, keys)
    made = vpp("keys", "--dir", str(keys), "--site", str(config))
    assert made.returncode == 0, made.stderr

    def launcher(only: str, history: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "vpp", "run", "--config", str(config), "--only", only,
             "--duration", "14", "--json", "--history", str(history)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    host_a, host_b = tmp_path / "a.db", tmp_path / "b.db"
    a = launcher("broker,plant," + ",".join(SERVICES), host_a)
    b = launcher(",".join(FIELDS), host_b)
    try:
        _, err_a = a.communicate(timeout=120)
        _, err_b = b.communicate(timeout=120)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert a.returncode == 0, err_a[-2000:]
    assert b.returncode == 0, err_b[-2000:]
    # The field controllers (launcher B) decided on the PMU of the plant (launcher A) ...
    units = {u for (u,) in rows(host_b, "SELECT DISTINCT unit FROM decisions")}
    assert units == {"bess-1", "bess-2", "bess-3"}
    # ... and the grid service (A) commanded them over Curve, acked (recorded by A from
    # the field controllers' command events).
    acked = rows(host_a, "SELECT DISTINCT identity, command, target FROM commands WHERE ok = 1")
    assert {(by, cmd) for by, cmd, _ in acked} >= {("grid", "set_participation")}
    assert {t for _, _, t in acked} >= {"bess-1", "bess-2", "bess-3"}


def test_only_names_known_processes(tmp_path: Path) -> None:
    run = vpp("run", "--only", "field-a,nope", "--duration", "1")
    assert run.returncode == 2
    assert "unknown process ['nope']" in run.stderr


def test_a_remote_plant_needs_fixed_ports(tmp_path: Path) -> None:
    run = vpp("run", "--only", "field-a", "--duration", "1")
    assert run.returncode == 2
    assert "its ports must be given" in run.stderr
