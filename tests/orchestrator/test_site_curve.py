"""The whole site on a tcp bus with CurveZMQ on every command endpoint, keys made by
``vpp keys --site``: commands between the processes go through (acked), and a site whose
keys are not authorized gets none through."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.aio import free_port
from vpp.config.loader import default_text

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("field-a", "field-b", "campus", "grid", "market")


def tcp_site(tmp_path: Path, keys: Path) -> Path:
    """The default simulated site, its bus on tcp loopback with Curve keys in ``keys``."""
    site = yaml.safe_load(default_text())
    ports = {n: free_port() for n in ("events_in", "events_out", *NAMES)}
    site["bus"] = {"transport": "tcp", "host": "127.0.0.1", "ports": ports,
                   "keys_dir": str(keys)}  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def vpp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vpp", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def acked_commands(history: Path) -> list[tuple[str, str, int]]:
    db = sqlite3.connect(history)
    try:
        return db.execute("SELECT identity, command, ok FROM commands").fetchall()
    finally:
        db.close()


def test_a_site_on_tcp_with_curve_keys_works(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    config = tcp_site(tmp_path, keys)
    made = vpp("keys", "--dir", str(keys), "--site", str(config))
    assert made.returncode == 0, made.stderr
    for name in NAMES:
        assert (keys / f"{name}.key_secret").stat().st_mode & 0o077 == 0
        assert (keys / "authorized" / f"{name}.key").exists()
    history = tmp_path / "h.db"
    run = vpp("run", "--config", str(config), "--duration", "10", "--json",
              "--history", str(history))  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    rows = acked_commands(history)
    # The grid service's participation commands reached the field controllers over Curve.
    assert {(by, cmd) for by, cmd, ok in rows if ok} >= {("grid", "set_participation")}


def test_unauthorized_keys_get_no_command_through(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    config = tcp_site(tmp_path, keys)
    assert vpp("keys", "--dir", str(keys), "--site", str(config)).returncode == 0
    for key in (keys / "authorized").iterdir():
        key.unlink()  # nobody is trusted
    history = tmp_path / "h.db"
    run = vpp("run", "--config", str(config), "--duration", "8", "--json",
              "--history", str(history))  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert not [r for r in acked_commands(history) if r[2]]


def test_a_tcp_site_without_keys_is_refused(tmp_path: Path) -> None:
    config = tcp_site(tmp_path, tmp_path / "no-keys")
    text = yaml.safe_load(config.read_text())
    del text["bus"]["keys_dir"]
    config.write_text(yaml.safe_dump(text))
    run = vpp("run", "--config", str(config), "--duration", "5")
    assert run.returncode != 0
    assert "keys" in (run.stderr + run.stdout)
