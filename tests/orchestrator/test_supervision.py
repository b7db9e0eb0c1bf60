"""Supervision that fails loud (real processes): a role stopped by its configuration is
not restarted and stops the site with a ConfigError; a role that keeps crashing is
restarted with a growing backoff until its budget is spent, then the site stops with a
ProcessFailedError; the other processes meanwhile go on."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from multiprocessing import resource_tracker
from pathlib import Path

import pytest

from tests.orchestrator.procs import alive_any, children
from tests.support.aio import run
from vpp.config import load
from vpp.errors import ConfigError, ProcessFailedError
from vpp.orchestrator.launcher import Launcher
from vpp.orchestrator.processes import EXIT_CONFIG

STANDIN = "tests.orchestrator.standin_role"
BROKEN = "tests.orchestrator.broken_roles"


@pytest.fixture(autouse=True)
def _stop_resource_tracker() -> Iterator[None]:
    yield
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


@pytest.fixture
def marks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory where the broken roles mark each start (read through the spawned
    children's environment)."""
    d = tmp_path / "marks"
    d.mkdir()
    monkeypatch.setenv("VPP_TEST_MARKS", str(d))
    return d


def starts(marks: Path, name: str) -> int:
    return len(list(marks.glob(f"{name}-*")))


def site_without_plant(budget: int = 5, window_s: float = 600.0) -> Launcher:
    """The default site, its plant off (the roles here are stand-ins), a quick backoff."""
    # Stand-ins never connect to the inverters: any port will do.
    ports = {f"VPP__FIELD__{f}__UNITS__{u}__INVERTER__CONFIG__PORT": "502"
             for f, u in ((0, 0), (0, 1), (1, 0))}  # fmt: skip
    site = load(env={
        **ports, "VPP__SIMULATION__ENABLED": "false", "VPP__HISTORY__ENABLED": "false",
        "VPP__SUPERVISION__BACKOFF_S": "0.1", "VPP__SUPERVISION__MAX_BACKOFF_S": "0.4",
        "VPP__SUPERVISION__MAX_RESTARTS": str(budget),
        "VPP__SUPERVISION__RESTART_WINDOW_S": str(window_s),
        # A process per role: these tests fail one role and watch the others go on.
        "VPP__SUPERVISION__SHARED": "{}",
    })  # fmt: skip
    assert site.supervision.max_restarts == budget
    return Launcher(site, modules={}, out=None)


def test_a_role_failing_on_its_configuration_stops_the_site_at_once(marks: Path) -> None:
    launcher = site_without_plant()
    launcher.modules.update(
        field=STANDIN, grid=STANDIN, market=STANDIN, campus=f"{BROKEN}:config_error"
    )
    seen: set[int] = set()

    async def main() -> None:
        # No duration: only the failure can end this run.
        task = asyncio.create_task(launcher.run(None))
        while not task.done():
            seen.update(children(os.getpid()))
            await asyncio.sleep(0.05)
        await task

    with pytest.raises(ConfigError, match=r"^process campus: campus: field 'tiemout'") as info:
        run(main(), timeout=60)
    # Never restarted.
    assert "\n" not in str(info.value)
    campus = launcher.procs["campus"]
    assert campus.last_exit == EXIT_CONFIG and campus.restarts == 0
    assert starts(marks, "campus") == 1
    assert launcher.failure is info.value
    assert not alive_any(seen - {_tracker()}), "a child outlived the failed site"


def test_a_crashing_role_restarts_with_backoff_until_its_budget_is_spent(marks: Path) -> None:
    launcher = site_without_plant(budget=3)
    launcher.modules.update(field=STANDIN, grid=STANDIN, market=STANDIN, campus=f"{BROKEN}:crash")
    delays: list[float] = []
    healthy: dict[str, int] = {}

    async def main() -> None:
        task = asyncio.create_task(launcher.run(None))
        await launcher.ready.wait()
        pid = launcher.procs["field-a"].pid
        assert pid is not None
        healthy["field-a"] = pid
        last = None
        while not task.done():
            m = launcher.procs["campus"]
            if m.restart_at is not None and m.restart_at != last:
                last = m.restart_at
                delays.append(m.restart_at - time.monotonic())
            await asyncio.sleep(0.01)
        await task

    with pytest.raises(ProcessFailedError) as info:
        run(main(), timeout=60)
    err = info.value
    assert err.process == "campus" and err.exit_code == 1
    assert "restart budget 3" in str(err) and "RuntimeError: campus: a bug" in str(err)
    # Three restarts, each after a longer pause than the one before; the fourth death
    # stops the site.
    m = launcher.procs["campus"]
    assert m.restarts == 3 and m.deaths == 4 and starts(marks, "campus") == 4
    assert len(delays) == 3 and delays[0] < delays[1] < delays[2]
    # The healthy roles ran on unharmed meanwhile, in the same process throughout.
    assert launcher.procs["field-a"].restarts == 0 and launcher.procs["field-a"].deaths == 0


def test_the_budget_counts_only_deaths_within_its_window(marks: Path) -> None:
    # A window shorter than the backoff: each death is alone in it, so the budget of one
    # restart is never spent and the role goes on being restarted until the end.
    launcher = site_without_plant(budget=1, window_s=0.05)
    launcher.modules.update(field=STANDIN, grid=STANDIN, market=STANDIN, campus=f"{BROKEN}:crash")

    async def main() -> int:
        task = asyncio.create_task(launcher.run(None))
        while launcher.procs.get("campus") is None or launcher.procs["campus"].restarts < 3:
            assert not task.done(), "the site stopped"
            await asyncio.sleep(0.05)
        assert launcher._stop is not None
        launcher._stop.set()
        return await task

    assert run(main(), timeout=60) == 0
    assert launcher.failure is None


def _tracker() -> int | None:
    pid: int | None = resource_tracker._resource_tracker._pid  # type: ignore[attr-defined]
    return pid
