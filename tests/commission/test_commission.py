"""``vpp bench --commission`` (issue 14): the settings checks, the verdict against the
site's requirements, and the whole suite run from an installed wheel, outside the
source tree, as on an RTU."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpp.commission.settings import check_settings
from vpp.commission.suite import Commissioning, Figure
from vpp.config import load
from vpp.config.models import SiteConfig

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_reported_and_sched_fifo_matches_an_attempt() -> None:
    settings = {s.name: s for s in check_settings()}
    assert set(settings) == {"SCHED_FIFO", "memory locking", "cpu governor", "isolated CPUs",
                             "clock source", "kernel preemption"}  # fmt: skip
    for s in settings.values():
        assert s.status in ("ok", "short", "unknown")
        assert s.status == "ok" or s.advice, s  # a shortfall says what to change
    got: list[bool] = []

    def attempt() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            got.append(True)
        except OSError:
            got.append(False)

    t = threading.Thread(target=attempt)
    t.start()
    t.join()
    assert (settings["SCHED_FIFO"].status == "ok") == got[0]
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} KiB"
    assert limit in settings["memory locking"].value


@given(value=st.floats(allow_nan=True, allow_infinity=True),
       limit=st.floats(min_value=0, max_value=1e6), at_least=st.booleans())  # fmt: skip
def test_a_figure_passes_only_within_its_requirement(
    value: float, limit: float, at_least: bool
) -> None:
    f = Figure("x", value, "ms", limit, at_least=at_least)
    if value != value:
        assert f.ok is False  # a figure that could not be measured fails
    else:
        assert f.ok is (value >= limit if at_least else value <= limit)
    result = Commissioning(figures=[f, Figure("reported only", value, "ms")])
    assert result.passed is bool(f.ok)
    assert len(result.failures) == (0 if f.ok else 1)
    assert json.loads(json.dumps(result.record(), allow_nan=True))["passed"] is result.passed


def test_refused_realtime_fails_only_when_required() -> None:
    from vpp.commission.settings import Setting

    short = [Setting("SCHED_FIFO", "refused", "short", "grant CAP_SYS_NICE")]
    assert Commissioning(settings=short).passed
    failed = Commissioning(settings=short, realtime_required=True)
    assert not failed.passed and failed.failures == ["SCHED_FIFO: refused"]


def test_requirements_come_from_the_site_configuration(tmp_path: Path) -> None:
    assert load().commissioning.field_rss_mb == 60.0
    data = load().model_dump(mode="json")
    data["commissioning"]["frame_to_setpoint_p99_ms"] = 0.5
    cfg = SiteConfig.model_validate(data)
    assert cfg.commissioning.frame_to_setpoint_p99_ms == 0.5
    data["commissioning"]["pipeline_us"] = -1
    with pytest.raises(ValueError, match="pipeline_us"):
        SiteConfig.model_validate(data)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel (built here by maturin, the build backend) installed into a
    directory of its own; not the checkout."""
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "maturin", "build", "--release", "-q", "-o", str(out),
         "-i", sys.executable],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = out.glob("vpp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "vpp/commission/suite.py" in names and not any(n.startswith("benchmarks/")
                                                          for n in names)  # fmt: skip
    site = out / "site"
    pip = subprocess.run(
        # Byte-compiled at install, as any pip install does (PYTHONDONTWRITEBYTECODE,
        # set on some machines, would otherwise have every process compile vpp again).
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-2000:]
    return site


def test_vpp_bench_from_an_installed_wheel_commissions_the_default_site(
    installed: Path, tmp_path: Path
) -> None:
    # Run where there is no source tree: the package in `installed`, first on the path,
    # the working directory empty; the dependencies are the environment's.
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run(
        [sys.executable, "-c", "import vpp, vpp.bench as b; print(vpp.__file__, b.BENCH_DIR)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    pkg, bench_dir = where.stdout.split()
    assert Path(pkg).is_relative_to(installed) and not Path(bench_dir).exists()
    # `vpp bench` without --commission: no benchmarks/ here, so it runs the same suite.
    proc = subprocess.run(
        [sys.executable, "-m", "vpp", "bench", "--quick", "--record", "rec.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    record = json.loads((tmp_path / "rec.json").read_text())
    assert proc.returncode == (0 if record["passed"] else 1), proc.stdout
    figures = {f["name"]: f for f in record["figures"]}
    assert {"machine", "versions", "settings", "time"} <= set(record)
    assert record["versions"]["vpp"] and record["machine"]["arch"]
    # The figures that do not depend on how loaded the machine is right now: the
    # per-frame work, that the real-time loop wrote setpoints, and memory.
    assert figures["pipeline per frame, from Python, median"]["ok"], figures
    assert figures["frame -> setpoint, writes matched to frames"]["value"] > 50
    assert figures["RSS field-a"]["ok"] and figures["RSS field-b"]["ok"], figures
    assert figures["RSS total (6 processes)"]["ok"], figures
    assert "commissioning PASS" in proc.stdout or "commissioning FAIL" in proc.stdout
    for failure in record["failures"]:  # each names a figure or setting that fell short
        name = failure.rsplit(": ", 1)[0]
        realtime = name in ("SCHED_FIFO", "memory locking")
        assert realtime or (name in figures and figures[name]["ok"] is False), failure
