"""Suite-wide guard: a test fails if it leaves threads, asyncio tasks, sockets or child
processes behind.

Each test is compared with the state just before it (fixtures of a wider scope are set
up by then, so what they hold is not counted). What is left gets a grace period to go
away (a thread finishing its last loop, a child being reaped) before the test fails.
A test that cannot help a leak (a third-party library's) says so with
``@pytest.mark.allow_leaks("threads", reason="...")``.

Tasks: the tests run their coroutines with ``asyncio.run``, which cancels whatever is
still pending when the coroutine returns, silently. The guard wraps that step to note
the tasks it cancels (``asyncio.runners._cancel_all_tasks``, private, but the one place
where they are still visible). Sockets and children are read from /proc (Linux).
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

GRACE_S = 2.0
KINDS = ("threads", "tasks", "sockets", "processes")


def pytest_configure(config: pytest.Config) -> None:
    # The suite runs many sites one after another, each with its HTTP API: on a free port
    # each, not all on the default 8080 (which a developer's own `vpp run` may hold).
    os.environ.setdefault("VPP__API__PORT", "0")
    # And the SCADA outstations (2404 and 20000 by default) likewise.
    os.environ.setdefault("VPP__SCADA__IEC104__PORT", "0")
    os.environ.setdefault("VPP__SCADA__DNP3__PORT", "0")
    # The default site's simulated despatch centre sends AGC set-points every 4 s: a test
    # that sets targets and checks the fleet's powers must be the only one steering the
    # site. The tests of the default run's story turn it back on.
    os.environ.setdefault("VPP__SIMULATION__LDC__ENABLED", "false")
    config.addinivalue_line(
        "markers",
        "allow_leaks(*kinds, reason): exempt a test from the leak guard for the given "
        f"kinds ({', '.join(KINDS)}); the reason is required",
    )


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


def _sockets() -> set[str]:
    """Open socket descriptors as "fd:socket:[inode]"."""
    out: set[str] = set()
    fd_dir = Path("/proc/self/fd")
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue  # closed while listing (the listing's own descriptor, for one)
        if target.startswith("socket:"):
            out.add(f"{entry.name}:{target}")
    return out


def _children() -> set[str]:
    """Child processes still running (or not yet reaped), as "pid cmdline"."""
    out: set[str] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            out.add(f"{pid} {cmd.decode(errors='replace').strip()}")
    return out


def _allowed(item: pytest.Item) -> set[str]:
    allowed: set[str] = set()
    for mark in item.iter_markers("allow_leaks"):
        if not mark.kwargs.get("reason"):
            pytest.fail(f"{item.nodeid}: allow_leaks needs a reason", pytrace=False)
        unknown = set(mark.args) - set(KINDS)
        if unknown:
            pytest.fail(f"{item.nodeid}: allow_leaks: unknown kinds {unknown}", pytrace=False)
        allowed.update(mark.args)
    return allowed


@pytest.fixture(autouse=True)
def _private_run_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A site a test starts (in process, or `vpp run` inheriting the environment) gets a
    # run directory of its own: never the user's default one, never another test's. Short,
    # under /tmp: ipc socket paths are limited to 107 bytes.
    d = tempfile.mkdtemp(prefix="vpprun-", dir="/tmp")
    monkeypatch.setenv("VPP_RUN_DIR", f"{d}/site")
    yield
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    allowed = _allowed(request.node)
    cancelled: list[str] = []
    original = getattr(asyncio.runners, "_cancel_all_tasks", None)
    if original is None:
        # A Python without the private hook: the task check is lost, not the others.
        allowed.add("tasks")
    else:

        def noting(loop: asyncio.AbstractEventLoop) -> Any:
            cancelled.extend(repr(t) for t in asyncio.all_tasks(loop) if not t.done())
            return original(loop)

        monkeypatch.setattr(asyncio.runners, "_cancel_all_tasks", noting)
    threads, sockets, children = _threads(), _sockets(), _children()
    yield

    def leaks() -> dict[str, list[str]]:
        found = {
            "threads": sorted(repr(t) for t in _threads() - threads),
            "tasks": list(cancelled),
            "sockets": sorted(_sockets() - sockets),
            "processes": sorted(_children() - children),
        }
        return {k: v for k, v in found.items() if v and k not in allowed}

    deadline = time.monotonic() + GRACE_S
    found = leaks()
    while found and time.monotonic() < deadline:
        # Tasks cannot come back: only the others are worth waiting for.
        if set(found) == {"tasks"}:
            break
        time.sleep(0.05)
        found = leaks()
    if found:
        lines = [f"  {kind}: {', '.join(items)}" for kind, items in found.items()]
        pytest.fail("the test left behind:\n" + "\n".join(lines), pytrace=False)
