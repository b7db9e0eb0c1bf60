"""Processes seen through /proc (no psutil here): children and liveness by pid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def vpp(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m vpp *args`` from the repository root, run to its end, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "vpp", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def children(pid: int) -> set[int]:
    """Every descendant of ``pid`` now."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the command name, which may hold spaces: split after ')'.
        parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p}
        out |= kids
        todo.extend(kids)
    return out


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def alive_any(pids: set[int]) -> set[int]:
    """The pids of ``pids`` still running."""
    return {p for p in pids if running(p) and p != os.getpid()}
