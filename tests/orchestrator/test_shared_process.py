"""Roles sharing one process (``supervision.shared``, the default for the services):
the launcher runs them in one supervised process, a kill restarts them together while
the field controllers (processes of their own) go on, a member that crashes takes its
group down with it (a half-alive process would look healthy), ``--only`` may name the
group, and the configuration refuses a group that cannot work."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.support.aio import run
from vpp.config import load
from vpp.config.models import SHARED_ROLES, SiteConfig
from vpp.orchestrator.bus import schema as s
from vpp.orchestrator.launcher import Launcher

STANDIN = "tests.orchestrator.standin_role"
BROKEN = "tests.orchestrator.broken_roles"
MEMBERS = ["campus", "grid", "market"]


@pytest.fixture(autouse=True)
def _stop_resource_tracker() -> Iterator[None]:
    yield
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]


def site(**supervision: Any) -> SiteConfig:
    """The default site with stand-in roles in mind: no plant, API or SCADA; the campus,
    grid and market share the process ``services``."""
    ports = {f"VPP__FIELD__{f}__UNITS__{u}__INVERTER__CONFIG__PORT": "502"
             for f, u in ((0, 0), (0, 1), (1, 0))}  # fmt: skip
    cfg = load(env={
        **ports, "VPP__SIMULATION__ENABLED": "false", "VPP__HISTORY__ENABLED": "false",
        "VPP__API__ENABLED": "false", "VPP__SCADA__ENABLED": "false",
        "VPP__SUPERVISION__BACKOFF_S": "0.2",
    })  # fmt: skip
    sup = cfg.supervision.model_copy(update={"shared": {"services": MEMBERS}, **supervision})
    return cfg.model_copy(update={"supervision": sup})


async def until(cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_the_default_shares_a_process_among_the_services_only() -> None:
    sup = load().supervision
    assert sup.shared == {"services": list(SHARED_ROLES)}
    assert not {"field", "plant"} & set(SHARED_ROLES)


@pytest.mark.parametrize(
    ("shared", "message"),
    [
        ({"a": ["campus"], "b": ["campus", "grid"]}, "'campus' is in both 'a' and 'b'"),
        ({"campus": ["grid", "market"]}, "'campus' cannot name a shared process"),
        ({"plant": ["grid"]}, "'plant' cannot name a shared process"),
        ({"services": []}, "shared.services: no role"),
        ({"services": ["field-a"]}, "Input should be 'campus'"),
        ({"field-a": ["grid", "market"]}, "a process may not take a field id: ['field-a']"),
    ],
)
def test_a_group_that_cannot_work_is_refused(shared: dict[str, Any], message: str) -> None:
    data = load().model_dump(mode="json")
    data["supervision"]["shared"] = shared
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("(", r"\(")):
        SiteConfig.model_validate(data)


def test_only_may_name_a_group_for_all_its_roles() -> None:
    launcher = Launcher(site(), only=["services"])
    assert all(launcher.runs(r) for r in MEMBERS)
    assert not launcher.runs("field-a") and not launcher.runs("api")
    alone = Launcher(site(), only=["grid", "field-a"])
    assert alone.runs("grid") and not alone.runs("campus")


def test_shared_roles_run_in_one_process_and_restart_together(tmp_path: Path) -> None:
    launcher = Launcher(site(), modules={r: STANDIN for r in ("field", *MEMBERS)},
                        history_path=tmp_path / "h.db")  # fmt: skip
    stop = asyncio.Event()
    pids: dict[str, list[int]] = {}

    async def main() -> int:
        task = asyncio.create_task(launcher.run(None, stop))
        await until(lambda: launcher.ready.is_set() or task.done(), what="start")
        assert launcher.topo is not None and not task.done()
        sub = launcher.topo.subscriber("viewer", ("event/",))

        async def collect() -> None:
            while True:
                for msg in await sub.recv_batch():
                    if isinstance(msg, s.EventMsg) and msg.body.kind == "standin":
                        pids.setdefault(msg.sender, []).append(int(msg.body.data["pid"]))

        watch = asyncio.create_task(collect())
        try:
            assert set(launcher.process_table()) == {"field-a", "field-b", "services"}
            first = launcher.procs["services"].pid
            await until(lambda: set(MEMBERS) <= set(pids), what="every member")
            # Every member announced itself from the one shared process.
            assert {pids[r][0] for r in MEMBERS} == {first}
            field_pid = launcher.procs["field-a"].pid
            assert first is not None and field_pid not in (None, first)
            os.kill(first, signal.SIGKILL)
            await until(lambda: launcher.procs["services"].restarts == 1, what="restart")
            again = launcher.procs["services"].pid
            await until(lambda: all(pids[r][-1] == again for r in MEMBERS), what="members back")
            # The field controllers were not touched.
            assert launcher.procs["field-a"].pid == field_pid
            assert launcher.procs["field-a"].restarts == 0
            stop.set()
            return await task
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            sub.close()

    assert run(main(), timeout=90) == 0


def test_a_crashing_member_takes_its_group_down_and_it_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("VPP_TEST_MARKS", str(marks))
    modules = {"field": STANDIN, "campus": STANDIN, "market": STANDIN, "grid": f"{BROKEN}:crash"}
    launcher = Launcher(site(), modules=modules)
    errors: list[Any] = []

    async def main() -> int:
        task = asyncio.create_task(launcher.run(None))
        deadline = time.monotonic() + 60
        while (m := launcher.procs.get("services")) is None or m.restarts < 2:
            assert time.monotonic() < deadline and not task.done()
            if m is not None and m.last_error is not None:
                errors.append(m.last_error)  # what it reported, read at each death
            await asyncio.sleep(0.01)
        assert launcher._stop is not None
        launcher._stop.set()
        return await task

    assert run(main(), timeout=90) == 0
    m = launcher.procs["services"]
    # The group died with its crashing member each time (exit 1, a crash reported by the
    # process), not left running half its roles.
    assert m.deaths >= 2 and errors and all(e.kind == "crash" for e in errors)
    assert "grid: a bug" in str(errors[0])
    assert len(list(marks.glob("grid-*"))) >= 2
