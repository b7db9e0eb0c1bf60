"""Shared by the HIL tests: the CLI as a subprocess, plans written to a directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

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
