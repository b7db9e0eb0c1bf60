"""The run directory of a site (:mod:`vpp.orchestrator.rundir`): where it is, who may
hold it, and what ``vpp run`` leaves there (nothing, after it ends)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orchestrator.procs import ROOT
from vpp.config import load
from vpp.errors import ConfigError
from vpp.orchestrator.rundir import (
    IPC_PATH_MAX,
    RunDir,
    SiteRunningError,
    check_ipc_paths,
    default_dir,
    ensure_private_dir,
    held,
    site_dir,
)


def test_default_dir_precedence(tmp_path: Path) -> None:
    uid = os.getuid()
    assert default_dir("north", {}) == Path(f"/tmp/vpp-{uid}/north")
    # A runtime dir that does not exist is not used.
    assert default_dir("north", {"XDG_RUNTIME_DIR": str(tmp_path / "gone")}) == Path(
        f"/tmp/vpp-{uid}/north"
    )
    xdg = {"XDG_RUNTIME_DIR": str(tmp_path)}
    assert default_dir("north", xdg) == tmp_path / "vpp" / "north"
    assert default_dir("north", {**xdg, "VPP_RUN_DIR": "/x/y"}) == Path("/x/y")
    # A name is one path component, never a way out of the directory.
    assert default_dir("../etc/a b", xdg) == tmp_path / "vpp" / "_etc_a_b"


def test_bus_dir_overrides_the_default(tmp_path: Path) -> None:
    site = load()
    assert site_dir(site, {"VPP_RUN_DIR": "/x"}) == Path("/x")
    moved = site.model_copy(update={"bus": site.bus.model_copy(update={"dir": tmp_path})})
    assert site_dir(moved, {"VPP_RUN_DIR": "/x"}) == tmp_path


def test_private_dirs_are_made_0700_and_others_refused(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b"
    ensure_private_dir(d)
    assert (d.stat().st_mode & 0o777, d.parent.stat().st_mode & 0o777) == (0o700, 0o700)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(ConfigError, match="not private"):
        ensure_private_dir(open_dir)


def test_a_directory_too_long_for_ipc_is_refused(tmp_path: Path) -> None:
    check_ipc_paths(Path("/tmp/short"), ["events-out", "field-a.cmd"])
    long = Path("/tmp") / ("d" * (IPC_PATH_MAX - 10))
    with pytest.raises(ConfigError, match="too long for ipc sockets") as err:
        check_ipc_paths(long, ["events-out", "field-a.cmd"])
    assert "\n" not in str(err.value)


def test_one_holder_at_a_time(tmp_path: Path) -> None:
    first = RunDir(tmp_path / "run")
    first.claim()
    first.write({"site": "x"})
    record = tmp_path / "run" / "site.json"
    assert held(record) and record.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SiteRunningError, match=f"pid {os.getpid()}"):
        RunDir(tmp_path / "run").claim()
    # A part of the site (vpp run --only) holds its own record beside it.
    part = RunDir(tmp_path / "run", ["broker"])
    part.claim()
    first.release()
    assert not record.exists() and (tmp_path / "run").is_dir()
    part.release()
    assert not (tmp_path / "run").exists()


def test_run_replaces_a_stale_record_and_cleans_up(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    # Left by a launcher that was killed: nobody holds its lock any more.
    (d / "site.json").write_text(json.dumps({"pid": 2**22 + 1}))
    r = subprocess.run([sys.executable, "-m", "vpp", "run", "--duration", "3", "--history",
                        str(tmp_path / "h.db")], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "VPP_RUN_DIR": str(d), "VPP__API__PORT": "0"},
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"vpp run: bus at {d}\n" in r.stderr
    # Sockets, run-scoped keys, site.json: all gone, and the directory with them.
    assert not d.exists()
