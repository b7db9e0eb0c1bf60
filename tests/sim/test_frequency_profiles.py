"""Frequency profiles, including a CSV recording played back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vpp.errors import ConfigError
from vpp.sim.frequency import FrequencyProfile


def recording(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rec.csv"
    path.write_text(text)
    return path


def test_csv_recording_is_interpolated_from_start_and_loops(tmp_path: Path) -> None:
    path = recording(tmp_path, "time_s,freq_hz\n100.0,50.00\n101.0,49.80\n102.0,49.90\n")
    p = FrequencyProfile(kind="csv", csv=path, start=1.0, noise=0.0)
    t = np.array([0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    # Before start: the first value; then the recording (relative times), repeated after 2 s.
    expected = [50.0, 50.0, 49.9, 49.8, 49.85, 50.0, 49.9]
    assert p.at(t) == pytest.approx(expected)


def test_bad_recordings_name_the_file_and_line(tmp_path: Path) -> None:
    cases = {
        "0,50\n1,x\n": "line 2",
        "0,50\n0,49.9\n": "does not increase",
        "0,50\n1,5000\n": "not plausible",
        "0,50\n": "at least two rows",
    }
    for text, message in cases.items():
        path = recording(tmp_path, text)
        with pytest.raises(ConfigError, match=message) as info:
            FrequencyProfile(kind="csv", csv=path)
        assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        FrequencyProfile(kind="csv", csv=tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="goes with kind 'csv'"):
        FrequencyProfile(kind="step", csv=tmp_path / "rec.csv")


def test_pmu_serve_with_a_bad_recording_fails_cleanly(tmp_path: Path) -> None:
    path = recording(tmp_path, "0,50\n1,nope\n")
    proc = subprocess.run(
        [sys.executable, "-m", "vpp", "pmu", "serve", "--port", "0", "--csv", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "line 2" in proc.stderr and "Traceback" not in proc.stderr
